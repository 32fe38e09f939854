//! The in-memory robot: the configured joints on a test stand (fixed base), each a motor with
//! its own MIT-mode PD law, torque saturation, rotor inertia and friction, and an IMU that reports
//! the stand's attitude. Faults are injected through a `MemFaults` handle.
//!
//! For tests, benchmarks and development without hardware. Not a physics simulation of the
//! robot: the MuJoCo simulator is that.

use crate::config::{Joint, JointMode};
use crate::rt::clock::NS_PER_S;
use crate::types::MAX_JOINTS;
use crate::types::{HwFault, ImuSample, MotorCommands, SensorFrame};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

const GRAVITY_MPS2: f64 = 9.80665;
/// Reflected inertia and viscous friction of each joint (a leg segment on a stand).
const INERTIA_KGM2: f64 = 0.02;
const FRICTION_NMS: f64 = 0.05;
const MAX_SUBSTEP_NS: u64 = 250_000;

/// Faults the in-memory robot can be told to show. All fields are atomics: set from any thread.
#[derive(Debug, Default)]
pub struct MemFaults {
    /// The IMU stops updating its timestamp.
    pub imu_frozen: AtomicBool,
    /// Index of a joint whose motor stops replying; -1 for none.
    pub silent_joint: AtomicI32,
    /// Index of a joint whose motor reports an error code (`error_code`); -1 for none.
    pub error_joint: AtomicI32,
    pub error_code: AtomicI32,
    /// Roll of the stand, radians (f64 bits).
    pub(crate) roll_rad_bits: AtomicU64,
    /// The IMU reports NaN.
    pub(crate) imu_nan: AtomicBool,
    /// `write` fails with a full transmit queue.
    pub(crate) tx_full: AtomicBool,
}

impl MemFaults {
    fn new() -> Self {
        let f = Self::default();
        f.silent_joint.store(-1, Ordering::Relaxed);
        f.error_joint.store(-1, Ordering::Relaxed);
        f
    }

