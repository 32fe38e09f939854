//! The ground floor: the fixed-size types every layer exchanges (sensor frames, joint and IMU
//! samples, motor commands, hardware faults, what the sensors perceive of the terrain) and the
//! `Hardware` trait that reads and writes them, in the role of ros2_control's
//! `hardware_interface` and copper-rs's payload crate. Also the motor table and bus constants the
//! configuration needs (`motor`, `bus`), so that `config` and `io` both stand on it; and a
//! model's provenance (`provenance`), which `policy` produces and `log` records.
//!
//! Everything here is plain data and imports nothing else from the crate. Not for: behaviour
//! (codecs live in `io`, estimation in `estimate`, judging in `control`).

pub mod bus;
pub mod motor;
pub mod provenance;
pub mod terrain;

use std::fmt;

/// The most joints a robot may have. Fixed so that the real-time path's records are fixed-size.
pub(crate) const MAX_JOINTS: usize = 32;

/// One joint as last reported by its motor.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JointSample {
    pub q_rad: f64,
    pub qd_radps: f64,
    pub(crate) tau_nm: f64,
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
    /// Time of each depth sensor's newest frame (`[[depth.sensor]]` order); 0 = never. The frames
    /// themselves go to the policy side (`terrain::Perception`); the loop only judges their age.
    pub(crate) depth_t_ns: [u64; terrain::MAX_DEPTH_SENSORS],
}

impl Default for SensorFrame {
    fn default() -> Self {
        Self {
            joints: [JointSample::default(); MAX_JOINTS],
            imu: ImuSample::default(),
            depth_t_ns: [0; terrain::MAX_DEPTH_SENSORS],
        }
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

/// One IMU reading as a driver delivers it: in the IMU's own axes, before mounting and filtering
/// (`estimate::imu` turns it into an `ImuSample`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawImu {
    pub accel_imu_mps2: [f64; 3],
    pub(crate) gyro_imu_radps: [f64; 3],
    /// The device's own orientation estimate, when it sends one.
    pub(crate) device_quat_wxyz: Option<[f64; 4]>,
    /// Time since the previous reading by the device's clock (or arrival), 0 for the first.
    pub(crate) dt_s: f64,
    /// When the reading was taken (CLOCK_MONOTONIC).
    pub t_ns: u64,
}

/// Where a sensor driver delivers its raw readings. The robot assembly implements it by composing
/// the estimators that turn readings into state; a driver knows only this. Called on the driver's
/// receive thread: implementations never block and allocate nothing.
pub trait SensorSink: Send {
    /// One IMU reading.
    fn imu(&mut self, raw: &RawImu) -> Delivery;

    /// One depth reading of the device's sensor `device_sensor`.
    fn depth(&mut self, device_sensor: u8, zones: &terrain::DepthZones) -> Delivery;

    /// The device restarted: forget what was derived from its earlier IMU readings.
    fn restart(&mut self);
}

/// What a `SensorSink` did with a reading (the driver counts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Used,
    /// This robot takes no such reading from this device (its IMU is elsewhere, it has no depth).
    NotWanted,
    /// No configured sensor has the device's sensor index; the reading is dropped.
    UnknownSensor,
}
