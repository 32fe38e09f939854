//! The typed configuration: one TOML file describes the robot and the run.
//!
//! Parsing is strict (unknown keys are errors), defaults are filled in where a sensible value
//! exists, and `validate` checks what serde cannot (cross-references, ordering, rates). Every
//! error names the file, line, column and key. Not for: opening devices or loading models; this
//! module only says what the user asked for.

pub mod calibration;
mod error;
pub mod sim;
mod validate;

pub use error::ConfigError;

use crate::rt::thread::RtSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub robot: Robot,
    #[serde(rename = "loop", default)]
    pub rate: LoopConfig,
    #[serde(rename = "bus")]
    pub buses: Vec<Bus>,
    #[serde(rename = "joint")]
    pub joints: Vec<Joint>,
    pub imu: Imu,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Bridge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<Depth>,
    #[serde(default)]
    pub controller: Controller,
    #[serde(default)]
    pub mppi: Mppi,
    #[serde(default)]
    pub safety: Safety,
    #[serde(default)]
    pub command: CommandLimits,
    #[serde(default)]
    pub log: LogConfig,
    /// The wheel-balancing controller, for robots that balance on their wheels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// The simulator's settings (`locod sim`); the daemon ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<sim::Sim>,
    /// Teleop and telemetry over zenoh; absent = no network interface at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teleop: Option<Teleop>,
    /// The file this configuration was read from (not a TOML key).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Robot {
    pub name: String,
    /// A calibration file (written by `locod motors zero`) whose `[offset_rad]` table overrides
    /// the joints' `offset_rad`; relative to this file's directory. A missing file is no
    /// calibration yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub control_hz: u32,
    pub policy_hz: u32,
    /// CPU the control thread is pinned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<usize>,
    /// SCHED_FIFO priority of the control thread (1..=99); 0 runs it SCHED_OTHER.
    pub priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) policy_cpu: Option<usize>,
    /// SCHED_FIFO priority of the policy thread; below the control thread's.
    pub(crate) policy_priority: i32,
    /// mlockall and prefaulted stacks.
    pub lock_memory: bool,
    /// How often the daemon prints a status line (0 = never).
    pub status_interval_s: f64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            control_hz: 500,
            policy_hz: 50,
            cpu: None,
            priority: 80,
            policy_cpu: None,
            policy_priority: 70,
            lock_memory: true,
            status_interval_s: 5.0,
        }
    }
}

