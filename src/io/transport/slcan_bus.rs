//! A CAN bus through an slcan (Lawicel) USB adapter on a serial port, such as a CANable.
//!
//! Opening configures the adapter (`C`, `Sn`, `O`) without waiting for acknowledgements (some
//! firmware sends none). The control thread writes encoded frames straight to the port without
//! blocking; a line that does not fit is kept and finished first on the next send, so the
//! adapter never sees half a line. The receive thread decodes lines, stamps them on arrival, and
//! when the adapter is unplugged and comes back it reconfigures it and hands the new descriptor to
//! the transmit side through an atomic, which the transmit side adopts at its next send.

use super::bus::{BusRx, BusState, BusTx, RxCounters, RxItem, TxCounters, TxFault};
use super::can::CanFrame;
use super::serial::{self, LinkEvent, Port, ReconnectingPort};
use crate::io::protocol::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::rt::clock::monotonic_ns;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// USB CDC adapters ignore the baud rate; real UART adapters need theirs.
pub(crate) const SERIAL_BAUD: u32 = 115_200;
const QUEUED_FRAMES: usize = 64;
/// How long closing the channel at exit may wait for a full serial buffer.
const CLOSE_WAIT: Duration = Duration::from_millis(100);

/// Sends the configuration sequence: close (in case it was open), bitrate, open.
fn configure(port: &Port, bitrate: u32) -> Result<(), String> {
    let mut buf = [0u8; 16];
    let mut n = slcan::encode_close(&mut buf).map_err(|e| e.to_string())?;
    n += slcan::encode_bitrate(bitrate, &mut buf[n..]).map_err(|e| e.to_string())?;
    n += slcan::encode_open(&mut buf[n..]).map_err(|e| e.to_string())?;
    port.write_all(&buf[..n], Duration::from_millis(100)).map_err(|e| e.to_string())
}

/// Opens the adapter at `device` and sets it to `bitrate`.
pub fn open(device: &str, bitrate: u32, backoff: Duration) -> Result<(SlcanTx, SlcanRx), String> {
    let port = serial::open(device, SERIAL_BAUD).map_err(|e| e.to_string())?;
    configure(&port, bitrate)?;
    let tx_fd = port.try_clone().map_err(|e| e.to_string())?.into_fd();
    let pending = Arc::new(AtomicI32::new(-1));
    let tx = SlcanTx {
        fd: Some(tx_fd),
        pending: pending.clone(),
        tail: [0; slcan::MAX_ENCODED_LEN],
        tail_len: 0,
        backoff_ns: backoff.as_nanos() as u64,
        backoff_until_ns: 0,
        counters: TxCounters::default(),
    };
    let rx = SlcanRx {
        link: ReconnectingPort::with_port(device, SERIAL_BAUD, port),
        bitrate,
        decoder: SlcanDecoder::new(),
        pending,
        queue: [None; QUEUED_FRAMES],
        head: 0,
        len: 0,
        counters: RxCounters::default(),
    };
    Ok((tx, rx))
}

pub(crate) struct SlcanTx {
    fd: Option<OwnedFd>,
    /// A descriptor of a reopened adapter, handed over by the receive thread (-1: none).
    pending: Arc<AtomicI32>,
    /// The unsent rest of a line that did not fit.
    tail: [u8; slcan::MAX_ENCODED_LEN],
    tail_len: usize,
    backoff_ns: u64,
    backoff_until_ns: u64,
    counters: TxCounters,
}