    pub(crate) fn set_roll_rad(&self, roll: f64) {
        self.roll_rad_bits.store(roll.to_bits(), Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.imu_frozen.store(false, Ordering::Relaxed);
        self.silent_joint.store(-1, Ordering::Relaxed);
        self.error_joint.store(-1, Ordering::Relaxed);
        self.set_roll_rad(0.0);
        self.imu_nan.store(false, Ordering::Relaxed);
        self.tx_full.store(false, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Default)]
struct JointModel {
    q: f64,
    qd: f64,
    tau: f64,
    tau_max: f64,
    continuous: bool,
    lo: f64,
    hi: f64,
}

pub struct MemRobot {
    joints: [JointModel; MAX_JOINTS],
    n: usize,
    command: MotorCommands,
    enabled: bool,
    last_ns: Option<u64>,
    imu_t_ns: u64,
    faults: Arc<MemFaults>,
}

impl MemRobot {
    /// The configured robot, resting with each leg joint near its lower limit (folded).
    pub fn new(joints_config: &[Joint]) -> (Self, Arc<MemFaults>) {
        let mut joints = [JointModel::default(); MAX_JOINTS];
        for (m, j) in joints.iter_mut().zip(joints_config) {
            let continuous = j.mode == JointMode::Velocity;
            let (lo, hi) = (j.pos_min_rad.unwrap_or(f64::MIN), j.pos_max_rad.unwrap_or(f64::MAX));
            m.q = if continuous { 0.0 } else { lo + 0.1 * (hi - lo) };
            m.tau_max = j.torque_max_nm;
            m.continuous = continuous;
            m.lo = lo;
            m.hi = hi;
        }
        let faults = Arc::new(MemFaults::new());
        let robot = Self {
            joints,
            n: joints_config.len(),
            command: MotorCommands::default(),
            enabled: false,
            last_ns: None,
            imu_t_ns: 0,
            faults: faults.clone(),
        };
        (robot, faults)
    }

    fn step(&mut self, dt: f64) {
        for (m, c) in self.joints[..self.n].iter_mut().zip(&self.command.joints) {
            let tau =
                if self.enabled { c.kp * (c.q_rad - m.q) + c.kd * (c.qd_radps - m.qd) + c.tau_ff_nm } else { 0.0 };
            m.tau = tau.clamp(-m.tau_max, m.tau_max);
            m.qd += (m.tau - FRICTION_NMS * m.qd) / INERTIA_KGM2 * dt;
            m.q += m.qd * dt;
            if !m.continuous && (m.q < m.lo || m.q > m.hi) {
                // Mechanical end stop.
                m.q = m.q.clamp(m.lo, m.hi);
                m.qd = 0.0;
            }
        }
    }
}

impl crate::types::Hardware for MemRobot {
    fn start(&mut self) -> Result<(), String> {
        self.enabled = true;
        Ok(())
    }

    fn read(&mut self, now_ns: u64, out: &mut SensorFrame) {
        let last = self.last_ns.unwrap_or(now_ns);
        let mut t = last;
        while t < now_ns {
            let dt = (now_ns - t).min(MAX_SUBSTEP_NS);
            self.step(dt as f64 / NS_PER_S as f64);
            t += dt;
        }
        self.last_ns = Some(now_ns);

        let f = &*self.faults;
        let silent = f.silent_joint.load(Ordering::Relaxed);
        let error_joint = f.error_joint.load(Ordering::Relaxed);
        for (i, (s, m)) in out.joints.iter_mut().zip(&self.joints[..self.n]).enumerate() {
            if i as i32 == silent {
                continue; // no reply: the sample keeps its old timestamp
            }
            s.q_rad = m.q;
            s.qd_radps = m.qd;
            s.tau_nm = m.tau;
            s.temp_c = 35.0;
            s.error = if i as i32 == error_joint { f.error_code.load(Ordering::Relaxed) as u8 } else { 0 };
            s.t_ns = now_ns;
        }

        if !f.imu_frozen.load(Ordering::Relaxed) {
            self.imu_t_ns = now_ns;
        }
        let roll = f64::from_bits(f.roll_rad_bits.load(Ordering::Relaxed));
        let (s, c) = (roll / 2.0).sin_cos();
        let mut imu = ImuSample {
            quat_wxyz: [c, s, 0.0, 0.0],
            gyro_body_radps: [0.0; 3],
            accel_body_mps2: [0.0, GRAVITY_MPS2 * roll.sin(), GRAVITY_MPS2 * roll.cos()],
            t_ns: self.imu_t_ns,
        };
        if f.imu_nan.load(Ordering::Relaxed) {
            imu.gyro_body_radps[0] = f64::NAN;
        }
        out.imu = imu;
    }

    fn write(&mut self, _now_ns: u64, commands: &MotorCommands) -> Result<(), HwFault> {
        if self.faults.tx_full.load(Ordering::Relaxed) {
            return Err(HwFault::TxQueueFull { bus: 0 });
        }
        self.command = *commands;
        Ok(())
    }

    fn stop(&mut self) {
        self.enabled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::types::{Hardware, MotorCommand};

    fn config() -> Config {
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap()
    }

    #[test]
    fn a_pd_command_drives_a_joint_to_its_target() {
        let (mut robot, _) = MemRobot::new(&config().joints);
        robot.start().unwrap();
        let mut cmds = MotorCommands::default();
        cmds.joints[0] = MotorCommand { q_rad: 0.6, qd_radps: 0.0, kp: 40.0, kd: 1.0, tau_ff_nm: 0.0 };
        let mut frame = SensorFrame::default();
        let mut t = 0;
        for _ in 0..1000 {
            t += 2_000_000;
            robot.read(t, &mut frame);
            robot.write(t, &cmds).unwrap();
        }
        assert!((frame.joints[0].q_rad - 0.6).abs() < 1e-3, "{}", frame.joints[0].q_rad);
        assert_eq!(frame.joints[0].t_ns, t);
    }

    #[test]
    fn injected_faults_show_in_the_frame() {
        let (mut robot, faults) = MemRobot::new(&config().joints);
        let mut frame = SensorFrame::default();
        robot.read(1_000, &mut frame);
        faults.silent_joint.store(2, Ordering::Relaxed);
        faults.imu_frozen.store(true, Ordering::Relaxed);
        faults.set_roll_rad(1.0);
        robot.read(5_000, &mut frame);
        assert_eq!(frame.joints[2].t_ns, 1_000);
        assert_eq!(frame.joints[1].t_ns, 5_000);
        assert_eq!(frame.imu.t_ns, 1_000);
        assert!((frame.imu.quat_wxyz[1] - 0.5f64.sin()).abs() < 1e-12);
        faults.tx_full.store(true, Ordering::Relaxed);
        assert_eq!(robot.write(5_000, &MotorCommands::default()), Err(HwFault::TxQueueFull { bus: 0 }));
    }
}