impl LoopConfig {
    pub fn control_period_ns(&self) -> u64 {
        1_000_000_000 / self.control_hz as u64
    }
    pub(crate) fn policy_period_ns(&self) -> u64 {
        1_000_000_000 / self.policy_hz as u64
    }
    /// What the control thread asks of the scheduler.
    pub(crate) fn control_rt(&self) -> RtSpec {
        RtSpec { fifo_priority: (self.priority > 0).then_some(self.priority), cpu: self.cpu }
    }
    /// What the policy thread asks of the scheduler.
    pub(crate) fn policy_rt(&self) -> RtSpec {
        RtSpec { fifo_priority: (self.policy_priority > 0).then_some(self.policy_priority), cpu: self.policy_cpu }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The in-memory robot on a test stand (tests, benchmarks, development without hardware).
    Mem,
    /// A kernel CAN interface (`device = "can0"`), brought up with its bitrate outside locod
    /// (systemd-networkd, `ip link`).
    Socketcan,
    /// A USB-CAN adapter speaking the Lawicel slcan protocol on a serial port
    /// (`device = "/dev/ttyACM0"`); locod sets the bitrate and opens the channel.
    Slcan,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bus {
    pub name: String,
    pub kind: BusKind,
    /// Interface (`can0`) or serial port (`/dev/ttyACM0`), depending on `kind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default = "default_bitrate")]
    pub(crate) bitrate: u32,
    /// After the kernel or adapter reports a full transmit queue, frames are dropped (not queued)
    /// for this long, so a congested bus never stalls the control loop.
    #[serde(default = "default_tx_backoff_ms")]
    pub(crate) tx_backoff_ms: f64,
}

fn default_bitrate() -> u32 {
    1_000_000
}

fn default_tx_backoff_ms() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JointMode {
    /// Position-controlled (legs): `q_des` with gains.
    Position,
    /// Velocity-controlled (wheels): `qd_des` with damping only.
    Velocity,
}

/// The motor family of a joint; ranges per model are in `io::protocol::mit`.
pub use crate::types::motor::MotorModel;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Joint {
    pub name: String,
    pub bus: String,
    pub motor: MotorModel,
    pub(crate) can_id: u32,
    /// Damiao motors reply from a separate master id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) master_id: Option<u32>,
    /// +1 or -1: the sign between joint and motor angles.
    #[serde(default = "one_i8")]
    pub direction: i8,
    /// Joint angle at which the motor reads zero: `q_motor = direction * gear_ratio * (q_joint - offset_rad)`.
    /// `locod motors zero` measures it into the calibration file.
    #[serde(default)]
    pub offset_rad: f64,
    /// Joint turns once per `gear_ratio` motor turns (beyond the motor's own gearbox).
    #[serde(default = "one_f64")]
    pub(crate) gear_ratio: f64,
    #[serde(default = "position_mode")]
    pub mode: JointMode,
    /// Default (standing) position; the pose StandUp interpolates to.
    #[serde(default)]
    pub(crate) default_pos_rad: f64,
    /// Position limits; required for position joints, absent for continuous (wheel) joints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pos_min_rad: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_max_rad: Option<f64>,
    pub(crate) vel_max_radps: f64,
    pub torque_max_nm: f64,
    /// PD gains used by StandUp, SitDown and the stand fallback.
    pub(crate) stand_kp: f64,
    pub(crate) stand_kd: f64,
    /// Damping gain of Passive / EStop / faults.
    pub(crate) damping_kd: f64,
    /// The motor firmware's ranges when they differ from the model's table (see `io::protocol::mit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<MotorRanges>,
}

/// Per-motor protocol ranges (MIT mode): `±p_max_rad`, `±v_max_radps`, `0..kp_max`, `0..kd_max`,
/// `±t_max_nm`. Both ends of the wire must agree.
pub use crate::types::motor::MotorRanges;

fn one_i8() -> i8 {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn position_mode() -> JointMode {
    JointMode::Position
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImuKind {
    /// The in-memory robot's IMU.
    Mem,
    /// A WitMotion WT901 / JY901-family IMU on its own serial port (`port`, `baud`).
    Witmotion,
    /// The IMU on the firmware bridge's microcontroller (`[bridge]`).
    Bridge,
}

/// Where the body's attitude comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrientationSource {
    /// The device's own fused orientation (WitMotion angle/quaternion output).
    Device,
    /// locod's Mahony filter on the gyro and accelerometer.
    Filter,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Imu {
    pub kind: ImuKind,
    /// Serial port of a WitMotion IMU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default = "default_imu_baud")]
    pub(crate) baud: u32,
    /// Rotation from the IMU's frame to the body frame, roll-pitch-yaw in degrees.
    #[serde(default, deserialize_with = "exactly")]
    pub mounting_rpy_deg: [f64; 3],
    #[serde(default = "default_orientation")]
    pub orientation: OrientationSource,
    /// Mahony filter gains (proportional, integral) on the accelerometer's correction.
    #[serde(default = "default_mahony", deserialize_with = "exactly")]
    pub(crate) filter_gains: [f64; 2],
}

fn default_imu_baud() -> u32 {
    115_200
}

fn default_orientation() -> OrientationSource {
    OrientationSource::Filter
}

fn default_mahony() -> [f64; 2] {
    [1.0, 0.01]
}

/// The firmware bridge: the microcontroller that reads the IMU and the depth sensors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    pub port: String,
    #[serde(default = "default_bridge_baud")]
    pub(crate) baud: u32,
    /// How often the host pings for time sync.
    #[serde(default = "default_ping_ms")]
    pub(crate) ping_interval_ms: f64,
}

fn default_bridge_baud() -> u32 {
    921_600
}

fn default_ping_ms() -> f64 {
    100.0
}

/// Multi-zone time-of-flight sensors and the elevation map built from them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Depth {
    /// Edge length of an elevation-map cell.
    #[serde(default = "default_map_resolution")]
    pub(crate) map_resolution_m: f64,
    /// A depth sensor whose newest frame is older than this is a fault while a policy that reads
    /// the terrain walks (`Fault::DepthStale`; it degrades per `[safety.degrade] depth_stale_ms`).
    #[serde(default = "default_depth_timeout")]
    pub timeout_ms: f64,
    #[serde(rename = "sensor")]
    pub sensors: Vec<DepthSensor>,
}

fn default_map_resolution() -> f64 {
    0.05
}

fn default_depth_timeout() -> f64 {
    200.0
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DepthSensor {
    pub name: String,
    /// The sensor's index on the firmware bridge.
    pub(crate) bridge_sensor: u8,
    /// Mounting pose in the body frame: position, and roll-pitch-yaw (the sensor looks along its +x).
    #[serde(deserialize_with = "exactly")]
    pub(crate) position_m: [f64; 3],
    #[serde(deserialize_with = "exactly")]
    pub(crate) rpy_deg: [f64; 3],
    /// Field of view across the zone grid, per axis (VL53L8CX: 45 degrees).
    #[serde(default = "default_fov")]
    pub(crate) fov_deg: f64,
    /// Returns farther than this are ignored.
    #[serde(default = "default_max_range")]
    pub(crate) max_range_m: f64,
}

fn default_fov() -> f64 {
    45.0
}

fn default_max_range() -> f64 {
    4.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerKind {
    /// No learned controller: Passive, StandUp and SitDown only; Walk is refused.
    None,
    /// A distilled student policy (contract kind "policy"): one forward per policy tick.
    Student,
    /// A latent world model (contract kind "world_model") planned with MPPI every policy tick.
    Mppi,
    /// The built-in wheel-balancing controller (`[balance]`) walks: it follows the velocity
    /// command (vx, yaw rate) inside the control loop. For wheeled robots before learned models.
    Balance,
}

impl ControllerKind {
    /// The name the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::None => "none",
            ControllerKind::Student => "student",
            ControllerKind::Mppi => "mppi",
            ControllerKind::Balance => "balance",
        }
    }
}

/// A learned controller an operator may select over teleop (`[[controller.choices]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerChoice {
    /// What `cmd/controller` calls it (letters, digits, `_`, `-`; not "default").
    pub name: String,
    /// "student" or "mppi".
    pub kind: ControllerKind,
    /// Its TorchScript file; a relative path is relative to this file.
    pub model: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Controller {
    pub kind: ControllerKind,
    /// Duration of the StandUp interpolation to the default pose.
    pub(crate) standup_s: f64,
    /// Duration of the SitDown interpolation back to the pose StandUp started from.
    pub(crate) sitdown_s: f64,
    /// The TorchScript model (student or world model); a relative path is relative to this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Other controllers an operator may select over teleop (`cmd/controller`); the one above is
    /// named "default".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<ControllerChoice>,
    /// A candidate model of the same kind run beside `model` on the same observations, its steps
    /// logged, never actuated (shadow mode); needs `[log] enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<PathBuf>,
    /// The directories `cmd/reload` may load a model it names from (relative paths are relative
    /// to this file). Empty: those of the configured models (`model`, the choices', `shadow`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reload_dirs: Vec<PathBuf>,
    /// Where the model runs: "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// libtorch intra-op threads of the policy (1: the policy must not crowd the control core).
    pub threads: u32,
    /// libtorch inter-op threads (process-wide, set once).
    pub(crate) interop_threads: u32,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            kind: ControllerKind::None,
            standup_s: 2.0,
            sitdown_s: 2.0,
            model: None,
            choices: Vec::new(),
            shadow: None,
            reload_dirs: Vec::new(),
            device: "cpu".into(),
            threads: 1,
            interop_threads: 1,
        }
    }
}

