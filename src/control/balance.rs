//! The built-in balance controller for a robot on two wheels (a wheeled inverted pendulum): wheel
//! torques from body pitch, pitch rate and forward speed, following a velocity command
//! `[vx m/s, vy (ignored), yaw rate rad/s]`. It runs inside the control loop at the control rate,
//! because a pendulum falls in a few hundred milliseconds, far quicker than a policy's period.
//!
//! Law (`config::Balance`): `u = k_pitch (pitch - offset) + k_pitch_rate pitch_rate + k_vel (v -
//! vx) + k_pos ∫(v - vx)`, the integral bounded; each wheel gets `u / 2 ∓ d / 2` with `d = k_yaw_rate
//! (yaw_rate_cmd - yaw_rate) + k_yaw ∫(...)`. Pitch is positive nose-down, a wheel's positive joint
//! direction rolls forward, so every gain is non-negative. Leveling (`level`): while the
//! followed speed has settled on the command (standing still or cruising), `level_rad += k_level
//! (pitch - level_pitch) dt`, bounded, added to the `level_joints`' held positions, with the
//! speed integral moved by `k_pitch / k_pos` of each step.
//!
//! Not for: the legs (Motion holds them; only the leveling shift comes from here), limits (the Limiter clamps the torques afterwards), or
//! anything about buses: it reads `RobotState` and writes `MotorCommand`s.

use crate::config::{Balance, BusKind, Config, JointMode};
use crate::estimate::RobotState;
use crate::types::MotorCommand;

#[derive(Clone, Debug)]
pub(crate) struct BalanceController {
    gains: Balance,
    left: usize,
    right: usize,
    dt_s: f64,
    /// The forward speed it follows: the command, acceleration-limited (`[command] max_accel`), so
    /// a switch between controllers (the stand fallback and back) never steps it.
    vx_ref_mps: f64,
    max_accel_mps2: f64,
    pos_error_m: f64,
    yaw_error_rad: f64,
    /// The leveling shift of the `level_joints`' held positions.
    level_rad: f64,
}

/// Within this of the command (m/s), the speed the balance law follows has settled: the robot
/// stands still or cruises, and leveling integrates.
const LEVEL_SETTLED_MPS: f64 = 0.02;

/// Body pitch (positive nose-down) from gravity in the body frame.
pub fn pitch_rad(s: &RobotState) -> f64 {
    let g = s.projected_gravity_body;
    g[0].atan2(-g[2])
}

impl BalanceController {
    /// The controller `config` describes, if the robot balances on wheels.
    pub fn new(config: &Config) -> Option<Self> {
        let b = config.balance.as_ref()?;
        Some(Self {
            left: config.joint_index(&b.left_wheel)?,
            right: config.joint_index(&b.right_wheel)?,
            gains: b.clone(),
            dt_s: config.rate.control_period_ns() as f64 * 1e-9,
            vx_ref_mps: 0.0,
            max_accel_mps2: config.command.max_accel[0],
            pos_error_m: 0.0,
            yaw_error_rad: 0.0,
            level_rad: 0.0,
        })
    }

    pub fn wheels(&self) -> (usize, usize) {
        (self.left, self.right)
    }

    /// Forgets the accumulated errors (at the start of every stand-up).
    pub fn reset(&mut self) {
        self.vx_ref_mps = 0.0;
        self.pos_error_m = 0.0;
        self.yaw_error_rad = 0.0;
        self.level_rad = 0.0;
    }

    /// The leveling shift for this tick (rad, added to each `level_joints` position): the
    /// integral of the base pitch beyond `level_pitch_rad`, bounded; 0 without leveling. It
    /// integrates only once the speed the balance law follows has reached the command (within
    /// `LEVEL_SETTLED_MPS`: standing still or cruising): a pendulum leans to accelerate, and
    /// leveling that lean away fights the balance law. While the speed ramps, the shift holds.
    pub(crate) fn level(&mut self, s: &RobotState, command: &[f64; 3]) -> f64 {
        let g = &self.gains;
        if (command[0] - self.vx_ref_mps).abs() < LEVEL_SETTLED_MPS {
            let error = pitch_rad(s) - g.level_pitch_rad;
            let before = self.level_rad;
            self.level_rad = (self.level_rad + g.k_level * error * self.dt_s).clamp(-g.level_max_rad, g.level_max_rad);
            // The shift tilts the base's equilibrium about as much the other way. The speed
            // integral holds the pitch term's share of it; moved with it, the robot levels where
            // it stands instead of rolling to where the integral would put it (0.4 m in
            // config/sim.toml's field drive).
            if g.k_pos > 0.0 {
                self.pos_error_m = (self.pos_error_m + g.k_pitch / g.k_pos * (self.level_rad - before))
                    .clamp(-g.pos_error_max_m, g.pos_error_max_m);
            }
        }
        self.level_rad
    }

