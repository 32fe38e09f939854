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

pub struct Monitor {
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
        }
    }

    /// Records whether the previous cycle overran its deadline.
    pub fn cycle_overran(&mut self, overran: bool) {
        self.consecutive_overruns = if overran { self.consecutive_overruns + 1 } else { 0 };
    }

    /// Records the outcome of the previous `write`; returns a fault when it is one.
    pub fn write_outcome(&mut self, result: Result<(), HwFault>) -> Option<Fault> {
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
    pub fn watch_depth(&mut self, on: bool) {
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
        if s.oldest_joint_age_ns > self.motor_timeout_ns {
            return Some(Fault::MotorSilent { joint: s.oldest_joint as u8, age_ms: s.oldest_joint_age_ns as f64 / MS });
        }
        for (i, j) in s.joints[..self.n].iter().enumerate() {
            if j.error != 0 {
                return Some(Fault::MotorError { joint: i as u8, code: j.error });
            }
        }
        if s.tilt_rad > self.tilt_limit_rad {
            return Some(Fault::Tilt { tilt_deg: s.tilt_rad.to_degrees() });
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
pub struct Limiter {
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
            c.kp = c.kp.max(0.0);
            c.kd = c.kd.max(0.0);
            c.qd_radps = c.qd_radps.clamp(-l.vel_max, l.vel_max);
            c.tau_ff_nm = c.tau_ff_nm.clamp(-l.tau_max, l.tau_max);
            if c.kp == 0.0 {
                // No position term: the target is irrelevant to the motor; keep it at the joint.
                c.q_rad = if l.position { q.clamp(l.lo, l.hi) } else { 0.0 };
                self.prev_q_des[i] = None;
                continue;
            }
            if l.position {
                let prev = self.prev_q_des[i].unwrap_or(q);
                let mut q_des = c.q_rad.clamp(prev - self.max_step_rad, prev + self.max_step_rad);
                // Keep the torque the motor's PD law will produce within the joint's limit.
                let tau = c.kp * (q_des - q) + c.kd * (c.qd_radps - qd) + c.tau_ff_nm;
                if tau.abs() > l.tau_max {
                    let allowed = tau.clamp(-l.tau_max, l.tau_max);
                    q_des = q + (allowed - c.kd * (c.qd_radps - qd) - c.tau_ff_nm) / c.kp;
                }
                c.q_rad = q_des.clamp(l.lo, l.hi);
                self.prev_q_des[i] = Some(c.q_rad);
            }
        }
        None
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