/// MPPI settings. Every planner field left out takes the model contract's default (`planner`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mppi {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) horizon: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) elites: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prior_samples: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gamma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centre: Option<PlanCentre>,
    /// Time the planner may spend per policy tick; default half the policy period. Iterations that
    /// would not fit are not started; if not even one fits, the model's prior (`pi`) acts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<f64>,
    /// Seed of the planner's sampling noise (identical inputs and seed give identical actions).
    pub seed: u64,
}

/// Where each plan's sampling distribution is centred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanCentre {
    /// The last plan shifted by one step (TD-MPC2's warm start).
    #[default]
    LastPlan,
    /// The policy prior's own trajectory from this tick's latent: the planner refines the prior
    /// (needs `prior_samples` >= 1).
    Prior,
}

impl Mppi {
    /// The planner's time budget per tick, in milliseconds.
    pub fn budget_ms(&self, rate: &LoopConfig) -> f64 {
        self.budget_ms.unwrap_or(0.5e3 / rate.policy_hz as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    /// Angle between body up and world up beyond which the robot has fallen.
    pub tilt_limit_deg: f64,
    /// An IMU sample older than this is a fault.
    pub imu_timeout_ms: f64,
    /// A motor whose last reply is older than this is a fault.
    pub motor_timeout_ms: f64,
    /// A fault clears only after its condition has been absent this long, so a sensor at the edge of
    /// its timeout does not flap between fault and no fault.
    pub fault_clear_ms: f64,
    /// This many consecutive control cycles past their deadline (or skipped) is a fault.
    pub(crate) max_consecutive_overruns: u32,
    /// A policy action older than this makes Walk fall back to the next controller.
    pub(crate) policy_timeout_ms: f64,
    /// Largest change of a position target per second, applied to every command.
    pub(crate) action_rate_limit_radps: f64,
    /// A joint measured faster than `vel_max_radps` times this is a fault (the margin keeps
    /// measurement noise and a commanded velocity at the limit from tripping it).
    pub(crate) overspeed_factor: f64,
    /// How long the daemon keeps damping after a stop request before it exits.
    pub shutdown_damp_ms: f64,
    /// Which faults degrade instead of damping, and for how long (`[safety.degrade]`).
    #[serde(skip_serializing_if = "Degrade::is_unset")]
    pub degrade: Degrade,
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            tilt_limit_deg: 45.0,
            imu_timeout_ms: 20.0,
            motor_timeout_ms: 10.0,
            fault_clear_ms: 200.0,
            max_consecutive_overruns: 5,
            policy_timeout_ms: 60.0,
            action_rate_limit_radps: 10.0,
            overspeed_factor: 1.5,
            shutdown_damp_ms: 300.0,
            degrade: Degrade::default(),
        }
    }
}