impl SlcanTx {
    fn adopt_pending(&mut self) {
        if self.pending.load(Ordering::Relaxed) >= 0 {
            let fd = self.pending.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the receive thread handed over ownership of this open descriptor.
                self.fd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                self.tail_len = 0;
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, TxFault> {
        let Some(fd) = self.fd.as_ref() else { return Err(TxFault::Down) };
        // SAFETY: `data` is valid for `data.len()` bytes; `fd` is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
            _ => {
                self.fd = None; // gone; the receive thread reconnects and hands over a new one
                Err(TxFault::Down)
            }
        }
    }

    fn flush_tail(&mut self) -> Result<bool, TxFault> {
        if self.tail_len == 0 {
            return Ok(true);
        }
        let tail = self.tail;
        let n = self.write(&tail[..self.tail_len])?;
        self.tail.copy_within(n..self.tail_len, 0);
        self.tail_len -= n;
        Ok(self.tail_len == 0)
    }

    /// Finishes a pending line, then closes the CAN channel (`C`), so that the adapter stops
    /// acknowledging frames for a host that is gone. Waits at most `CLOSE_WAIT`.
    fn close_channel(&mut self) {
        self.adopt_pending();
        let deadline = monotonic_ns() + CLOSE_WAIT.as_nanos() as u64;
        let mut close = [0u8; 2];
        let Ok(n) = slcan::encode_close(&mut close) else { return };
        let mut sent = 0;
        while monotonic_ns() < deadline {
            match self.flush_tail() {
                Ok(true) => {}
                Ok(false) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(_) => return,
            }
            match self.write(&close[sent..n]) {
                Ok(k) => sent += k,
                Err(_) => return,
            }
            if sent == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn drop_frame(&mut self, fault: TxFault) -> Result<(), TxFault> {
        self.counters.dropped += 1;
        Err(fault)
    }
}

impl Drop for SlcanTx {
    fn drop(&mut self) {
        self.close_channel();
    }
}

impl BusTx for SlcanTx {
    fn send(&mut self, frame: &CanFrame) -> Result<(), TxFault> {
        self.adopt_pending();
        if self.backoff_until_ns != 0 {
            if monotonic_ns() < self.backoff_until_ns {
                return self.drop_frame(TxFault::BackingOff);
            }
            self.backoff_until_ns = 0;
        }
        if !self.flush_tail()? {
            self.backoff_until_ns = monotonic_ns() + self.backoff_ns;
            return self.drop_frame(TxFault::QueueFull);
        }
        let mut line = [0u8; slcan::MAX_ENCODED_LEN];
        let Ok(len) = slcan::encode_frame(frame, &mut line) else {
            return self.drop_frame(TxFault::QueueFull); // cannot happen for a valid CanFrame
        };
        let n = self.write(&line[..len])?;
        if n == 0 {
            self.backoff_until_ns = monotonic_ns() + self.backoff_ns;
            return self.drop_frame(TxFault::QueueFull);
        }
        if n < len {
            // Keep the rest so the adapter never sees half a line.
            self.tail[..len - n].copy_from_slice(&line[n..len]);
            self.tail_len = len - n;
        }
        self.counters.sent += 1;
        Ok(())
    }

    fn counters(&self) -> TxCounters {
        self.counters
    }
}

pub(crate) struct SlcanRx {
    link: ReconnectingPort,
    bitrate: u32,
    decoder: SlcanDecoder,
    pending: Arc<AtomicI32>,
    queue: [Option<(CanFrame, u64)>; QUEUED_FRAMES],
    head: usize,
    len: usize,
    counters: RxCounters,
}

impl SlcanRx {
    fn pop(&mut self) -> Option<(CanFrame, u64)> {
        if self.len == 0 {
            return None;
        }
        let item = self.queue[self.head].take();
        self.head = (self.head + 1) % QUEUED_FRAMES;
        self.len -= 1;
        item
    }

    /// The adapter came back: configure it and give the transmit side its own descriptor.
    fn reconnected(&mut self) -> bool {
        let Some(port) = self.link.port() else { return false };
        if configure(port, self.bitrate).is_err() {
            return false;
        }
        let Ok(clone) = port.try_clone() else { return false };
        let old = self.pending.swap(clone.into_fd().into_raw_fd(), Ordering::AcqRel);
        if old >= 0 {
            // SAFETY: a descriptor handed over earlier and never adopted is still ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(old) });
        }
        self.decoder.reset();
        true
    }
}

impl BusRx for SlcanRx {
    fn recv(&mut self, timeout: Duration) -> RxItem {
        if let Some((f, t)) = self.pop() {
            return RxItem::Frame(f, t);
        }
        let mut buf = [0u8; 256];
        match self.link.read(&mut buf, timeout) {
            LinkEvent::Data(n) => {
                let t_ns = monotonic_ns();
                for event in self.decoder.decode(&buf[..n]) {
                    match event {
                        Ok(SlcanEvent::Frame(f)) if self.len < QUEUED_FRAMES => {
                            self.queue[(self.head + self.len) % QUEUED_FRAMES] = Some((f, t_ns));
                            self.len += 1;
                        }
                        Ok(SlcanEvent::Frame(_)) => self.counters.queue_dropped += 1,
                        Ok(_) => {}
                        Err(_) => self.counters.decode_errors += 1,
                    }
                }
                match self.pop() {
                    Some((f, t)) => RxItem::Frame(f, t),
                    None => RxItem::Idle,
                }
            }
            LinkEvent::Idle => RxItem::Idle,
            LinkEvent::Connected => {
                if self.reconnected() {
                    RxItem::State(BusState::Active)
                } else {
                    RxItem::Idle
                }
            }
            LinkEvent::Disconnected => RxItem::State(BusState::Down),
        }
    }

    fn counters(&self) -> RxCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::SerialPort as _;

    /// A pty whose slave is reachable through a symlink we control (the "USB device").
    fn adapter(link: &std::path::Path) -> Port {
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave);
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(name, link).unwrap();
        Port::from_tty(master).unwrap()
    }

    fn read_text(p: &mut Port, want: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..100 {
            if got.len() >= want {
                break;
            }
            let n = p.read(&mut buf, Duration::from_millis(50)).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn configures_the_adapter_and_carries_frames_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("canable");
        let mut far = adapter(&link);
        let (mut tx, mut rx) = open(link.to_str().unwrap(), 1_000_000, Duration::from_millis(1)).unwrap();
        assert_eq!(read_text(&mut far, 7), "C\rS8\rO\r");
        let enable = CanFrame::standard(0x001, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC]).unwrap();
        tx.send(&enable).unwrap();
        assert_eq!(read_text(&mut far, 22), "t0018FFFFFFFFFFFFFFFC\r");
        far.write_all(b"t0116010203040506\rt0021AB\r", Duration::from_millis(100)).unwrap();
        let mut frames = Vec::new();
        for _ in 0..50 {
            if let RxItem::Frame(f, _) = rx.recv(Duration::from_millis(50)) {
                frames.push(f);
            }
            if frames.len() == 2 {
                break;
            }
        }
        assert_eq!(frames[0], CanFrame::standard(0x011, &[1, 2, 3, 4, 5, 6]).unwrap());
        assert_eq!(frames[1], CanFrame::standard(0x002, &[0xAB]).unwrap());
    }

    #[test]
    fn an_adapter_unplugged_and_replugged_is_reconfigured_and_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("canable");
        let far = adapter(&link);
        let (mut tx, mut rx) = open(link.to_str().unwrap(), 500_000, Duration::from_millis(1)).unwrap();
        let f = CanFrame::standard(0x003, &[7]).unwrap();
        drop(far); // unplugged
        let mut saw_down = false;
        for _ in 0..100 {
            if rx.recv(Duration::from_millis(20)) == RxItem::State(BusState::Down) {
                saw_down = true;
                break;
            }
        }
        assert!(saw_down, "the unplugged adapter was not noticed");
        let mut far = adapter(&link); // plugged back in (a new tty behind the same name)
        let mut back = false;
        for _ in 0..100 {
            if rx.recv(Duration::from_millis(20)) == RxItem::State(BusState::Active) {
                back = true;
                break;
            }
        }
        assert!(back, "the adapter was not reconnected");
        assert_eq!(read_text(&mut far, 7), "C\rS6\rO\r");
        tx.send(&f).unwrap();
        assert_eq!(read_text(&mut far, 7), "t003107\r");
    }

    #[test]
    fn garbage_from_the_adapter_is_counted_and_the_channel_is_closed_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("canable");
        let mut far = adapter(&link);
        let (tx, mut rx) = open(link.to_str().unwrap(), 1_000_000, Duration::from_millis(1)).unwrap();
        assert_eq!(read_text(&mut far, 7), "C\rS8\rO\r");
        // Three bad lines (not a command, bad hex, a length that does not match), noise bytes that
        // end up in a fourth, then a good frame.
        far.write_all(b"xyz\rt12Q1AB\rt0013AB\r\x01\x02\xff\rt0021AB\r", Duration::from_millis(100)).unwrap();
        let mut frames = 0;
        for _ in 0..50 {
            if let RxItem::Frame(f, _) = rx.recv(Duration::from_millis(20)) {
                assert_eq!(f, CanFrame::standard(0x002, &[0xAB]).unwrap());
                frames += 1;
                break;
            }
        }
        assert_eq!(frames, 1);
        assert_eq!(rx.counters(), RxCounters { decode_errors: 4, queue_dropped: 0 });
        drop(tx);
        assert_eq!(read_text(&mut far, 2), "C\r", "the channel is closed when the transmit side goes");
    }

    #[test]
    fn a_stalled_adapter_drops_frames_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("canable");
        let _far = adapter(&link); // never read
        let (mut tx, _rx) = open(link.to_str().unwrap(), 1_000_000, Duration::from_millis(1)).unwrap();
        let f = CanFrame::standard(0x001, &[0; 8]).unwrap();
        let start = std::time::Instant::now();
        let mut faults = 0;
        for _ in 0..20_000 {
            if tx.send(&f).is_err() {
                faults += 1;
            }
        }
        assert!(faults > 0, "an unread pty never filled");
        assert!(tx.counters().dropped > 0);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
