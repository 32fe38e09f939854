//! An in-memory CAN cable: two endpoints, each a `BusTx` and a `BusRx`; what one sends the other
//! receives. For tests and the simulator, with the same non-blocking send and blocking receive as
//! the real buses (an SPSC ring per direction, woken through an eventfd).
//!
//! Not for: more than two nodes (put the simulated motors behind one endpoint).

use super::bus::{BusRx, BusState, BusTx, RxItem, TxCounters, TxFault};
use super::can::CanFrame;
use crate::rt::clock::monotonic_ns;
use crate::rt::spsc::{spsc, Consumer, Producer};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames in flight per direction before a send reports a full queue.
pub(crate) const CAPACITY: usize = 256;

/// What can be injected into an endpoint's receive side (a bus-off, an unplugged cable).
#[derive(Debug, Default)]
pub struct Injector {
    state: AtomicU8,
}

impl Injector {
    /// The receiving endpoint reports `state` once, at its next `recv`.
    pub fn report(&self, state: BusState) {
        self.state.store(state as u8 + 1, Ordering::Release);
    }
}

struct Wake(OwnedFd);

impl Wake {
    fn new() -> Self {
        // SAFETY: eventfd with valid flags returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Wake(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64; a full counter (EAGAIN) already means "wake".
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 (EAGAIN when nothing was signalled).
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

pub struct MemTx {
    ring: Producer<(CanFrame, u64)>,
    wake: Arc<Wake>,
    counters: TxCounters,
}

pub struct MemRx {
    ring: Consumer<(CanFrame, u64)>,
    wake: Arc<Wake>,
    injected: Arc<Injector>,
}

/// One end of the cable.
pub struct Endpoint {
    pub tx: MemTx,
    pub rx: MemRx,
    /// Injects bus states into this endpoint's receive side.
    pub injector: Arc<Injector>,
}

/// A cable with two endpoints.
pub fn cable() -> (Endpoint, Endpoint) {
    let (a_to_b, b_from_a) = spsc(CAPACITY);
    let (b_to_a, a_from_b) = spsc(CAPACITY);
    let (wake_a, wake_b) = (Arc::new(Wake::new()), Arc::new(Wake::new()));
    let (inj_a, inj_b) = (Arc::new(Injector::default()), Arc::new(Injector::default()));
    let a = Endpoint {
        tx: MemTx { ring: a_to_b, wake: wake_b.clone(), counters: TxCounters::default() },
        rx: MemRx { ring: a_from_b, wake: wake_a.clone(), injected: inj_a.clone() },
        injector: inj_a,
    };
    let b = Endpoint {
        tx: MemTx { ring: b_to_a, wake: wake_a, counters: TxCounters::default() },
        rx: MemRx { ring: b_from_a, wake: wake_b, injected: inj_b.clone() },
        injector: inj_b,
    };
    (a, b)
}

impl BusTx for MemTx {
    fn send(&mut self, frame: &CanFrame) -> Result<(), TxFault> {
        match self.ring.push((*frame, monotonic_ns())) {
            Ok(()) => {
                self.counters.sent += 1;
                self.wake.signal();
                Ok(())
            }
            Err(_) => {
                self.counters.dropped += 1;
                Err(TxFault::QueueFull)
            }
        }
    }

    fn counters(&self) -> TxCounters {
        self.counters
    }
}

impl MemRx {
    /// A frame if one is waiting, without blocking; the time is when it was sent.
    pub fn try_recv(&mut self) -> Option<(CanFrame, u64)> {
        self.ring.pop()
    }
}

impl BusRx for MemRx {
    fn recv(&mut self, timeout: Duration) -> RxItem {
        let injected = self.injected.state.swap(0, Ordering::AcqRel);
        if injected != 0 {
            let state = [BusState::Active, BusState::Warning, BusState::Passive, BusState::BusOff, BusState::Down]
                [(injected - 1).min(4) as usize];
            return RxItem::State(state);
        }
        if let Some((f, _)) = self.ring.pop() {
            return RxItem::Frame(f, monotonic_ns());
        }
        self.wake.wait(timeout);
        match self.ring.pop() {
            Some((f, _)) => RxItem::Frame(f, monotonic_ns()),
            None => RxItem::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_the_cable_and_wake_the_receiver() {
        let (mut a, mut b) = cable();
        let f = CanFrame::standard(0x001, &[1, 2, 3]).unwrap();
        let receiver = std::thread::spawn(move || b.rx.recv(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        a.tx.send(&f).unwrap();
        match receiver.join().unwrap() {
            RxItem::Frame(got, t) => assert_eq!((got, t > 0), (f, true)),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.rx.recv(Duration::from_millis(5)), RxItem::Idle);
    }

    #[test]
    fn a_full_cable_drops_instead_of_blocking_and_states_can_be_injected() {
        let (mut a, mut b) = cable();
        let f = CanFrame::standard(0x001, &[]).unwrap();
        for _ in 0..CAPACITY {
            a.tx.send(&f).unwrap();
        }
        assert_eq!(a.tx.send(&f), Err(TxFault::QueueFull));
        assert_eq!(a.tx.counters(), TxCounters { sent: CAPACITY as u64, dropped: 1 });
        b.injector.report(BusState::BusOff);
        assert_eq!(b.rx.recv(Duration::ZERO), RxItem::State(BusState::BusOff));
        assert!(matches!(b.rx.recv(Duration::ZERO), RxItem::Frame(..)));
    }
}
