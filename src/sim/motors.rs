//! The robot's motors in the simulator: each is the MIT-mode firmware of `io::doubles::motor_emulator`
//! (enable, disable, set-zero, the stored command, replies quantised by the wire format) driving a
//! MuJoCo joint. Its PD law `tau = kp (q_des - q) + kd (qd_des - qd) + tau_ff` runs at every physics
//! step on the motor-side angle, saturates at the motor's torque, and is scaled by the motor
//! strength; the configured direction, offset and gear ratio are the motor's mounting.
//!
//! Not for: the bus transport (the runners move frames) or the joint physics (`world`).

use super::noise::NoiseRng;
use crate::config::sim::SimMotors as Settings;
use crate::config::Config;
use crate::io::device::motors::Motor;
use crate::io::doubles::motor_emulator::MitFirmware;
use crate::io::protocol::mit::{JointState, MitCommand, MotorRequest, Special};
use crate::io::transport::can::CanFrame;
use std::collections::VecDeque;

struct SimMotor {
    fw: MitFirmware,
    /// Commands received but not yet applied (motor latency): (apply at, command).
    pending: VecDeque<(u64, MitCommand)>,
    /// Motor angle that reads zero (set-zero moves it).
    zero_rad: f32,
    /// Motor-side state at the last physics step.
    q_rad: f32,
    qd_radps: f32,
    tau_nm: f32,
    silent: bool,
}

pub struct SimMotors {
    motors: Vec<SimMotor>,
    latency_ns: u64,
    strength: f64,
    encoder_noise_rad: f64,
    reply_dropout: f64,
    rng: NoiseRng,
    /// Whether any leg joint has been commanded with a position gain (releases the gantry).
    commanded: bool,
    pub replies: u64,
    pub(crate) dropped_replies: u64,
}

impl SimMotors {
    pub fn new(config: &Config, s: &Settings, strength: f64, extra_latency_ms: f64, seed: u64) -> Result<Self, String> {
        let motors = Motor::all(config)?
            .into_iter()
            .map(|spec| SimMotor {
                fw: MitFirmware::new(spec),
                pending: VecDeque::new(),
                zero_rad: 0.0,
                q_rad: 0.0,
                qd_radps: 0.0,
                tau_nm: 0.0,
                silent: false,
            })
            .collect();
        Ok(Self {
            motors,
            latency_ns: ((s.latency_ms + extra_latency_ms).max(0.0) * 1e6) as u64,
            strength,
            encoder_noise_rad: s.encoder_noise_rad,
            reply_dropout: s.reply_dropout,
            rng: NoiseRng::new(seed ^ 0x6d6f_746f_7273),
            commanded: false,
            replies: 0,
            dropped_replies: 0,
        })
    }

    /// Whether a position joint has been commanded with a position gain.
    pub fn commanded(&self) -> bool {
        self.commanded
    }

    /// Silences (or revives) the motor of joint `joint`: it still obeys, but no longer answers.
    pub(crate) fn set_silent(&mut self, joint: usize, silent: bool) {
        if let Some(m) = self.motors.get_mut(joint) {
            m.silent = silent;
        }
    }

    /// A frame from the bus at `now_ns`; returns the addressed motor's reply, if it answers.
    pub fn receive(&mut self, frame: &CanFrame, now_ns: u64) -> Option<CanFrame> {
        let m = self.motors.iter_mut().find(|m| m.fw.addressed(frame))?;
        let mut probe = m.fw;
        match probe.receive(frame)? {
            MotorRequest::Command(c) => {
                if c.kp > 0.0 && m.fw.enabled {
                    self.commanded = true;
                }
                if self.latency_ns == 0 {
                    m.fw.cmd = c;
                } else {
                    m.pending.push_back((now_ns + self.latency_ns, c));
                }
            }
            MotorRequest::Special(Special::SetZero) => m.zero_rad += m.q_rad,
            MotorRequest::Special(_) => m.fw.enabled = probe.enabled,
        }
        if m.silent {
            return None;
        }
        if self.rng.chance(self.reply_dropout) {
            self.dropped_replies += 1;
            return None;
        }
        let noise = self.rng.normal(self.encoder_noise_rad) as f32;
        let q = wrap(m.q_rad - m.zero_rad + noise, m.fw.spec.ranges.p_max_rad);
        self.replies += 1;
        m.fw.reply(q, m.qd_radps, m.tau_nm, None)
    }

