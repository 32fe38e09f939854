//! Safety: the monitor that turns the robot's state into a fault (or none), and the limiter that
//! is applied to every motor command last, whatever produced it.
//!
//! Not for: choosing the mode a fault leads to (see `mode`).

use super::messages::{Fault, Mode};
use crate::config::{Config, JointMode};
use crate::estimate::{RobotState, NEVER};
use crate::types::MAX_JOINTS;
use crate::types::{HwFault, MotorCommand, MotorCommands};

const MS: f64 = 1e6;
/// A transmit queue that stays full this many cycles in a row is a fault; fewer are dropped frames.
const MAX_CONSECUTIVE_TX_FULL: u32 = 10;

pub(crate) struct Monitor {
    n: usize,
    imu_timeout_ns: u64,
    /// `[depth] timeout_ms`, when depth sensors are configured.
    depth_timeout_ns: Option<u64>,
    /// The walking controller reads the terrain: a stale depth sensor is a fault in Walk.
    watch_depth: bool,
    motor_timeout_ns: u64,
    tilt_limit_rad: f64,
    max_overruns: u32,
    consecutive_overruns: u32,
    consecutive_tx_full: u32,
    /// Per joint: the measured speed beyond which it is a fault.
    overspeed_radps: [f64; MAX_JOINTS],
}

impl Monitor {
    pub fn new(c: &Config) -> Self {
        Self {
            n: c.joints.len(),
            imu_timeout_ns: (c.safety.imu_timeout_ms * MS) as u64,
            depth_timeout_ns: c.depth.as_ref().filter(|d| !d.sensors.is_empty()).map(|d| (d.timeout_ms * MS) as u64),
            watch_depth: false,
            motor_timeout_ns: (c.safety.motor_timeout_ms * MS) as u64,
            tilt_limit_rad: c.safety.tilt_limit_deg.to_radians(),
            max_overruns: c.safety.max_consecutive_overruns,
            consecutive_overruns: 0,
            consecutive_tx_full: 0,
            overspeed_radps: std::array::from_fn(|i| {
                c.joints.get(i).map_or(f64::INFINITY, |j| j.vel_max_radps * c.safety.overspeed_factor)
            }),
        }
    }

    /// Records whether the previous cycle overran its deadline.
    pub(crate) fn cycle_overran(&mut self, overran: bool) {
        self.consecutive_overruns = if overran { self.consecutive_overruns + 1 } else { 0 };
    }

    /// Records the outcome of the previous `write`; returns a fault when it is one.
    pub(crate) fn write_outcome(&mut self, result: Result<(), HwFault>) -> Option<Fault> {
        match result {
            Ok(()) => {
                self.consecutive_tx_full = 0;
                None
            }
            Err(full @ HwFault::TxQueueFull { .. }) => {
                self.consecutive_tx_full += 1;
                (self.consecutive_tx_full >= MAX_CONSECUTIVE_TX_FULL).then_some(Fault::Hardware(full))
            }
            Err(other) => Some(Fault::Hardware(other)),
        }
    }

    /// Whether a stale depth sensor is a fault while walking (the policy reads the terrain).
    pub(crate) fn watch_depth(&mut self, on: bool) {
        self.watch_depth = on;
    }

    /// A depth sensor older than `[depth] timeout_ms`, when the walking controller reads the terrain.
    pub fn depth(&self, s: &RobotState) -> Option<Fault> {
        let timeout = self.depth_timeout_ns.filter(|_| self.watch_depth)?;
        (s.depth_age_ns > timeout).then(|| Fault::DepthStale {
            sensor: s.stalest_depth as u8,
            age_ms: if s.depth_age_ns == NEVER { f64::INFINITY } else { s.depth_age_ns as f64 / MS },
        })
    }