    /// Takes over from another controller (a policy) mid-motion: follows from the speed the robot
    /// has now, with no error accumulated under a controller that was not running.
    pub(crate) fn take_over(&mut self, s: &RobotState) {
        self.reset();
        self.vx_ref_mps = self.speed_mps(s);
    }

    /// Forward speed over ground from the wheels' joint rates and the body's pitch rate.
    pub(crate) fn speed_mps(&self, s: &RobotState) -> f64 {
        let wheel = 0.5 * (s.joints[self.left].qd_radps + s.joints[self.right].qd_radps);
        self.gains.wheel_radius_m * (wheel + s.ang_vel_body_radps[1])
    }

    /// Wheel commands (left, right) for `command` = [vx, vy, yaw rate].
    pub(crate) fn update(&mut self, s: &RobotState, command: &[f64; 3]) -> (MotorCommand, MotorCommand) {
        let g = &self.gains;
        let pitch = pitch_rad(s) - g.pitch_offset_rad;
        let pitch_rate = s.ang_vel_body_radps[1];
        let max_step = self.max_accel_mps2 * self.dt_s;
        self.vx_ref_mps += (command[0] - self.vx_ref_mps).clamp(-max_step, max_step);
        let speed_error = self.speed_mps(s) - self.vx_ref_mps;
        self.pos_error_m = (self.pos_error_m + speed_error * self.dt_s).clamp(-g.pos_error_max_m, g.pos_error_max_m);
        let u = g.k_pitch * pitch + g.k_pitch_rate * pitch_rate + g.k_vel * speed_error + g.k_pos * self.pos_error_m;
        let yaw_rate_error = command[2] - s.ang_vel_body_radps[2];
        self.yaw_error_rad = (self.yaw_error_rad + yaw_rate_error * self.dt_s).clamp(-1.0, 1.0);
        let d = g.k_yaw_rate * yaw_rate_error + g.k_yaw * self.yaw_error_rad;
        let torque = |t: f64| MotorCommand { q_rad: 0.0, qd_radps: 0.0, kp: 0.0, kd: 0.0, tau_ff_nm: t };
        (torque(0.5 * (u - d)), torque(0.5 * (u + d)))
    }
}

