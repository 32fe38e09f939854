//! Velocity command arbitration: teleop beats autonomy while its lease is alive, no live lease
//! means zero, e-stop beats everything. Every new message is validated (finite, within limits)
//! before it can count; the chosen command is acceleration-limited.
//!
//! Not for: decoding messages (the teleop side does) or deciding modes.

use super::messages::{CommandSource, VelocityMsg};
use crate::config::CommandLimits;

#[derive(Clone, Copy, Default)]
struct SourceState {
    /// Arrival time of the last message seen (valid or not).
    seen_t_ns: u64,
    /// The last valid message.
    valid: VelocityMsg,
}

pub(crate) struct Arbiter {
    lease_ns: u64,
    max_vel: [f64; 3],
    max_accel: [f64; 3],
    teleop: SourceState,
    autonomy: SourceState,
    current: [f64; 3],
    pub rejected: u64,
}

/// The outcome of one arbitration step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Arbitrated {
    pub command: [f64; 3],
    pub source: CommandSource,
    /// A source whose new message was invalid this step.
    pub rejected: Option<CommandSource>,
}

impl Arbiter {
    pub fn new(limits: &CommandLimits) -> Self {
        Self {
            lease_ns: (limits.lease_ms * 1e6) as u64,
            max_vel: limits.max_vel,
            max_accel: limits.max_accel,
            teleop: SourceState::default(),
            autonomy: SourceState::default(),
            current: [0.0; 3],
            rejected: 0,
        }
    }

    fn valid(&self, v: &[f64; 3]) -> bool {
        v.iter().zip(&self.max_vel).all(|(x, max)| x.is_finite() && x.abs() <= *max)
    }

    fn take(&mut self, teleop: bool, msg: &VelocityMsg) -> bool {
        let max_ok = self.valid(&msg.vel);
        let s = if teleop { &mut self.teleop } else { &mut self.autonomy };
        if msg.t_ns == 0 || msg.t_ns == s.seen_t_ns {
            return true;
        }
        s.seen_t_ns = msg.t_ns;
        if max_ok {
            s.valid = *msg;
        } else {
            self.rejected += 1;
        }
        max_ok
    }

    fn alive(&self, s: &SourceState, now_ns: u64) -> bool {
        s.valid.t_ns != 0 && now_ns.saturating_sub(s.valid.t_ns) <= self.lease_ns
    }

    /// One control step of `dt_s` at `now_ns`, given the newest message of each source.
    pub fn step(
        &mut self,
        now_ns: u64,
        dt_s: f64,
        teleop: &VelocityMsg,
        autonomy: &VelocityMsg,
        estop: bool,
    ) -> Arbitrated {
        let mut rejected = None;
        if !self.take(true, teleop) {
            rejected = Some(CommandSource::Teleop);
        }
        if !self.take(false, autonomy) {
            rejected = Some(CommandSource::Autonomy);
        }
        if estop {
            self.current = [0.0; 3];
            return Arbitrated { command: self.current, source: CommandSource::None, rejected };
        }
        let (target, source) = if self.alive(&self.teleop, now_ns) {
            (self.teleop.valid.vel, CommandSource::Teleop)
        } else if self.alive(&self.autonomy, now_ns) {
            (self.autonomy.valid.vel, CommandSource::Autonomy)
        } else {
            ([0.0; 3], CommandSource::None)
        };
        for ((c, t), a) in self.current.iter_mut().zip(target).zip(self.max_accel) {
            let step = a * dt_s;
            *c += (t - *c).clamp(-step, step);
        }
        Arbitrated { command: self.current, source, rejected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: f64 = 0.002;
    const MS: u64 = 1_000_000;

    fn arbiter() -> Arbiter {
        Arbiter::new(&CommandLimits { lease_ms: 100.0, max_vel: [1.0, 0.5, 1.5], max_accel: [100.0; 3] })
    }

    fn msg(vx: f64, t_ms: u64) -> VelocityMsg {
        VelocityMsg { vel: [vx, 0.0, 0.0], t_ns: t_ms * MS }
    }

    #[test]
    fn teleop_overrides_autonomy_until_its_lease_ends() {
        let mut a = arbiter();
        let r = a.step(10 * MS, DT, &msg(0.5, 10), &msg(0.2, 10), false);
        assert_eq!((r.command[0], r.source), (0.2, CommandSource::Teleop));
        let r = a.step(50 * MS, DT, &msg(0.5, 10), &msg(0.2, 50), false);
        assert_eq!((r.command[0], r.source), (0.4, CommandSource::Teleop));
        // Teleop silent for longer than the lease: autonomy resumes.
        let r = a.step(120 * MS, DT, &msg(0.5, 10), &msg(0.2, 115), false);
        assert_eq!(r.source, CommandSource::Autonomy);
        // Both silent: the command goes to zero, not the last value.
        let mut last = r;
        for t in 0..100 {
            last = a.step((300 + t) * MS, DT, &msg(0.5, 10), &msg(0.2, 115), false);
        }
        assert_eq!((last.command, last.source), ([0.0; 3], CommandSource::None));
    }

    #[test]
    fn invalid_messages_are_rejected_once_and_never_applied() {
        let mut a = arbiter();
        let r = a.step(10 * MS, DT, &msg(f64::NAN, 10), &VelocityMsg::default(), false);
        assert_eq!((r.rejected, r.source), (Some(CommandSource::Teleop), CommandSource::None));
        let r = a.step(12 * MS, DT, &msg(f64::NAN, 10), &VelocityMsg::default(), false);
        assert_eq!(r.rejected, None);
        let r = a.step(14 * MS, DT, &msg(3.0, 14), &VelocityMsg::default(), false);
        assert_eq!(r.rejected, Some(CommandSource::Teleop));
        assert_eq!(r.command, [0.0; 3]);
        assert_eq!(a.rejected, 2);
    }

    #[test]
    fn estop_zeroes_at_once_and_acceleration_is_limited_otherwise() {
        let mut a = Arbiter::new(&CommandLimits { lease_ms: 100.0, max_vel: [1.0; 3], max_accel: [1.0; 3] });
        let r = a.step(MS, DT, &msg(1.0, 1), &VelocityMsg::default(), false);
        assert!((r.command[0] - 0.002).abs() < 1e-12);
        let r = a.step(2 * MS, DT, &msg(1.0, 2), &VelocityMsg::default(), true);
        assert_eq!(r.command, [0.0; 3]);
    }
}