    /// The most important fault in `state`, if any; `walking` when the mode is Walk (depth matters
    /// only then). Faults that always damp come before those that may degrade
    /// (`response::always_damps`), so a brief gap never hides a severe fault.
    pub fn check(&self, s: &RobotState, walking: bool) -> Option<Fault> {
        let gyro = s.ang_vel_body_radps.iter().chain(&s.quat_wxyz);
        if !gyro.clone().all(|v| v.is_finite()) {
            return Some(Fault::NonFinite { what: "IMU reading", joint: None });
        }
        for (i, j) in s.joints[..self.n].iter().enumerate() {
            if !(j.q_rad.is_finite() && j.qd_radps.is_finite() && j.tau_nm.is_finite()) {
                return Some(Fault::NonFinite { what: "joint reading", joint: Some(i as u8) });
            }
        }
        if s.imu_age_ns == NEVER {
            return Some(Fault::ImuMissing);
        }
        if s.oldest_joint_age_ns == NEVER {
            return Some(Fault::MotorMissing { joint: s.oldest_joint as u8 });
        }
        for (i, j) in s.joints[..self.n].iter().enumerate() {
            if j.error != 0 {
                return Some(Fault::MotorError { joint: i as u8, code: j.error });
            }
        }
        for (i, j) in s.joints[..self.n].iter().enumerate() {
            let limit_radps = self.overspeed_radps[i];
            if j.qd_radps.abs() > limit_radps {
                return Some(Fault::OverSpeed { joint: i as u8, qd_radps: j.qd_radps, limit_radps });
            }
        }
        if s.tilt_rad > self.tilt_limit_rad {
            return Some(Fault::Tilt { tilt_deg: s.tilt_rad.to_degrees() });
        }
        // The faults that may degrade (`response`), after every one that always damps.
        if s.oldest_joint_age_ns > self.motor_timeout_ns {
            return Some(Fault::MotorSilent { joint: s.oldest_joint as u8, age_ms: s.oldest_joint_age_ns as f64 / MS });
        }
        if s.imu_age_ns > self.imu_timeout_ns {
            return Some(Fault::ImuStale { age_ms: s.imu_age_ns as f64 / MS });
        }
        if self.consecutive_overruns >= self.max_overruns {
            return Some(Fault::DeadlineOverruns { consecutive: self.consecutive_overruns });
        }
        if walking {
            return self.depth(s);
        }
        None
    }
}

#[derive(Clone, Copy, Default)]
struct JointLimits {
    position: bool,
    lo: f64,
    hi: f64,
    vel_max: f64,
    tau_max: f64,
    damping_kd: f64,
}

/// Applied to every command, last: position, velocity, torque and action-rate limits.
pub(crate) struct Limiter {
    n: usize,
    limits: [JointLimits; MAX_JOINTS],
    max_step_rad: f64,
    /// Position target sent last cycle; `None` after damping (the next target starts from `q`).
    prev_q_des: [Option<f64>; MAX_JOINTS],
}

impl Limiter {
    pub fn new(c: &Config) -> Self {
        let mut limits = [JointLimits::default(); MAX_JOINTS];
        for (l, j) in limits.iter_mut().zip(&c.joints) {
            *l = JointLimits {
                position: j.mode == JointMode::Position,
                lo: j.pos_min_rad.unwrap_or(f64::NEG_INFINITY),
                hi: j.pos_max_rad.unwrap_or(f64::INFINITY),
                vel_max: j.vel_max_radps,
                tau_max: j.torque_max_nm,
                damping_kd: j.damping_kd,
            };
        }
        Self {
            n: c.joints.len(),
            limits,
            max_step_rad: c.safety.action_rate_limit_radps / c.rate.control_hz as f64,
            prev_q_des: [None; MAX_JOINTS],
        }
    }

    /// The safe command: every joint damped. The (unused) position target stays at the measured
    /// joint angle, as in every command without a position term, so logs read naturally.
    pub fn damping(&self, s: &RobotState, out: &mut MotorCommands) {
        for ((c, l), j) in out.joints[..self.n].iter_mut().zip(&self.limits).zip(&s.joints) {
            *c = MotorCommand::damping(l.damping_kd);
            if l.position && j.q_rad.is_finite() {
                c.q_rad = j.q_rad.clamp(l.lo, l.hi);
            }
        }
    }

