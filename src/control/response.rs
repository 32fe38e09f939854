//! The graded response to a fault: damp at once, or degrade for a bounded time.
//!
//! A robot that balances on its wheels falls when it is damped, so for it damping is the unsafe
//! answer to a brief sensor gap or an overrun burst. Faults of the kinds `[safety.degrade]` names
//! (a stale IMU, a run of overrunning cycles, a motor whose replies paused, a stale depth sensor
//! under a terrain-reading policy) degrade: the loop keeps the mode, Walk hands over to the
//! balance fallback (the stand level) and every controller works on the last good estimate, which
//! the stale input leaves in place. The time each kind's condition is present is summed over the
//! episode (from the first fault's appearance until the fault clears, `[safety] fault_clear_ms`
//! after the condition last lapsed), so a sensor that flaps does not degrade forever; past its
//! kind's limit the fault damps like any other. Every other
//! fault (tilt, a motor missing or in error, non-finite values, bus faults) damps at once.
//!
//! Not for: detecting faults (`safety::Monitor`) or what each mode commands (`motion`).

use super::messages::Fault;
use crate::config::DegradeLimits;

/// What a fault does this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No fault.
    Clear,
    /// The balance fallback on the last good estimate.
    Degrade,
    /// Damping; `persisted` when a degrading fault outlasted its limit.
    Damp { persisted: bool },
}

/// The kinds of fault that may degrade, as indices into `Response::limits_ns`.
fn degradable(f: &Fault) -> Option<usize> {
    match f {
        Fault::ImuStale { .. } => Some(0),
        Fault::DeadlineOverruns { .. } => Some(1),
        Fault::DepthStale { .. } => Some(2),
        Fault::MotorSilent { .. } => Some(3),
        _ => None,
    }
}

/// Whether `f` damps whatever the configuration says (it is severe, or not a brief gap).
pub(crate) fn always_damps(f: &Fault) -> bool {
    degradable(f).is_none()
}

pub struct Response {
    /// Per degradable kind: how long its condition may be present in an episode before it damps.
    limits_ns: [u64; 4],
    /// Per degradable kind: time its condition was present in this episode.
    present_ns: [u64; 4],
    last_ns: Option<u64>,
    /// The episode's fault damped: it stays damped until the fault clears.
    damped: Option<bool>,
}

impl Response {
    /// `l`: how long each degradable fault may last (`Config::degrade_limits`).
    pub fn new(l: DegradeLimits) -> Self {
        let ns = |ms: f64| (ms * 1e6) as u64;
        Self {
            limits_ns: [ns(l.imu_stale_ms), ns(l.deadline_overruns_ms), ns(l.depth_stale_ms), ns(l.motor_silent_ms)],
            present_ns: [0; 4],
            last_ns: None,
            damped: None,
        }
    }

    /// Judges the fault in force (`active`, held through `fault_clear_ms`) at `now_ns`, `present`
    /// saying whether its condition was seen this tick. Each kind's time counts against its own
    /// limit: an IMU gap does not spend a motor pause's allowance.
    pub(crate) fn judge(&mut self, now_ns: u64, active: Option<&Fault>, present: bool) -> Verdict {
        let Some(active) = active else {
            *self = Self { limits_ns: self.limits_ns, present_ns: [0; 4], last_ns: None, damped: None };
            return Verdict::Clear;
        };
        let kind = degradable(active);
        if let (Some(last), Some(k), true) = (self.last_ns, kind, present) {
            self.present_ns[k] += now_ns.saturating_sub(last);
        }
        self.last_ns = Some(now_ns);
        if let Some(persisted) = self.damped {
            return Verdict::Damp { persisted };
        }
        let verdict = match kind.map(|k| (self.limits_ns[k], self.present_ns[k])) {
            None | Some((0, _)) => Verdict::Damp { persisted: false },
            Some((limit, present)) if present > limit => Verdict::Damp { persisted: true },
            Some(_) => Verdict::Degrade,
        };
        if let Verdict::Damp { persisted } = verdict {
            self.damped = Some(persisted);
        }
        verdict
    }

