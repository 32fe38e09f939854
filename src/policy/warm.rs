//! When the policy thread warms its model before a deadline (`Policy::warm`). A forward that has
//! sat idle for a policy period runs cold: on the 2-core development VM a 20 us student forward
//! took ~300 us after 20 ms of sleep. Warming it shortly before the deadline brings the tick
//! back near its back-to-back cost, but only if the warm-up has finished by the deadline (else
//! the tick starts late) and little time passes between the two (the caches cool again within a
//! few hundred microseconds there). So the lead follows the warm-up's own duration: a peak that
//! rises at once to any longer warm-up and decays slowly, plus a fixed margin.
//!
//! Not for: the MPPI planner, whose warm-up does nothing (a plan takes milliseconds).

/// Time kept between the end of the expected warm-up and the deadline (the thread's wake-up
/// latency and the warm-up's jitter).
pub(crate) const MARGIN_NS: u64 = 100_000;

/// The warm-up's duration assumed before one has been measured.
const FIRST_GUESS_NS: u64 = 300_000;

/// Each period the peak moves this fraction of the way down toward a shorter warm-up.
const DECAY: u64 = 16;

/// The lead before each deadline at which `Policy::warm` starts.
#[derive(Debug, Clone)]
pub(crate) struct WarmLead {
    peak_ns: u64,
    cap_ns: u64,
}

impl WarmLead {
    /// For a policy period of `period_ns`: the lead never exceeds half of it.
    pub(crate) fn new(period_ns: u64) -> WarmLead {
        WarmLead { peak_ns: FIRST_GUESS_NS, cap_ns: period_ns / 2 }
    }

    /// How long before the deadline the next warm-up starts.
    pub(crate) fn lead_ns(&self) -> u64 {
        (self.peak_ns + MARGIN_NS).min(self.cap_ns)
    }

    /// Records how long a warm-up took.
    pub(crate) fn observe(&mut self, took_ns: u64) {
        self.peak_ns = if took_ns >= self.peak_ns { took_ns } else { self.peak_ns - (self.peak_ns - took_ns) / DECAY };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::messages::{ControllerLevel, PolicyAction, Snapshot};
    use crate::policy::{run, Cycle, Policy, PolicyError};
    use crate::rt::clock::{Clock, ManualClock};
    use crate::rt::triple::triple;
    use crate::types::terrain::Perception;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    const PERIOD_NS: u64 = 20_000_000;

    /// A model whose warm-up takes `warm_ns` on the clock and whose tick `act_ns`; it notes when
    /// each warm-up ended and when each tick began, and stops the runner after `ticks` ticks.
    struct Timed {
        clock: ManualClock,
        warm_ns: u64,
        act_ns: u64,
        ticks: usize,
        warm_ends: Arc<Mutex<Vec<u64>>>,
        act_starts: Arc<Mutex<Vec<u64>>>,
        stop: Arc<AtomicBool>,
    }

    impl Policy for Timed {
        fn name(&self) -> &str {
            "timed"
        }
        fn reset(&mut self) {}
        fn warm(&mut self) {
            self.clock.advance(self.warm_ns);
            self.warm_ends.lock().unwrap().push(self.clock.now_ns());
        }
        fn act(
            &mut self,
            _: &Snapshot,
            _: Option<&Perception>,
            _: &mut PolicyAction,
        ) -> Result<ControllerLevel, PolicyError> {
            let mut starts = self.act_starts.lock().unwrap();
            starts.push(self.clock.now_ns());
            if starts.len() >= self.ticks {
                self.stop.store(true, Ordering::Relaxed);
            }
            self.clock.advance(self.act_ns);
            Ok(ControllerLevel::Primary)
        }
    }

    #[test]
    fn the_warm_up_ends_a_margin_before_each_deadline_however_long_it_takes() {
        // 700 us: longer than the first guess and than the fixed 600 us lead this replaced.
        for warm_ns in [50_000, 700_000, 2_000_000] {
            let clock = ManualClock::new(0);
            let stop = Arc::new(AtomicBool::new(false));
            let (warm_ends, act_starts) = (Arc::default(), Arc::<Mutex<Vec<u64>>>::default());
            let policy = Timed {
                clock: clock.clone(),
                warm_ns,
                act_ns: 20_000,
                ticks: 80,
                warm_ends: Arc::clone(&warm_ends),
                act_starts: Arc::clone(&act_starts),
                stop: Arc::clone(&stop),
            };
            let (mut snapshots_w, mut snapshots) = triple(Snapshot::default());
            snapshots_w.write(Snapshot { tick: 1, ..Snapshot::default() });
            let (mut actions, _actions_r) = triple(PolicyAction::default());
            let stats =
                run(Box::new(policy), Cycle::new(None, None), &mut snapshots, &mut actions, &clock, PERIOD_NS, &stop);
            let (warm_ends, act_starts) = (warm_ends.lock().unwrap(), act_starts.lock().unwrap());
            assert_eq!(act_starts.len(), 80);
            // Only the first warm-up (the lead still a guess) may end after its deadline; a
            // shorter one than guessed moves the lead down to it within a few seconds.
            for (k, (&start, &warmed)) in act_starts.iter().zip(warm_ends.iter()).enumerate().skip(1) {
                assert_eq!(start % PERIOD_NS, 0, "warm-up of {warm_ns} ns: tick {k} started late");
                assert!(start - warmed >= MARGIN_NS, "warm-up of {warm_ns} ns: tick {k}");
            }
            let last_gap = act_starts.last().unwrap() - warm_ends[act_starts.len() - 1];
            assert!(last_gap <= MARGIN_NS + 5_000, "warm-up of {warm_ns} ns: {last_gap} ns before the deadline");
            // The runner reports it: from the deadline to the action is the tick alone.
            let (latency, compute) = (stats.latency.quantile_ns(0.9), stats.compute.quantile_ns(0.9));
            assert!(latency <= compute + 1_000, "warm-up of {warm_ns} ns: latency {latency} ns, tick {compute} ns");
        }
    }

    #[test]
    fn a_longer_warm_up_raises_the_lead_at_once() {
        let mut lead = WarmLead::new(20_000_000);
        assert_eq!(lead.lead_ns(), FIRST_GUESS_NS + MARGIN_NS);
        lead.observe(900_000);
        assert_eq!(lead.lead_ns(), 900_000 + MARGIN_NS);
    }

    #[test]
    fn a_shorter_one_lowers_it_slowly_toward_it() {
        let mut lead = WarmLead::new(20_000_000);
        lead.observe(900_000);
        lead.observe(100_000);
        assert_eq!(lead.lead_ns(), 900_000 - 800_000 / DECAY + MARGIN_NS);
        for _ in 0..500 {
            lead.observe(100_000);
        }
        let settled = lead.lead_ns() - MARGIN_NS;
        assert!((100_000..100_000 + DECAY).contains(&settled), "{settled}");
    }

    #[test]
    fn the_lead_stays_within_half_a_period() {
        let mut lead = WarmLead::new(2_000_000);
        lead.observe(5_000_000);
        assert_eq!(lead.lead_ns(), 1_000_000);
    }
}