/// The graded response to faults (`[safety.degrade]`). A brief fault of one of these kinds does not
/// damp: the robot is held by its balance fallback (Walk's stand level; StandUp and SitDown go on)
/// on the last good estimate, and the fault damps only once its condition has been present for
/// longer than the time given here, summed per kind over the episode (until the fault clears). 0 damps at
/// once. Every other fault (tilt, a motor missing or in error, non-finite values, bus faults)
/// always damps. A key left out takes the default of the robot's kind: a robot that balances on
/// wheels (`[balance]`) falls when damped, so it degrades; other robots damp, as before, except
/// for a stale depth sensor, which only matters to a walking policy.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Degrade {
    /// An IMU sample older than `imu_timeout_ms` (default 100 with `[balance]`, else 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imu_stale_ms: Option<f64>,
    /// `max_consecutive_overruns` late cycles in a row (default 200 with `[balance]`, else 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deadline_overruns_ms: Option<f64>,
    /// A motor whose last reply is older than `motor_timeout_ms` (default 50 with `[balance]`,
    /// else 0): its joint's last reading stays in the estimate meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) motor_silent_ms: Option<f64>,
    /// A depth sensor silent for longer than `[depth] timeout_ms` while a policy that reads the
    /// terrain walks (default 5000 for every robot: standing needs no depth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) depth_stale_ms: Option<f64>,
}

