//! Serial ports for locod's links (slcan adapters, WitMotion IMUs, the firmware bridge): opening
//! in raw 8N1, non-blocking I/O on the file descriptor, and a port that reconnects by itself when
//! a USB device disappears and comes back.
//!
//! `serialport` opens and configures the tty; reads and writes go straight to the descriptor so
//! that a write never blocks (a full output buffer is reported, not waited out) and a read waits
//! only as long as its caller allows. Not for: what the bytes mean.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How often a missing device is looked for again.
pub(crate) const RECONNECT_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub enum PortError {
    /// Opening failed (no such device, permission, not a tty...).
    Open {
        path: String,
        reason: String,
    },
    /// The device went away (USB unplugged, the other end of a pty closed).
    Gone,
    /// The output buffer is full; nothing was written.
    Full,
    Io(io::Error),
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortError::Open { path, reason } => write!(f, "cannot open {path}: {reason}"),
            PortError::Gone => f.write_str("the device went away"),
            PortError::Full => f.write_str("output buffer full"),
            PortError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PortError {}

/// An open serial port in raw mode with a non-blocking descriptor.
pub struct Port {
    tty: serialport::TTYPort,
}

fn errno_is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::EBADF))
}

/// Opens `path` at `baud`, 8N1, no flow control, exclusive.
pub fn open(path: &str, baud: u32) -> Result<Port, PortError> {
    let tty = serialport::new(path, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .open_native()
        .map_err(|e| PortError::Open {
            path: path.into(),
            reason: match e.kind() {
                serialport::ErrorKind::NoDevice => format!("no such device ({e}); is it plugged in? see systemd/udev"),
                _ => e.to_string(),
            },
        })?;
    let port = Port { tty };
    port.set_nonblocking().map_err(|e| PortError::Open { path: path.into(), reason: e.to_string() })?;
    Ok(port)
}

impl Port {
    /// Wraps an already configured tty (e.g. one end of `serialport::TTYPort::pair()`).
    pub fn from_tty(tty: serialport::TTYPort) -> io::Result<Self> {
        let port = Self { tty };
        port.set_nonblocking()?;
        Ok(port)
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        let fd = self.fd();
        // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take and return plain ints.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.tty.as_raw_fd()
    }

    /// Gives up the port, keeping its (non-blocking, configured) descriptor.
    pub(crate) fn into_fd(self) -> std::os::fd::OwnedFd {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: `into_raw_fd` hands over ownership of a valid descriptor.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(self.tty.into_raw_fd()) }
    }

    /// A second handle on the same port (e.g. the writer of a receive thread's port).
    pub(crate) fn try_clone(&self) -> Result<Port, PortError> {
        let tty = self.tty.try_clone_native().map_err(|e| PortError::Io(io::Error::other(e.to_string())))?;
        Ok(Port { tty })
    }

    /// Waits up to `timeout` for input and reads it; `Ok(0)` means nothing arrived in time.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, PortError> {
        let mut pfd = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(PortError::Io(e)) };
        }
        if rc == 0 {
            return Ok(0);
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 && pfd.revents & libc::POLLIN == 0 {
            return Err(PortError::Gone);
        }
        // SAFETY: `buf` is valid for `buf.len()` writable bytes.
        let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return Ok(n as usize);
        }
        if n == 0 {
            return Err(PortError::Gone); // end of file on a tty: the other end is gone
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ if errno_is_gone(&e) => Err(PortError::Gone),
            _ => Err(PortError::Io(e)),
        }
    }

    /// Writes what fits without waiting. `Full` when nothing fits.
    pub(crate) fn write_nonblocking(&self, data: &[u8]) -> Result<usize, PortError> {
        // SAFETY: `data` is valid for `data.len()` bytes.
        let n = unsafe { libc::write(self.fd(), data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => Err(PortError::Full),
            io::ErrorKind::Interrupted => Ok(0),
            _ if errno_is_gone(&e) => Err(PortError::Gone),
            _ => Err(PortError::Io(e)),
        }
    }

    /// Writes all of `data`, waiting up to `timeout` in total (off the real-time path only).
    pub fn write_all(&self, mut data: &[u8], timeout: Duration) -> Result<(), PortError> {
        let deadline = Instant::now() + timeout;
        while !data.is_empty() {
            match self.write_nonblocking(data) {
                Ok(n) => data = &data[n..],
                Err(PortError::Full) => {
                    if Instant::now() >= deadline {
                        return Err(PortError::Full);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a reconnecting port's read saw.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// `n` bytes arrived.
    Data(usize),
    /// Nothing arrived within the timeout.
    Idle,
    /// The device was (re)opened: configure it (bitrate, handshake) before expecting data.
    Connected,
    /// The device went away; it is looked for again every `RECONNECT_INTERVAL`.
    Disconnected,
}

/// A port that is opened lazily and reopened after it goes away, for receive threads.
pub struct ReconnectingPort {
    path: String,
    baud: u32,
    port: Option<Port>,
    next_attempt: Instant,
    pub connects: u64,
    pub disconnects: u64,
    pub(crate) last_error: Option<String>,
}

impl ReconnectingPort {
    pub fn new(path: &str, baud: u32) -> Self {
        Self {
            path: path.into(),
            baud,
            port: None,
            next_attempt: Instant::now(),
            connects: 0,
            disconnects: 0,
            last_error: None,
        }
    }

    /// Starts from an already open `port` (opened by the caller to fail early with a clear error).
    pub(crate) fn with_port(path: &str, baud: u32, port: Port) -> Self {
        let mut r = Self::new(path, baud);
        r.port = Some(port);
        r.connects = 1;
        r
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn port(&self) -> Option<&Port> {
        self.port.as_ref()
    }

    pub fn is_connected(&self) -> bool {
        self.port.is_some()
    }

    /// Reads, or (re)connects when the port is closed. Waits at most `timeout`.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> LinkEvent {
        let Some(port) = self.port.as_mut() else {
            let now = Instant::now();
            if now < self.next_attempt {
                std::thread::sleep(timeout.min(self.next_attempt - now));
                return LinkEvent::Idle;
            }
            self.next_attempt = now + RECONNECT_INTERVAL;
            return match open(&self.path, self.baud) {
                Ok(p) => {
                    self.port = Some(p);
                    self.connects += 1;
                    self.last_error = None;
                    LinkEvent::Connected
                }
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    std::thread::sleep(timeout.min(RECONNECT_INTERVAL));
                    LinkEvent::Idle
                }
            };
        };
        match port.read(buf, timeout) {
            Ok(0) => LinkEvent::Idle,
            Ok(n) => LinkEvent::Data(n),
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.port = None;
                self.disconnects += 1;
                self.next_attempt = Instant::now() + RECONNECT_INTERVAL;
                LinkEvent::Disconnected
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_pair_carries_bytes_both_ways_without_blocking() {
        let (a, b) = serialport::TTYPort::pair().unwrap();
        let (mut a, b) = (Port::from_tty(a).unwrap(), Port::from_tty(b).unwrap());
        assert_eq!(b.write_nonblocking(b"t0018FFFFFFFFFFFFFFFC\r").unwrap(), 22);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 22 {
            let n = a.read(&mut buf, Duration::from_millis(500)).unwrap();
            assert!(n > 0, "timed out");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got, b"t0018FFFFFFFFFFFFFFFC\r");
        assert_eq!(a.read(&mut buf, Duration::from_millis(10)).unwrap(), 0);
    }

    #[test]
    fn a_full_pty_reports_full_instead_of_blocking() {
        let (_a, b) = serialport::TTYPort::pair().unwrap();
        let b = Port::from_tty(b).unwrap();
        let chunk = [b'x'; 4096];
        let start = Instant::now();
        let mut full = false;
        for _ in 0..1000 {
            match b.write_nonblocking(&chunk) {
                Ok(_) => {}
                Err(PortError::Full) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full, "an unread pty never filled");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_missing_device_is_retried_and_a_vanished_one_reported() {
        let mut p = ReconnectingPort::new("/dev/locod-test-no-such-port", 115_200);
        let mut buf = [0u8; 8];
        assert_eq!(p.read(&mut buf, Duration::from_millis(5)), LinkEvent::Idle);
        assert!(p.last_error.as_deref().unwrap().contains("/dev/locod-test-no-such-port"));
        assert!(!p.is_connected());

        use serialport::SerialPort as _;
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave);
        let mut p = ReconnectingPort::new(&name, 115_200);
        assert_eq!(p.read(&mut buf, Duration::from_millis(5)), LinkEvent::Connected);
        drop(master); // the other end goes away: reads on the slave now fail
        let mut saw = None;
        for _ in 0..50 {
            match p.read(&mut buf, Duration::from_millis(20)) {
                LinkEvent::Disconnected => {
                    saw = Some(());
                    break;
                }
                LinkEvent::Idle | LinkEvent::Data(_) => {}
                LinkEvent::Connected => panic!("reconnected to a closed pty"),
            }
        }
        assert!(saw.is_some(), "the vanished pty was not noticed");
        assert_eq!(p.disconnects, 1);
    }
}
