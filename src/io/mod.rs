//! The hardware boundary: what the control loop reads from the robot and writes to it.
//!
//! `Hardware` is the ros2_control split: `read` fills a sensor frame, `write` sends motor
//! commands, and neither knows what a policy or a mode is. Implementations: the in-memory robot
//! (`mem`), and real transports and devices as they are added. Values here are joint-side and
//! body-frame; device-specific conversions (direction, offset, gear, mounting) happen inside the
//! implementation. Not for: deciding anything.

pub mod bridge;
pub mod bus;
pub mod can;
pub mod imu;
pub mod mem;
pub mod membus;
pub mod mit;
pub mod motor_emulator;
pub mod motors;
pub mod robot;
pub mod sensors;
pub mod serial;
pub mod slcan;
pub mod slcan_bus;
pub mod socketcan;
pub mod witmotion;

use crate::config::MAX_JOINTS;
use std::fmt;

/// One joint as last reported by its motor.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JointSample {
    pub q_rad: f64,
    pub qd_radps: f64,
    pub tau_nm: f64,
    pub temp_c: f32,
    /// Motor-reported error code; 0 = none.
    pub error: u8,
    /// Arrival time of the reply these values came from; 0 = never replied.
    pub t_ns: u64,
}

/// The IMU as last reported, in the body frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImuSample {
    /// Body orientation in the world frame, unit quaternion [w, x, y, z].
    pub quat_wxyz: [f64; 4],
    pub gyro_body_radps: [f64; 3],
    pub accel_body_mps2: [f64; 3],
    /// Arrival time; 0 = never.
    pub t_ns: u64,
}

impl Default for ImuSample {
    fn default() -> Self {
        Self { quat_wxyz: [1.0, 0.0, 0.0, 0.0], gyro_body_radps: [0.0; 3], accel_body_mps2: [0.0; 3], t_ns: 0 }
    }
}

/// Everything `read` reports, fixed-size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SensorFrame {
    pub joints: [JointSample; MAX_JOINTS],
    pub imu: ImuSample,
}

impl Default for SensorFrame {
    fn default() -> Self {
        Self { joints: [JointSample::default(); MAX_JOINTS], imu: ImuSample::default() }
    }
}

/// A joint-side MIT-style command: the motor applies
/// `tau = kp (q_rad - q) + kd (qd_radps - qd) + tau_ff_nm`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MotorCommand {
    pub q_rad: f64,
    pub qd_radps: f64,
    pub kp: f64,
    pub kd: f64,
    pub tau_ff_nm: f64,
}

impl MotorCommand {
    /// Pure damping: no position term, no feed-forward.
    pub fn damping(kd: f64) -> Self {
        Self { q_rad: 0.0, qd_radps: 0.0, kp: 0.0, kd, tau_ff_nm: 0.0 }
    }

    pub fn is_finite(&self) -> bool {
        self.q_rad.is_finite()
            && self.qd_radps.is_finite()
            && self.kp.is_finite()
            && self.kd.is_finite()
            && self.tau_ff_nm.is_finite()
    }
}

/// What `write` sends, fixed-size; only the first `n` joints are meaningful.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotorCommands {
    pub joints: [MotorCommand; MAX_JOINTS],
}

impl Default for MotorCommands {
    fn default() -> Self {
        Self { joints: [MotorCommand::default(); MAX_JOINTS] }
    }
}

/// A hardware failure the control loop must react to. `Copy`: it travels in real-time records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwFault {
    /// The transmit queue is full; the command was dropped.
    TxQueueFull { bus: u8 },
    /// The CAN controller went bus-off.
    BusOff { bus: u8 },
    /// The device disappeared (USB unplugged, interface down).
    Disconnected { bus: u8 },
}

impl fmt::Display for HwFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwFault::TxQueueFull { bus } => write!(f, "bus {bus}: transmit queue full"),
            HwFault::BusOff { bus } => write!(f, "bus {bus}: bus-off"),
            HwFault::Disconnected { bus } => write!(f, "bus {bus}: device disconnected"),
        }
    }
}

/// The robot as the control loop sees it.
pub trait Hardware: Send {
    /// Brings the hardware up (open devices, enable motors). Called once, off the real-time path.
    fn start(&mut self) -> Result<(), String>;

    /// Fills `out` with the newest values. Never blocks: stale data shows in the timestamps.
    fn read(&mut self, now_ns: u64, out: &mut SensorFrame);

    /// Sends one command per joint. Never blocks.
    fn write(&mut self, now_ns: u64, commands: &MotorCommands) -> Result<(), HwFault>;

    /// Disables the motors. Called once, after the last `write`.
    fn stop(&mut self);
}

/// Receive threads (CAN buses, IMU, firmware bridge) run one SCHED_FIFO step below the control
/// thread (when it has one): they stamp arrivals, and ordinary load must not make fresh data stale.
pub(crate) fn receive_rt(config: &crate::config::Config) -> crate::rt::thread::RtSpec {
    crate::rt::thread::RtSpec { fifo_priority: (config.rate.priority > 1).then(|| config.rate.priority - 1), cpu: None }
}

/// The robot as `open` hands it over: the hardware for the control loop, and what the sensors
/// perceive of the terrain for the policy thread (when depth sensors are configured).
pub struct Robot {
    pub hardware: Box<dyn Hardware>,
    pub perception: Option<crate::rt::triple::Reader<crate::estimate::terrain::Perception>>,
}

/// Opens the hardware the configuration describes: the in-memory robot, or the motors on their
/// buses with the IMU (and depth) read by the sensor threads.
pub fn open(config: &crate::config::Config) -> Result<Robot, String> {
    use crate::config::BusKind;
    if config.buses.iter().all(|b| b.kind == BusKind::Mem) {
        let (robot, _faults) = mem::MemRobot::new(config);
        return Ok(Robot { hardware: Box::new(robot), perception: None });
    }
    let mut sensors = sensors::Sensors::start(config)?;
    // The robot reads the IMU; the sensor threads live as long as the robot does.
    let (_unused, placeholder) = crate::rt::triple::triple(ImuSample::default());
    let imu = std::mem::replace(&mut sensors.imu, placeholder);
    let perception = sensors.perception.take();
    let robot = robot::CanRobot::open(config, imu, Some(Box::new(sensors)))?;
    Ok(Robot { hardware: Box::new(robot), perception })
}