    /// Limits `cmds` in place. Returns a fault, and replaces every command with damping, when a
    /// command is not finite.
    ///
    /// Every limit holds at once, from the first command on and whatever the joint's position: a
    /// position target lies within the joint's limits or, for a joint outside them (it powered up
    /// there or was pushed), no further out than the last target; it moves at most the action-rate
    /// step from the last target (the measured angle on the first command); and the torque the
    /// motor's PD law will produce from the measured state stays within `torque_max_nm`. Where no
    /// target satisfies all three (the damping term alone is over the limit), the gains are lowered
    /// until the torque is within it: a softer joint, never a jump.
    pub fn apply(&mut self, s: &RobotState, cmds: &mut MotorCommands) -> Option<Fault> {
        if let Some(i) = cmds.joints[..self.n].iter().position(|c| !c.is_finite()) {
            self.damping(s, cmds);
            self.prev_q_des = [None; MAX_JOINTS];
            return Some(Fault::NonFinite { what: "motor command", joint: Some(i as u8) });
        }
        for i in 0..self.n {
            let l = self.limits[i];
            let (q, qd) = (s.joints[i].q_rad, s.joints[i].qd_radps);
            let c = &mut cmds.joints[i];
            if !(q.is_finite() && qd.is_finite()) {
                // Nothing can be predicted from this reading (the monitor faults it): damp the joint.
                *c = MotorCommand::damping(l.damping_kd);
                self.prev_q_des[i] = None;
                continue;
            }
            c.kp = c.kp.max(0.0);
            c.kd = c.kd.max(0.0);
            c.qd_radps = c.qd_radps.clamp(-l.vel_max, l.vel_max);
            c.tau_ff_nm = c.tau_ff_nm.clamp(-l.tau_max, l.tau_max);
            if c.kp == 0.0 {
                // No position term: the target is irrelevant to the motor; keep it at the joint.
                c.q_rad = if l.position { q.clamp(l.lo, l.hi) } else { 0.0 };
                self.prev_q_des[i] = None;
            } else if l.position {
                let anchor = self.prev_q_des[i].unwrap_or(q);
                // Position and rate: an interval that always holds `anchor`.
                let lo = l.lo.min(anchor).max(anchor - self.max_step_rad);
                let hi = l.hi.max(anchor).min(anchor + self.max_step_rad);
                // Torque: the targets whose predicted torque is within the limit.
                let rest = c.kd * (c.qd_radps - qd) + c.tau_ff_nm;
                let t_lo = q + (-l.tau_max - rest) / c.kp;
                let t_hi = q + (l.tau_max - rest) / c.kp;
                c.q_rad = if t_lo > hi {
                    hi
                } else if t_hi < lo {
                    lo
                } else {
                    c.q_rad.clamp(lo.max(t_lo), hi.min(t_hi))
                };
                self.prev_q_des[i] = Some(c.q_rad);
            }
            limit_gains(c, q, qd, l.tau_max);
        }
        None
    }
}

/// The torque the motor's PD law produces for `c` at the measured `q`, `qd`.
pub fn predicted_torque_nm(c: &MotorCommand, q: f64, qd: f64) -> f64 {
    c.kp * (c.q_rad - q) + c.kd * (c.qd_radps - qd) + c.tau_ff_nm
}

/// Lowers both gains, in proportion, until the predicted torque is within `tau_max`.
fn limit_gains(c: &mut MotorCommand, q: f64, qd: f64, tau_max: f64) {
    let pd = c.kp * (c.q_rad - q) + c.kd * (c.qd_radps - qd);
    let tau = pd + c.tau_ff_nm;
    if tau.abs() > tau_max {
        // |tau_ff| <= tau_max (clamped above), so a scale in [0, 1) brings the sum to the limit.
        let scale = ((tau_max.copysign(tau) - c.tau_ff_nm) / pd).clamp(0.0, 1.0);
        c.kp *= scale;
        c.kd *= scale;
    }
}