    /// Joint-side torques for the joint states `joint(i) = (q, qd)` at `now_ns`, one per joint.
    pub fn torques(&mut self, now_ns: u64, joint: impl Fn(usize) -> (f64, f64), out: &mut [f64]) {
        for (m, out) in self.motors.iter_mut().zip(out.iter_mut()) {
            while m.pending.front().is_some_and(|(t, _)| *t <= now_ns) {
                if let Some((_, c)) = m.pending.pop_front() {
                    m.fw.cmd = c;
                }
            }
            let (q, qd) = joint(m.fw.spec.joint);
            let map = &m.fw.spec.map;
            let motor = map.state_to_motor(&JointState { q_rad: q as f32, qd_radps: qd as f32, tau_nm: 0.0 });
            m.q_rad = motor.q_rad;
            m.qd_radps = motor.qd_radps;
            m.tau_nm = m.fw.torque_nm(motor.q_rad - m.zero_rad, motor.qd_radps) * self.strength as f32;
            let joint_side = map.state_to_joint(&JointState { q_rad: 0.0, qd_radps: 0.0, tau_nm: m.tau_nm });
            *out = f64::from(joint_side.tau_nm);
        }
    }
}

/// A continuous motor angle as the firmware reports it: wrapped into its ±p_max range.
fn wrap(q_rad: f32, p_max_rad: f32) -> f32 {
    let span = 2.0 * p_max_rad;
    (q_rad + p_max_rad).rem_euclid(span) - p_max_rad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MotorCommand;

    fn setup() -> (Config, SimMotors, Vec<Motor>) {
        let c = Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml"))).unwrap();
        let m = SimMotors::new(&c, &Settings::default(), 1.0, 0.0, 1).unwrap();
        let specs = Motor::all(&c).unwrap();
        (c, m, specs)
    }

    #[test]
    fn a_mirrored_motor_pushes_its_joint_the_commanded_way() {
        let (_, mut sim, specs) = setup();
        // right_hip (joint 3) is mounted with direction -1.
        let spec = specs[3];
        assert!(sim.receive(&spec.special_frame(Special::Enable).unwrap(), 0).is_some());
        let cmd = MotorCommand { q_rad: 0.5, qd_radps: 0.0, kp: 10.0, kd: 0.0, tau_ff_nm: 0.0 };
        let reply = sim.receive(&spec.command_frame(&cmd).unwrap(), 0).unwrap();
        let mut tau = [0.0; 6];
        sim.torques(0, |_| (0.0, 0.0), &mut tau);
        assert!((tau[3] - 5.0).abs() < 0.05, "joint-side torque toward +0.5 rad: {}", tau[3]);
        assert!(sim.commanded());
        // The reply decodes, through the daemon's own path, to the joint's angle.
        assert!(spec.decode(&reply, 1).is_some());
        sim.torques(0, |j| if j == 3 { (0.3, 0.0) } else { (0.0, 0.0) }, &mut tau);
        let back = spec.decode(&sim.receive(&spec.command_frame(&cmd).unwrap(), 0).unwrap(), 1).unwrap();
        assert!((back.q_rad - 0.3).abs() < 1e-3, "{}", back.q_rad);
    }

    #[test]
    fn torque_saturates_and_a_disabled_or_silent_motor_behaves_so() {
        let (_, mut sim, specs) = setup();
        let spec = specs[0];
        let cmd = MotorCommand { q_rad: 1.0, qd_radps: 0.0, kp: 200.0, kd: 0.0, tau_ff_nm: 0.0 };
        sim.receive(&spec.command_frame(&cmd).unwrap(), 0);
        let mut tau = [0.0; 6];
        sim.torques(0, |_| (0.0, 0.0), &mut tau);
        assert_eq!(tau[0], 0.0, "disabled: no torque");
        sim.receive(&spec.special_frame(Special::Enable).unwrap(), 0);
        sim.torques(0, |_| (0.0, 0.0), &mut tau);
        assert!((tau[0] - spec.ranges.t_max_nm as f64).abs() < 1e-3, "saturated: {}", tau[0]);
        sim.set_silent(0, true);
        assert!(sim.receive(&spec.command_frame(&cmd).unwrap(), 0).is_none());
    }

    #[test]
    fn latency_delays_a_command() {
        let (c, _, specs) = setup();
        let settings = Settings { latency_ms: 2.0, ..Settings::default() };
        let mut sim = SimMotors::new(&c, &settings, 1.0, 0.0, 1).unwrap();
        let spec = specs[0];
        sim.receive(&spec.special_frame(Special::Enable).unwrap(), 0);
        let cmd = MotorCommand { q_rad: 0.0, qd_radps: 0.0, kp: 0.0, kd: 0.0, tau_ff_nm: 3.0 };
        sim.receive(&spec.command_frame(&cmd).unwrap(), 1_000_000);
        let mut tau = [0.0; 6];
        sim.torques(2_000_000, |_| (0.0, 0.0), &mut tau);
        assert_eq!(tau[0], 0.0);
        sim.torques(3_000_000, |_| (0.0, 0.0), &mut tau);
        assert!((tau[0] - 3.0).abs() < 0.05);
    }

    #[test]
    fn a_wheel_angle_wraps_like_the_firmware() {
        assert!((wrap(13.0, 12.5) - (13.0 - 25.0)).abs() < 1e-5);
        assert_eq!(wrap(1.0, 12.5), 1.0);
    }
}