/// `[safety.degrade]` with the robot kind's defaults filled in, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegradeLimits {
    pub imu_stale_ms: f64,
    pub(crate) deadline_overruns_ms: f64,
    pub(crate) motor_silent_ms: f64,
    pub(crate) depth_stale_ms: f64,
}

impl Degrade {
    fn is_unset(&self) -> bool {
        *self == Degrade::default()
    }

    /// The limits, with the defaults of a robot that balances on wheels (`balances`) or not.
    pub fn limits(&self, balances: bool) -> DegradeLimits {
        let kind = |balancing: f64, other: f64| if balances { balancing } else { other };
        DegradeLimits {
            imu_stale_ms: self.imu_stale_ms.unwrap_or(kind(100.0, 0.0)),
            deadline_overruns_ms: self.deadline_overruns_ms.unwrap_or(kind(200.0, 0.0)),
            motor_silent_ms: self.motor_silent_ms.unwrap_or(kind(50.0, 0.0)),
            depth_stale_ms: self.depth_stale_ms.unwrap_or(5000.0),
        }
    }
}

/// Limits on velocity commands from any source, and how long a command stays valid.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandLimits {
    /// A command source that has been silent this long counts as gone: its command becomes zero.
    pub lease_ms: f64,
    /// Largest |command| per axis: [vx m/s, vy m/s, yaw rate rad/s].
    #[serde(deserialize_with = "exactly")]
    pub max_vel: [f64; 3],
    /// Largest change per second per axis (acceleration limit).
    #[serde(deserialize_with = "exactly")]
    pub(crate) max_accel: [f64; 3],
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self { lease_ms: 300.0, max_vel: [1.0, 0.5, 1.5], max_accel: [2.0, 2.0, 4.0] }
    }
}

/// How a log file's chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogCompression {
    Zstd,
    Lz4,
    None,
}

/// Transition logging (`log`): one MCAP file per episode in `dir`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub enabled: bool,
    /// Where episodes are written; relative paths are relative to the working directory.
    pub dir: PathBuf,
    /// An episode longer than this is continued in a new file.
    pub episode_s: f64,
    /// How often the open file is flushed (closing a chunk) and synced to disk: the most a
    /// power cut or a crash can lose.
    pub fsync_interval_ms: f64,
    /// The oldest closed logs are deleted to keep `dir` under this size.
    pub quota_mb: f64,
    pub compression: LogCompression,
    /// Records the control thread can queue ahead of the logger (each a few kB, allocated once).
    pub ring_records: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("logs"),
            episode_s: 300.0,
            fsync_interval_ms: 500.0,
            quota_mb: 4096.0,
            compression: LogCompression::Zstd,
            ring_records: 2048,
        }
    }
}

