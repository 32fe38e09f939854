//! The deadline scheduler: a periodic release on absolute deadlines, with a defined overrun policy.
//!
//! Deadlines are `start + k * period`, never "now + period", so the loop never drifts. When a
//! cycle overruns past one or more later deadlines, those cycles are skipped (not run late in a
//! burst), counted, and the next release is the first deadline still in the future.
//! Not for: thread priorities (see `thread`) or what a cycle does.

use super::clock::Clock;

/// One release of the periodic task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// Cycle number since start, counting skipped cycles (so `index * period` is the schedule).
    pub index: u64,
    /// The deadline this release was scheduled for.
    pub deadline_ns: u64,
    /// When the thread actually woke.
    pub woke_ns: u64,
    /// Cycles skipped immediately before this one because the previous cycle overran them.
    pub skipped: u64,
}

impl Release {
    pub(crate) fn wake_latency_ns(&self) -> u64 {
        self.woke_ns.saturating_sub(self.deadline_ns)
    }
}

pub struct Periodic {
    period_ns: u64,
    next_index: u64,
    start_ns: u64,
    skipped_total: u64,
}

impl Periodic {
    /// A schedule whose first deadline is `start_ns`.
    pub fn new(start_ns: u64, period_ns: u64) -> Self {
        assert!(period_ns > 0, "a period must be positive");
        Self { period_ns, next_index: 0, start_ns, skipped_total: 0 }
    }

    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// The deadline the next `wait` sleeps until, unless it skips.
    pub(crate) fn next_deadline(&self) -> u64 {
        self.deadline(self.next_index)
    }

    fn deadline(&self, index: u64) -> u64 {
        self.start_ns + index * self.period_ns
    }

    /// Sleeps until the next deadline and returns the release. If that deadline and others after
    /// it have already passed by more than a period, the missed ones are skipped.
    pub fn wait(&mut self, clock: &dyn Clock) -> Release {
        let now = clock.now_ns();
        let mut index = self.next_index;
        let mut skipped = 0;
        // A deadline already a full period in the past means the cycle for it can no longer
        // run on time; release on the latest deadline not yet past by a period instead.
        if now >= self.deadline(index) + self.period_ns {
            let latest = (now - self.start_ns) / self.period_ns;
            skipped = latest - index;
            index = latest;
        }
        let deadline_ns = self.deadline(index);
        clock.sleep_until(deadline_ns);
        let woke_ns = clock.now_ns();
        self.next_index = index + 1;
        self.skipped_total += skipped;
        Release { index, deadline_ns, woke_ns, skipped }
    }
}

/// Calls `step` on every release of a schedule with period `period_ns`, the first release one
/// period from now, until `step` returns false. The one periodic runner: the daemon's control
/// thread and the benchmarks' control threads run their loops here.
pub(crate) fn run_periodic(clock: &dyn Clock, period_ns: u64, mut step: impl FnMut(&Release) -> bool) {
    let mut sched = Periodic::new(clock.now_ns() + period_ns, period_ns);
    loop {
        let release = sched.wait(clock);
        if !step(&release) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::clock::ManualClock;

    #[test]
    fn releases_on_absolute_deadlines() {
        let clock = ManualClock::new(1_000);
        let mut p = Periodic::new(1_000, 100);
        for k in 0..5 {
            let r = p.wait(&clock);
            assert_eq!(r.index, k);
            assert_eq!(r.deadline_ns, 1_000 + k * 100);
            assert_eq!(r.skipped, 0);
            clock.advance(30); // compute time does not shift the schedule
        }
    }

    #[test]
    fn a_late_cycle_runs_late_without_skipping() {
        let clock = ManualClock::new(0);
        let mut p = Periodic::new(0, 100);
        p.wait(&clock);
        clock.advance(150); // overran into the next period, but by less than a whole period
        let r = p.wait(&clock);
        assert_eq!((r.index, r.skipped, r.wake_latency_ns()), (1, 0, 50));
        let r = p.wait(&clock);
        assert_eq!((r.index, r.deadline_ns), (2, 200));
    }

    #[test]
    fn an_overrun_skips_missed_cycles_and_counts_them() {
        let clock = ManualClock::new(0);
        let mut p = Periodic::new(0, 100);
        p.wait(&clock);
        clock.advance(470); // stalled through deadlines 100, 200, 300
        let r = p.wait(&clock);
        assert_eq!(r.index, 4);
        assert_eq!(r.skipped, 3);
        assert_eq!(r.deadline_ns, 400);
        assert_eq!(p.skipped_total(), 3);
        let r = p.wait(&clock);
        assert_eq!((r.index, r.deadline_ns, r.skipped), (5, 500, 0));
    }
}
