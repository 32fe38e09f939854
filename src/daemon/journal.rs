//! What of the loop's events reaches the journal. Every event still goes to teleop's telemetry
//! (and every tick record, fault included, to the transition log); the journal (a person reading
//! `journalctl`) gets the first of a kind that repeats (a fault raised and cleared again and again, a fallback switching back and forth,
//! a refused request) and, once its window has passed, one line with how many more there were.
//! Mode changes are never held back.
//!
//! Not for: the real-time path (this runs on the supervisor thread and allocates).

use crate::control::messages::EventKind;

/// How long after a printed event its repeats are only counted.
pub(crate) const WINDOW_NS: u64 = 10_000_000_000;

struct Held {
    first: EventKind,
    last: EventKind,
    since_ns: u64,
    repeats: u64,
}

/// Whether `a` and `b` are repeats of one another (the measured figures aside).
fn repeats(a: &EventKind, b: &EventKind) -> bool {
    use EventKind::*;
    match (a, b) {
        (FaultRaised(x), FaultRaised(y)) | (FaultCleared(x), FaultCleared(y)) => x.same_kind(y),
        (FallbackSwitched { from: f1, to: t1, why: w1 }, FallbackSwitched { from: f2, to: t2, why: w2 }) => {
            (f1, t1, w1) == (f2, t2, w2)
        }
        (CommandRejected { source: a }, CommandRejected { source: b }) => a == b,
        (Refused { request: r1, mode: m1, refusal: x }, Refused { request: r2, mode: m2, refusal: y }) => {
            r1 == r2 && m1 == m2 && std::mem::discriminant(x) == std::mem::discriminant(y)
        }
        _ => false,
    }
}

/// Rate-limits repeating events in the journal, with a count.
pub struct Journal {
    window_ns: u64,
    held: Vec<Held>,
}

impl Default for Journal {
    fn default() -> Self {
        Self::new(WINDOW_NS)
    }
}

impl Journal {
    pub fn new(window_ns: u64) -> Self {
        Self { window_ns, held: Vec::new() }
    }

    /// Whether `kind`, seen at `now_ns`, is to be printed; a repeat within the window of the
    /// last printed one of its kind is counted instead.
    pub(crate) fn admit(&mut self, now_ns: u64, kind: &EventKind) -> bool {
        if matches!(kind, EventKind::ModeChanged { .. }) {
            return true;
        }
        if let Some(h) = self.held.iter_mut().find(|h| repeats(&h.first, kind)) {
            h.repeats += 1;
            h.last = *kind;
            return false;
        }
        self.held.push(Held { first: *kind, last: *kind, since_ns: now_ns, repeats: 0 });
        true
    }

    /// Lines for the windows that ended by `now_ns` (or all, when `all`): how many repeats each
    /// held back, and the last of them.
    pub(crate) fn flush(&mut self, now_ns: u64, all: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let window_ns = self.window_ns;
        self.held.retain(|h| {
            let ended = all || now_ns.saturating_sub(h.since_ns) >= window_ns;
            if ended && h.repeats > 0 {
                let s = now_ns.saturating_sub(h.since_ns) as f64 * 1e-9;
                let times = if h.repeats == 1 { "time" } else { "times" };
                lines.push(format!(
                    "{} (repeated {} more {times} in {s:.1} s; the last: {})",
                    h.first, h.repeats, h.last
                ));
            }
            !ended
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::messages::{Fault, Mode, Reason};

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_repeating_fault_is_printed_once_per_window_with_a_count() {
        let mut j = Journal::new(10 * S);
        let stale = |age_ms| EventKind::FaultRaised(Fault::ImuStale { age_ms });
        let cleared = EventKind::FaultCleared(Fault::ImuStale { age_ms: 21.0 });
        assert!(j.admit(0, &stale(21.0)));
        assert!(j.admit(S / 10, &cleared));
        let mut printed = 0;
        for i in 1..50u64 {
            printed += u32::from(j.admit(i * S / 5, &stale(21.0 + i as f64)));
            printed += u32::from(j.admit(i * S / 5 + S / 10, &cleared));
        }
        assert_eq!(printed, 0);
        // Another kind of fault and every mode change are printed at once.
        assert!(j.admit(5 * S, &EventKind::FaultRaised(Fault::MotorSilent { joint: 1, age_ms: 30.0 })));
        let m = EventKind::ModeChanged { from: Mode::Walk, to: Mode::Passive, reason: Reason::Shutdown };
        assert!(j.admit(5 * S, &m) && j.admit(5 * S, &m));
        assert!(j.flush(9 * S, false).is_empty());
        let lines = j.flush(10 * S + S / 10, false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("fault: IMU stale: last sample 21.0 ms old (repeated 49 more times in 10.1 s"));
        assert!(lines[0].ends_with("the last: fault: IMU stale: last sample 70.0 ms old)"), "{}", lines[0]);
        // The window is over: the next one is printed again.
        assert!(j.admit(11 * S, &stale(22.0)));
        assert!(!j.admit(12 * S, &stale(22.0)));
        assert_eq!(j.flush(12 * S, true).len(), 1);
    }
}