/// Whether `mode` commands damping whatever else happens.
pub fn damps(mode: Mode) -> bool {
    matches!(mode, Mode::Passive | Mode::EStop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap()
    }

    fn state_at(q: f64) -> RobotState {
        let mut s = RobotState::default();
        for j in s.joints.iter_mut() {
            j.q_rad = q;
        }
        s
    }

    #[test]
    fn targets_are_clamped_to_limits_and_rate() {
        let c = config();
        let mut l = Limiter::new(&c);
        let s = state_at(0.0);
        let mut cmds = MotorCommands::default();
        cmds.joints[0] = MotorCommand { q_rad: 5.0, qd_radps: 0.0, kp: 1.0, kd: 0.0, tau_ff_nm: 0.0 };
        assert_eq!(l.apply(&s, &mut cmds), None);
        // 10 rad/s at 500 Hz: at most 0.02 rad per cycle from the measured position.
        assert!((cmds.joints[0].q_rad - 0.02).abs() < 1e-12, "{}", cmds.joints[0].q_rad);
        for _ in 0..200 {
            cmds.joints[0].q_rad = 5.0;
            l.apply(&s, &mut cmds);
        }
        assert_eq!(cmds.joints[0].q_rad, 1.6); // pos_max_rad of left_hip
    }

    #[test]
    fn predicted_torque_stays_within_the_limit() {
        let c = config();
        let mut l = Limiter::new(&c);
        let mut s = state_at(0.0);
        s.joints[0].q_rad = 0.5;
        let mut cmds = MotorCommands::default();
        // Stiff gains towards a target the rate limit allows: 0.5 -> 0.52 at kp 1000 = 20 N·m > 18.
        cmds.joints[0] = MotorCommand { q_rad: 0.52, qd_radps: 0.0, kp: 1000.0, kd: 0.0, tau_ff_nm: 0.0 };
        l.apply(&s, &mut cmds);
        let tau = 1000.0 * (cmds.joints[0].q_rad - 0.5);
        assert!((tau - 18.0).abs() < 1e-9, "{tau}");
    }

    #[test]
    fn a_joint_that_starts_outside_its_limits_is_brought_back_within_every_limit() {
        // The outside test: a knee powered up at +0.25 rad against pos_max_rad = 0, StandUp gains
        // kp 60 and a torque limit of 10 N·m.
        let mut c = config();
        c.joints[1].torque_max_nm = 10.0;
        let mut l = Limiter::new(&c);
        let mut s = state_at(-1.0);
        s.joints[1].q_rad = 0.25;
        let mut cmds = MotorCommands::default();
        cmds.joints[1] = MotorCommand { q_rad: 0.0, qd_radps: 0.0, kp: 60.0, kd: 1.0, tau_ff_nm: 0.0 };
        assert_eq!(l.apply(&s, &mut cmds), None);
        let c1 = cmds.joints[1];
        assert!((c1.q_rad - 0.23).abs() < 1e-12, "one rate step towards the limit: {}", c1.q_rad);
        assert!(predicted_torque_nm(&c1, 0.25, 0.0).abs() <= 10.0);
        // Towards the limit a step per tick while the joint follows.
        for _ in 0..20 {
            s.joints[1].q_rad = cmds.joints[1].q_rad;
            cmds.joints[1].q_rad = 0.0;
            l.apply(&s, &mut cmds);
        }
        assert_eq!(cmds.joints[1].q_rad, 0.0);
    }

    #[test]
    fn when_damping_alone_is_over_the_torque_limit_the_gains_are_lowered() {
        let c = config();
        let mut l = Limiter::new(&c);
        let mut s = state_at(0.0);
        s.joints[0].qd_radps = 19.0;
        let mut cmds = MotorCommands::default();
        cmds.joints[0] = MotorCommand { q_rad: 0.0, qd_radps: 0.0, kp: 40.0, kd: 2.0, tau_ff_nm: 0.0 };
        l.apply(&s, &mut cmds);
        let c0 = cmds.joints[0];
        assert!((predicted_torque_nm(&c0, 0.0, 19.0) + 18.0).abs() < 1e-9, "{c0:?}");
        assert!(c0.q_rad.abs() <= 0.02 && c0.kd < 2.0 && c0.kp > 0.0, "{c0:?}");
    }

    #[test]
    fn a_non_finite_reading_damps_that_joint_without_predicting_from_it() {
        let c = config();
        let mut l = Limiter::new(&c);
        let mut s = state_at(0.0);
        s.joints[3].q_rad = f64::NAN;
        let mut cmds = MotorCommands::default();
        cmds.joints[3] = MotorCommand { q_rad: 0.5, qd_radps: 0.0, kp: 40.0, kd: 1.0, tau_ff_nm: 0.0 };
        assert_eq!(l.apply(&s, &mut cmds), None);
        assert_eq!(cmds.joints[3], MotorCommand::damping(1.5));
    }

    /// Case count: `LOCOD_FUZZ_CASES=100000 cargo test --release --lib limits_hold`.
    fn fuzz_cases() -> u32 {
        std::env::var("LOCOD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    }

    /// One joint's limits, a starting state, and a run of commands with the joint moving between them.
    #[derive(Debug, Clone)]
    struct Case {
        lo: f64,
        width: f64,
        tau_max: f64,
        vel_max: f64,
        rate_radps: f64,
        position: bool,
        q0: f64,
        ticks: Vec<([f64; 5], f64, f64)>,
    }

    fn case() -> impl proptest::strategy::Strategy<Value = Case> {
        use proptest::prelude::*;
        let command = (
            (-6.0..6.0f64, -80.0..80.0f64, prop_oneof![Just(0.0), 0.0..500.0f64], 0.0..5.0f64, -60.0..60.0f64)
                .prop_map(|(q, qd, kp, kd, tau)| [q, qd, kp, kd, tau]),
            -0.3..0.3f64,
            -200.0..200.0f64,
        );
        (
            (-3.0..3.0f64, 0.0..3.0f64, 0.5..50.0f64, 1.0..60.0f64, 0.5..50.0f64, any::<bool>()),
            -6.0..6.0f64,
            proptest::collection::vec(command, 1..25),
        )
            .prop_map(|((lo, width, tau_max, vel_max, rate_radps, position), q0, ticks)| Case {
                lo,
                width,
                tau_max,
                vel_max,
                rate_radps,
                position,
                q0,
                ticks,
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(fuzz_cases()))]

        /// Position, action-rate and predicted-torque limits hold together on every command,
        /// from the first, whatever the starting state, the targets and the limits.
        #[test]
        fn limits_hold_together_from_any_starting_state(k in case()) {
            let mut c = config();
            let (lo, hi) = (k.lo, k.lo + k.width);
            let j = &mut c.joints[0];
            j.mode = if k.position { JointMode::Position } else { JointMode::Velocity };
            (j.pos_min_rad, j.pos_max_rad) = if k.position { (Some(lo), Some(hi)) } else { (None, None) };
            j.torque_max_nm = k.tau_max;
            j.vel_max_radps = k.vel_max;
            c.safety.action_rate_limit_radps = k.rate_radps;
            let step = k.rate_radps / c.rate.control_hz as f64;
            let mut l = Limiter::new(&c);
            let mut s = state_at(0.0);
            s.joints[0].q_rad = k.q0;
            let mut last: Option<f64> = None;
            for (cmd, dq, qd) in &k.ticks {
                let [q_rad, qd_radps, kp, kd, tau_ff_nm] = *cmd;
                let mut cmds = MotorCommands::default();
                cmds.joints[0] = MotorCommand { q_rad, qd_radps, kp, kd, tau_ff_nm };
                proptest::prop_assert_eq!(l.apply(&s, &mut cmds), None);
                let (q, out) = (s.joints[0].q_rad, cmds.joints[0]);
                let tau = predicted_torque_nm(&out, q, s.joints[0].qd_radps);
                let eps = 1e-9 * (1.0 + k.tau_max + out.kp + out.kd);
                proptest::prop_assert!(tau.abs() <= k.tau_max + eps, "torque {} > {} in {:?}", tau, k.tau_max, out);
                proptest::prop_assert!(out.kp >= 0.0 && out.kd >= 0.0 && out.kp <= kp && out.kd <= kd);
                proptest::prop_assert!(out.qd_radps.abs() <= k.vel_max && out.tau_ff_nm.abs() <= k.tau_max);
                if k.position && kp > 0.0 {
                    let anchor = last.unwrap_or(q);
                    proptest::prop_assert!((out.q_rad - anchor).abs() <= step + 1e-12, "jump {} -> {}", anchor, out.q_rad);
                    proptest::prop_assert!(
                        out.q_rad >= lo.min(anchor) - 1e-12 && out.q_rad <= hi.max(anchor) + 1e-12,
                        "{} outside [{lo}, {hi}] and further out than {anchor}", out.q_rad
                    );
                    last = Some(out.q_rad);
                } else {
                    last = None;
                }
                s.joints[0].q_rad += dq;
                s.joints[0].qd_radps = *qd;
            }
        }
    }

    #[test]
    fn a_non_finite_command_becomes_damping_and_a_fault() {
        let c = config();
        let mut l = Limiter::new(&c);
        let mut cmds = MotorCommands::default();
        cmds.joints[4].q_rad = f64::NAN;
        let f = l.apply(&state_at(0.0), &mut cmds);
        assert_eq!(f, Some(Fault::NonFinite { what: "motor command", joint: Some(4) }));
        assert_eq!(cmds.joints[0], MotorCommand::damping(1.5)); // measured q is 0 here
    }

    #[test]
    fn monitor_reports_stale_and_tilted_states() {
        let c = config();
        let mut m = Monitor::new(&c);
        let mut s = state_at(0.0);
        assert_eq!(m.check(&s, false), None);
        s.imu_age_ns = 30_000_000;
        assert!(matches!(m.check(&s, false), Some(Fault::ImuStale { .. })));
        s.imu_age_ns = 0;
        s.oldest_joint = 2;
        s.oldest_joint_age_ns = 11_000_000;
        assert!(matches!(m.check(&s, false), Some(Fault::MotorSilent { joint: 2, .. })));
        s.oldest_joint_age_ns = 0;
        s.joints[2].qd_radps = -44.0; // left_wheel: vel_max 30 with the default margin 1.5
        assert_eq!(m.check(&s, false), None);
        s.joints[2].qd_radps = -46.0;
        assert_eq!(m.check(&s, false), Some(Fault::OverSpeed { joint: 2, qd_radps: -46.0, limit_radps: 45.0 }));
        s.joints[2].qd_radps = 0.0;
        s.tilt_rad = 1.0;
        assert!(matches!(m.check(&s, false), Some(Fault::Tilt { .. })));
        s.tilt_rad = 0.0;
        for _ in 0..5 {
            m.cycle_overran(true);
        }
        assert_eq!(m.check(&s, false), Some(Fault::DeadlineOverruns { consecutive: 5 }));
        m.cycle_overran(false);
        assert_eq!(m.check(&s, false), None);
    }

    #[test]
    fn a_full_tx_queue_is_tolerated_briefly() {
        let mut m = Monitor::new(&config());
        for _ in 0..9 {
            assert_eq!(m.write_outcome(Err(HwFault::TxQueueFull { bus: 0 })), None);
        }
        assert!(m.write_outcome(Err(HwFault::TxQueueFull { bus: 0 })).is_some());
        assert_eq!(m.write_outcome(Ok(())), None);
        assert!(m.write_outcome(Err(HwFault::BusOff { bus: 1 })).is_some());
    }
}