/// Why StandUp cannot keep a robot that `config` describes up, if it stands on one or two wheels
/// (joints with `mode = "velocity"`) and has no `[balance]`: StandUp, SitDown and the stand
/// fallback then hold the legs and only damp the wheels, and a wheeled inverted pendulum falls.
/// (Three or more wheels stand by themselves; the in-memory robot stands on a test stand.)
pub fn standup_warning(config: &Config) -> Option<String> {
    if config.balance.is_some() || config.buses.iter().all(|b| b.kind == BusKind::Mem) {
        return None;
    }
    let wheels: Vec<&str> =
        config.joints.iter().filter(|j| j.mode == JointMode::Velocity).map(|j| j.name.as_str()).collect();
    if !(1..=2).contains(&wheels.len()) {
        return None;
    }
    Some(format!(
        "{}: the robot stands on {} wheel{} ({}) but has no [balance]: StandUp, SitDown and the stand \
         fallback only damp the wheels, and a robot that balances on them falls; add a [balance] table \
         (config/biwheel-hardware.toml has one)",
        config.source.display(),
        wheels.len(),
        if wheels.len() == 1 { "" } else { "s" },
        wheels.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardware() -> Config {
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel-hardware.toml")))
            .unwrap()
    }

    #[test]
    fn a_two_wheeled_robot_without_balance_is_warned_about() {
        let mut c = hardware();
        assert_eq!(standup_warning(&c), None, "config/biwheel-hardware.toml balances");
        c.balance = None;
        let w = standup_warning(&c).expect("a warning");
        assert!(w.contains("biwheel-hardware.toml") && w.contains("left_wheel, right_wheel"), "{w}");
        assert!(w.contains("[balance]"), "{w}");
    }

    #[test]
    fn robots_that_stand_by_themselves_are_not_warned_about() {
        let mut c = hardware();
        c.balance = None;
        // Six wheels: statically stable.
        for j in c.joints.iter_mut() {
            j.mode = JointMode::Velocity;
        }
        assert_eq!(standup_warning(&c), None);
        // The in-memory test stand.
        let stand =
            Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap();
        assert_eq!(standup_warning(&stand), None);
    }

    fn controller() -> BalanceController {
        let c = Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml"))).unwrap();
        BalanceController::new(&c).expect("config/sim.toml balances")
    }

    fn pitched(pitch_rad: f64) -> RobotState {
        RobotState { projected_gravity_body: [pitch_rad.sin(), 0.0, -pitch_rad.cos()], ..Default::default() }
    }

    #[test]
    fn leaning_forward_drives_both_wheels_forward() {
        let mut b = controller();
        let offset = b.gains.pitch_offset_rad;
        let (l, r) = b.update(&pitched(offset + 0.1), &[0.0; 3]);
        assert!(l.tau_ff_nm > 0.0 && (l.tau_ff_nm - r.tau_ff_nm).abs() < 1e-12, "{l:?} {r:?}");
        let (l, _) = b.update(&pitched(offset - 0.1), &[0.0; 3]);
        assert!(l.tau_ff_nm < 0.0);
        assert_eq!((l.kp, l.kd), (0.0, 0.0), "pure torque: no PD on a wheel that must roll");
    }

    #[test]
    fn a_forward_command_first_drives_backwards_to_lean_forward() {
        // Non-minimum phase: to accelerate forward, the wheels first move back under the body.
        let mut b = controller();
        let (l, _) = b.update(&pitched(b.gains.pitch_offset_rad), &[0.5, 0.0, 0.0]);
        assert!(l.tau_ff_nm < 0.0);
    }

    #[test]
    fn a_step_in_the_command_is_followed_at_the_acceleration_limit() {
        // The stand fallback sets the command to zero at once, and walking back sets it again:
        // the pendulum must see a ramp, not a step (a 0.3 m/s step tips it over).
        let mut b = controller();
        let s = pitched(b.gains.pitch_offset_rad);
        b.update(&s, &[0.3, 0.0, 0.0]);
        let step = b.max_accel_mps2 * b.dt_s;
        assert!((b.vx_ref_mps - step).abs() < 1e-12, "{}", b.vx_ref_mps);
        for _ in 0..10_000 {
            b.update(&s, &[0.3, 0.0, 0.0]);
        }
        assert!((b.vx_ref_mps - 0.3).abs() < 1e-12);
        b.update(&s, &[0.0; 3]);
        assert!((b.vx_ref_mps - (0.3 - step)).abs() < 1e-12);
    }

    #[test]
    fn a_left_turn_speeds_up_the_right_wheel() {
        let mut b = controller();
        let (l, r) = b.update(&pitched(b.gains.pitch_offset_rad), &[0.0, 0.0, 1.0]);
        assert!(r.tau_ff_nm > l.tau_ff_nm);
        assert!((l.tau_ff_nm + r.tau_ff_nm).abs() < 1e-12);
    }

    #[test]
    fn leveling_shifts_the_hips_against_the_pitch_once_the_speed_has_settled() {
        let mut b = controller();
        assert!(b.gains.k_level > 0.0, "config/sim.toml levels");
        let nose_down = pitched(0.1);
        let first = b.level(&nose_down, &[0.0; 3]);
        assert!((first - b.gains.k_level * 0.1 * b.dt_s).abs() < 1e-12, "{first}");
        // While the speed it follows ramps to a new command, the shift holds.
        assert_eq!(b.level(&nose_down, &[0.5, 0.0, 0.0]), first);
        b.update(&nose_down, &[0.5, 0.0, 0.0]);
        assert_eq!(b.level(&nose_down, &[0.5, 0.0, 0.0]), first, "still ramping up");
        for _ in 0..1_000 {
            b.update(&nose_down, &[0.5, 0.0, 0.0]);
        }
        assert!((b.vx_ref_mps - 0.5).abs() < 1e-12, "{}", b.vx_ref_mps);
        assert_eq!(b.level(&nose_down, &[0.0; 3]), first, "ramping down to zero");
        // Cruising at the command, it levels again.
        let cruising = b.level(&nose_down, &[0.5, 0.0, 0.0]);
        assert!((cruising - 2.0 * first).abs() < 1e-12, "{cruising} {first}");
        // Bounded, and forgotten at the next stand-up.
        b.reset();
        for _ in 0..1_000_000 {
            b.level(&nose_down, &[0.0; 3]);
        }
        assert_eq!(b.level_rad, b.gains.level_max_rad);
        assert!(b.level(&pitched(-0.1), &[0.0; 3]) < b.gains.level_max_rad);
        b.reset();
        assert_eq!(b.level(&pitched(b.gains.level_pitch_rad), &[0.0; 3]), 0.0);
        // The speed integral moves with the shift: the balance law does not roll the robot to
        // level it.
        let shift = b.level(&nose_down, &[0.0; 3]);
        let expected = b.gains.k_pitch / b.gains.k_pos * shift;
        assert!((b.pos_error_m - expected).abs() < 1e-12, "{} {expected}", b.pos_error_m);
    }

    #[test]
    fn the_speed_error_integral_is_bounded_and_reset() {
        let mut b = controller();
        let s = pitched(b.gains.pitch_offset_rad);
        for _ in 0..1_000_000 {
            b.update(&s, &[1.0, 0.0, 0.0]);
        }
        assert_eq!(b.pos_error_m, -b.gains.pos_error_max_m);
        b.reset();
        assert_eq!(b.pos_error_m, 0.0);
    }
}