    /// Whether the episode's fault has already damped.
    pub fn damped(&self) -> bool {
        self.damped.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MS: u64 = 1_000_000;

    fn response(degrade: &str) -> Response {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml");
        let text = std::fs::read_to_string(path).unwrap() + degrade;
        Response::new(Config::parse(&text, std::path::Path::new(path)).unwrap().degrade_limits())
    }

    /// Judges `fault` every 2 ms for `ticks` ticks from `t`, expecting Degrade each time; returns
    /// the time after the last.
    fn degrades(r: &mut Response, mut t: u64, fault: &Fault, present: bool, ticks: usize) -> u64 {
        for _ in 0..ticks {
            assert_eq!(r.judge(t, Some(fault), present), Verdict::Degrade, "at {} ms", t / MS);
            t += 2 * MS;
        }
        t
    }

    #[test]
    fn a_brief_gap_degrades_and_a_long_one_damps() {
        let mut r = response("[safety.degrade]\nimu_stale_ms = 100.0\n");
        let stale = Fault::ImuStale { age_ms: 25.0 };
        let t = degrades(&mut r, 1_000 * MS, &stale, true, 50);
        // 98 ms so far; the condition lapses (fault held), which does not count.
        let mut t = degrades(&mut r, t, &stale, false, 100);
        assert_eq!(r.judge(t, Some(&stale), true), Verdict::Degrade);
        t += 4 * MS;
        assert_eq!(r.judge(t, Some(&stale), true), Verdict::Damp { persisted: true });
        // Damped stays damped until the fault clears, even if the condition lapses.
        assert_eq!(r.judge(t + 2 * MS, Some(&stale), false), Verdict::Damp { persisted: true });
        assert_eq!(r.judge(t + 4 * MS, None, false), Verdict::Clear);
        assert_eq!(r.judge(t + 6 * MS, Some(&stale), true), Verdict::Degrade);
    }

    #[test]
    fn each_kind_spends_its_own_allowance() {
        let mut r = response("[safety.degrade]\nimu_stale_ms = 100.0\nmotor_silent_ms = 20.0\n");
        let stale = Fault::ImuStale { age_ms: 25.0 };
        let silent = Fault::MotorSilent { joint: 1, age_ms: 21.0 };
        let t = degrades(&mut r, 1_000 * MS, &stale, true, 40);
        // 78 ms of IMU gap in this episode; a motor pause has its own 20 ms.
        let t = degrades(&mut r, t, &silent, true, 10);
        assert_eq!(r.judge(t, Some(&silent), true), Verdict::Damp { persisted: true });
    }

    #[test]
    fn severe_faults_and_zero_limits_damp_at_once() {
        let mut r = response("[safety.degrade]\nimu_stale_ms = 100.0\n");
        assert_eq!(r.judge(0, Some(&Fault::Tilt { tilt_deg: 50.0 }), true), Verdict::Damp { persisted: false });
        let mut r = response("");
        // The in-memory test stand has no [balance]: a stale IMU damps by default.
        assert_eq!(r.judge(0, Some(&Fault::ImuStale { age_ms: 25.0 }), true), Verdict::Damp { persisted: false });
        assert_eq!(
            r.judge(0, Some(&Fault::MotorSilent { joint: 2, age_ms: 25.0 }), true),
            Verdict::Damp { persisted: false }
        );
        assert!(always_damps(&Fault::MotorMissing { joint: 1 }));
        assert!(always_damps(&Fault::MotorError { joint: 1, code: 3 }));
        assert!(!always_damps(&Fault::MotorSilent { joint: 1, age_ms: 30.0 }));
        assert!(!always_damps(&Fault::DepthStale { sensor: 0, age_ms: 300.0 }));
    }
}
