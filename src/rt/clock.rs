//! Time for the daemon: nanoseconds on CLOCK_MONOTONIC, and the `Clock` the scheduler waits on.
//!
//! Every timestamp in locod is a `u64` of monotonic nanoseconds (`*_ns`). The scheduler is generic
//! over `Clock` so that tests (and the simulator's lock-step mode) can drive time themselves.
//! Not for: wall-clock time, which only appears in log file names and metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const NS_PER_US: u64 = 1_000;
pub const NS_PER_MS: u64 = 1_000_000;
pub const NS_PER_S: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// A source of monotonic time that can also sleep until an absolute instant.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
    /// Returns at or after `deadline_ns` (immediately if it has passed).
    fn sleep_until(&self, deadline_ns: u64);
}

/// The real clock: `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, so wake-ups never drift.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }

    fn sleep_until(&self, deadline_ns: u64) {
        let ts = libc::timespec {
            tv_sec: (deadline_ns / NS_PER_S) as libc::time_t,
            tv_nsec: (deadline_ns % NS_PER_S) as libc::c_long,
        };
        loop {
            // SAFETY: `ts` is a valid timespec; the remainder pointer may be null with TIMER_ABSTIME.
            let rc =
                unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
            // An absolute sleep interrupted by a signal is simply restarted.
            if rc != libc::EINTR {
                return;
            }
        }
    }
}

/// A clock that only moves when told to: `sleep_until` jumps straight to the deadline.
/// Deterministic and as fast as the code under test; shared between threads through `Arc`.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start_ns: u64) -> Self {
        Self { now_ns: Arc::new(AtomicU64::new(start_ns)) }
    }

    pub fn advance(&self, dt_ns: u64) {
        self.now_ns.fetch_add(dt_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ns: u64) {
        self.now_ns.fetch_max(deadline_ns, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_sleep_reaches_its_deadline() {
        let clock = MonotonicClock;
        let deadline = clock.now_ns() + 2 * NS_PER_MS;
        clock.sleep_until(deadline);
        assert!(clock.now_ns() >= deadline);
    }

    #[test]
    fn manual_clock_jumps_forward_never_back() {
        let clock = ManualClock::new(100);
        clock.sleep_until(50);
        assert_eq!(clock.now_ns(), 100);
        clock.sleep_until(250);
        assert_eq!(clock.now_ns(), 250);
        clock.advance(5);
        assert_eq!(clock.now_ns(), 255);
    }
}