/// The wheeled-inverted-pendulum controller of a robot that balances on two wheels. It drives the
/// wheels with torque, `u = k_pitch (pitch - pitch_offset) + k_pitch_rate pitch_rate + k_vel (v -
/// vx) + k_pos ∫(v - vx)`, split between the wheels with `k_yaw_rate (yaw_rate_cmd - yaw_rate)`,
/// while the legs hold their pose. Pitch is positive nose-down; a wheel's positive joint direction
/// rolls the robot forward. Used by StandUp, SitDown and the stand fallback, and by Walk with
/// `[controller] kind = "balance"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    pub left_wheel: String,
    pub right_wheel: String,
    pub(crate) wheel_radius_m: f64,
    /// N·m per rad of pitch, summed over both wheels.
    pub(crate) k_pitch: f64,
    /// N·m per rad/s of pitch rate.
    pub(crate) k_pitch_rate: f64,
    /// N·m per m/s of forward-speed error.
    pub(crate) k_vel: f64,
    /// N·m per m of accumulated speed error (finds the pitch at which the robot stands still).
    pub(crate) k_pos: f64,
    /// Bound of the accumulated speed error.
    #[serde(default = "default_pos_error_max")]
    pub(crate) pos_error_max_m: f64,
    /// Wheel torque difference per rad/s of yaw-rate error, and per rad of its integral.
    pub(crate) k_yaw_rate: f64,
    #[serde(default)]
    pub(crate) k_yaw: f64,
    /// Pitch at which the centre of mass is over the axle in the default pose.
    #[serde(default)]
    pub(crate) pitch_offset_rad: f64,
    /// Leveling: joints (the hips) whose held position shifts, slowly, until the base's pitch is
    /// `level_pitch_rad`. A balancing robot stands where its centre of mass is over the axle, so
    /// without it the base tilts by whatever the pose and payload put there. Empty: none.
    #[serde(default)]
    pub(crate) level_joints: Vec<String>,
    /// rad/s of the joints' shift per rad of pitch beyond `level_pitch_rad`; positive when a
    /// joint's positive direction pitches the base nose-up (raises the nose).
    #[serde(default)]
    pub(crate) k_level: f64,
    /// Bound of the shift, rad.
    #[serde(default = "default_level_max")]
    pub(crate) level_max_rad: f64,
    /// The base pitch leveling holds (positive nose-down).
    #[serde(default)]
    pub(crate) level_pitch_rad: f64,
}

fn default_level_max() -> f64 {
    0.3
}

fn default_pos_error_max() -> f64 {
    3.0
}

/// Teleop and telemetry over zenoh (`teleop` module). Velocity limits and the command lease are
/// `[command]`'s: they hold for every source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Teleop {
    /// Key expression prefix of every key (`<prefix>/cmd/vel`, `<prefix>/state`, ...); empty means
    /// `locod/<robot.name>`.
    pub prefix: String,
    /// Where the daemon listens (zenoh endpoints), and where `locod teleop` connects. Loopback only
    /// by default; multicast scouting is always off unless `zenoh_config` turns it on.
    pub listen: Vec<String>,
    /// A complete zenoh configuration (JSON5) for the daemon instead of `listen`: TLS, access
    /// control (see config/zenoh/). Relative to this file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zenoh_config: Option<String>,
    /// The zenoh configuration `locod teleop` uses (the operator's certificate) instead of
    /// connecting to `listen`. Relative to this file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_zenoh_config: Option<String>,
    /// Rate of the `state` telemetry.
    pub(crate) state_hz: f64,
    /// Key of the ROS 2 `geometry_msgs/Twist` (CDR) accepted as a teleop velocity, as
    /// zenoh-bridge-ros2dds names a topic (no prefix); empty turns it off.
    pub(crate) ros_cmd_vel_key: String,
    /// Larger payloads are rejected unread.
    pub(crate) max_payload_bytes: usize,
    /// How often `locod teleop` sends while the deadman is held.
    pub(crate) send_hz: f64,
    /// The keyboard has no key-release events: a driving key counts as held this long after its
    /// last press or auto-repeat.
    pub(crate) key_hold_ms: f64,
}

impl Default for Teleop {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            listen: vec!["tcp/127.0.0.1:7447".into()],
            zenoh_config: None,
            client_zenoh_config: None,
            state_hz: 20.0,
            ros_cmd_vel_key: "cmd_vel".into(),
            max_payload_bytes: 1024,
            send_hz: 20.0,
            key_hold_ms: 600.0,
        }
    }
}

