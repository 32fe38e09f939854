//! The motions the daemon itself commands: damping, standing up to the default pose, holding it,
//! and sitting back down. Each writes joint targets; the limiter is applied afterwards. On a robot
//! that balances on its wheels (`[balance]`), the wheels are driven by the balance controller in
//! every one of these motions, and it also walks when `[controller] kind = "balance"`.
//!
//! Not for: learned walking (that is the policy's) or deciding when to move.

use super::balance::BalanceController;
use crate::config::{Config, ControllerKind, JointMode};
use crate::estimate::RobotState;
use crate::types::MAX_JOINTS;
use crate::types::{MotorCommand, MotorCommands};

#[derive(Clone, Copy, Default)]
struct JointParams {
    velocity: bool,
    default_rad: f64,
    kp: f64,
    kd: f64,
    damping_kd: f64,
    /// Shifted by the balance controller's leveling (`[balance] level_joints`).
    levels: bool,
}

pub(crate) struct Motion {
    n: usize,
    joints: [JointParams; MAX_JOINTS],
    standup_ns: u64,
    sitdown_ns: u64,
    /// Where the current interpolation started, and when.
    from: [f64; MAX_JOINTS],
    /// The pose StandUp started from: where SitDown returns.
    rest: [f64; MAX_JOINTS],
    start_ns: u64,
    balance: Option<BalanceController>,
    walks: bool,
}

/// Smooth 0→1 with zero slope at both ends.
fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

impl Motion {
    pub fn new(c: &Config) -> Self {
        let mut joints = [JointParams::default(); MAX_JOINTS];
        for (p, j) in joints.iter_mut().zip(&c.joints) {
            *p = JointParams {
                velocity: j.mode == JointMode::Velocity,
                default_rad: j.default_pos_rad,
                kp: j.stand_kp,
                kd: j.stand_kd,
                damping_kd: j.damping_kd,
                levels: c.balance.as_ref().is_some_and(|b| b.level_joints.contains(&j.name)),
            };
        }
        Self {
            n: c.joints.len(),
            joints,
            standup_ns: (c.controller.standup_s * 1e9) as u64,
            sitdown_ns: (c.controller.sitdown_s * 1e9) as u64,
            from: [0.0; MAX_JOINTS],
            rest: [0.0; MAX_JOINTS],
            start_ns: 0,
            balance: BalanceController::new(c),
            walks: c.controller.kind == ControllerKind::Balance,
        }
    }

    /// Whether Walk is available without a policy (the built-in balance controller walks).
    pub fn walks(&self) -> bool {
        self.walks && self.balance.is_some()
    }

    /// Overwrites the wheels' commands with the balance controller's, if the robot balances.
    fn balance(&mut self, s: &RobotState, command: &[f64; 3], out: &mut MotorCommands) {
        if let Some(b) = self.balance.as_mut() {
            let (left, right) = b.wheels();
            (out.joints[left], out.joints[right]) = b.update(s, command);
        }
    }

    pub fn damping(&self, out: &mut MotorCommands) {
        for (c, p) in out.joints[..self.n].iter_mut().zip(&self.joints) {
            *c = MotorCommand::damping(p.damping_kd);
        }
    }

    fn hold(&self, i: usize, q_rad: f64) -> MotorCommand {
        let p = &self.joints[i];
        if p.velocity {
            MotorCommand { q_rad: 0.0, qd_radps: 0.0, kp: 0.0, kd: p.kd, tau_ff_nm: 0.0 }
        } else {
            MotorCommand { q_rad, qd_radps: 0.0, kp: p.kp, kd: p.kd, tau_ff_nm: 0.0 }
        }
    }

    /// Starts standing up from the measured pose.
    pub(crate) fn begin_standup(&mut self, now_ns: u64, s: &RobotState) {
        for i in 0..self.n {
            self.from[i] = s.joints[i].q_rad;
        }
        self.rest = self.from;
        self.start_ns = now_ns;
        if let Some(b) = self.balance.as_mut() {
            b.reset();
        }
    }

    /// Starts sitting down from the pose last commanded (`current`).
    pub(crate) fn begin_sitdown(&mut self, now_ns: u64, current: &MotorCommands) {
        for i in 0..self.n {
            self.from[i] = current.joints[i].q_rad;
        }
        self.start_ns = now_ns;
    }

    fn interpolate(&self, now_ns: u64, duration_ns: u64, to: impl Fn(usize) -> f64, out: &mut MotorCommands) -> bool {
        let x = (now_ns.saturating_sub(self.start_ns)) as f64 / duration_ns.max(1) as f64;
        let a = smoothstep(x);
        for i in 0..self.n {
            let q = if x >= 1.0 { to(i) } else { self.from[i] + a * (to(i) - self.from[i]) };
            out.joints[i] = self.hold(i, q);
        }
        x >= 1.0
    }

    /// StandUp targets; true once the default pose is reached (then held, and leveled, as
    /// `stand` holds it).
    pub(crate) fn standup(&mut self, now_ns: u64, s: &RobotState, out: &mut MotorCommands) -> bool {
        let done = self.interpolate(now_ns, self.standup_ns, |i| self.joints[i].default_rad, out);
        if done {
            self.stand(s, out);
        } else {
            self.balance(s, &[0.0; 3], out);
        }
        done
    }

    /// SitDown targets; true once the resting pose is reached.
    pub(crate) fn sitdown(&mut self, now_ns: u64, s: &RobotState, out: &mut MotorCommands) -> bool {
        let done = self.interpolate(now_ns, self.sitdown_ns, |i| self.rest[i], out);
        self.balance(s, &[0.0; 3], out);
        done
    }

    /// The balance controller takes over the wheels from a policy mid-motion (see `stand`).
    pub(crate) fn take_over(&mut self, s: &RobotState) {
        if let Some(b) = self.balance.as_mut() {
            b.take_over(s);
        }
    }

    /// Holding the default pose (balancing in place): the stand fallback.
    pub fn stand(&mut self, s: &RobotState, out: &mut MotorCommands) {
        self.walk(s, &[0.0; 3], out);
    }

    /// The default pose, balancing while following `command` ([vx, vy, yaw rate]) when the robot
    /// balances on wheels; otherwise the same as `stand`.
    pub fn walk(&mut self, s: &RobotState, command: &[f64; 3], out: &mut MotorCommands) {
        let level = self.balance.as_mut().map_or(0.0, |b| b.level(s, command));
        for i in 0..self.n {
            let p = &self.joints[i];
            out.joints[i] = self.hold(i, p.default_rad + if p.levels { level } else { 0.0 });
        }
        self.balance(s, command, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standup_interpolates_smoothly_to_the_default_pose() {
        let c =
            Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap();
        let mut m = Motion::new(&c);
        let mut s = RobotState::default();
        s.joints[0].q_rad = -0.3;
        m.begin_standup(0, &s);
        let mut out = MotorCommands::default();
        assert!(!m.standup(0, &s, &mut out));
        assert_eq!(out.joints[0].q_rad, -0.3);
        assert!(!m.standup(1_000_000_000, &s, &mut out));
        assert!((out.joints[0].q_rad - 0.15).abs() < 1e-12); // halfway between -0.3 and 0.6
        assert!(m.standup(2_000_000_000, &s, &mut out));
        assert_eq!(out.joints[0].q_rad, 0.6);
        assert_eq!((out.joints[2].kp, out.joints[2].kd), (0.0, 0.5)); // wheel: damping only
        m.begin_sitdown(3_000_000_000, &out);
        assert!(m.sitdown(5_000_000_000, &s, &mut out));
        assert_eq!(out.joints[0].q_rad, -0.3);
    }
}