/// A fixed-length array of numbers. serde's `[f64; N]` takes the first N elements of a longer
/// TOML array and silently drops the rest; here any other length is an error.
pub(crate) fn exactly<'de, D: serde::Deserializer<'de>, const N: usize>(d: D) -> Result<[f64; N], D::Error> {
    let v = Vec::<f64>::deserialize(d)?;
    let n = v.len();
    v.try_into().map_err(|_| serde::de::Error::custom(format!("expected {N} numbers, got {n}")))
}

impl Config {
    /// The teleop key prefix, resolved (`locod/<robot.name>` unless configured).
    pub fn teleop_prefix(&self) -> String {
        match &self.teleop {
            Some(t) if !t.prefix.is_empty() => t.prefix.clone(),
            _ => format!("locod/{}", self.robot.name),
        }
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`, reporting errors against `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line_col: e.span().map(|s| error::line_col(text, s.start)),
            key: e.span().and_then(|s| error::key_at(text, s)),
            message: e.message().trim().to_string(),
        })?;
        config.source = path.to_path_buf();
        calibration::apply(&mut config)?;
        validate::validate(&config).map_err(|(segs, message)| ConfigError {
            file: path.to_path_buf(),
            line_col: error::locate(text, &segs),
            key: Some(error::path_string(&segs)),
            message,
        })?;
        Ok(config)
    }

    /// The resolved configuration, defaults included, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }

    /// The configured model path, resolved against the configuration file's directory.
    pub fn model_path(&self) -> Option<PathBuf> {
        self.controller.model.as_ref().map(|m| self.resolve(m))
    }

    /// This configuration with the controller `name` selected (`"default"`: the `[controller]`
    /// one; else one of `[[controller.choices]]`), or `None` if there is no such choice.
    pub fn with_controller(&self, name: &str) -> Option<Config> {
        if name == "default" {
            return Some(self.clone());
        }
        let choice = self.controller.choices.iter().find(|c| c.name == name)?;
        let mut c = self.clone();
        c.controller.kind = choice.kind;
        c.controller.model = Some(choice.model.clone());
        Some(c)
    }

    /// The shadow model (`[controller] shadow`), resolved like `model`.
    pub fn shadow_path(&self) -> Option<PathBuf> {
        self.controller.shadow.as_ref().map(|m| self.resolve(m))
    }

    /// The directories `cmd/reload` may load a named model from: `[controller] reload_dirs`,
    /// resolved, or else the directories of the configured models.
    pub fn reload_dirs(&self) -> Vec<PathBuf> {
        if !self.controller.reload_dirs.is_empty() {
            return self.controller.reload_dirs.iter().map(|d| self.resolve(d)).collect();
        }
        let c = &self.controller;
        let models = c.model.iter().chain(c.choices.iter().map(|k| &k.model)).chain(c.shadow.iter());
        let mut dirs: Vec<PathBuf> = models.filter_map(|m| self.resolve(m).parent().map(Path::to_path_buf)).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// `path` as written in this configuration: relative paths are relative to its directory.
    pub(crate) fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.source.parent().unwrap_or(Path::new("")).join(path)
        }
    }

    /// Names of the configured depth sensors, in `Perception::depth` order.
    pub(crate) fn depth_sensor_names(&self) -> Vec<String> {
        self.depth.as_ref().map_or_else(Vec::new, |d| d.sensors.iter().map(|s| s.name.clone()).collect())
    }

    /// Names of the joints, in configuration order (faults and events name joints by them).
    pub fn joint_names(&self) -> Vec<String> {
        self.joints.iter().map(|j| j.name.clone()).collect()
    }

    /// `[safety.degrade]` resolved for this robot (it balances when `[balance]` is configured).
    pub fn degrade_limits(&self) -> DegradeLimits {
        self.safety.degrade.limits(self.balance.is_some())
    }

    pub fn joint_index(&self, name: &str) -> Option<usize> {
        self.joints.iter().position(|j| j.name == name)
    }
}

#[cfg(test)]
mod tests;
