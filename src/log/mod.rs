//! Transition logging: every control tick recorded for finetuning, replay and plots.
//!
//! The control thread fills one fixed-size `TickRecord` per tick and pushes it into a
//! preallocated SPSC ring (`LogTap`, never blocks, counts what it drops). The logger thread
//! (`writer`) drains the ring into MCAP files, one per episode; `read` reads them back (also
//! after a crash), `export` turns them into training datasets and `plot` into pictures.
//! `schema` is the on-disk message (ros2msg + CDR, so Foxglove and the Python `mcap` reader
//! show named fields).
//!
//! Not for: deciding anything about the robot; telemetry to people (that is the supervisor).

pub mod cdr;
pub mod export;
pub mod plot;
pub mod read;
pub mod schema;
pub mod writer;

use crate::config::MAX_JOINTS;
use crate::control::messages::{CommandSource, ControllerLevel, Fault, Mode, PolicyAction};
use crate::estimate::RobotState;
use crate::io::{MotorCommands, SensorFrame};
use crate::rt::spsc::{self, Consumer, Producer};

/// Bits of `TickRecord::flags`.
pub mod flags {
    /// Teleop was in charge of the velocity command (an operator intervention).
    pub const TELEOP: u8 = 1;
    /// A fault was active.
    pub const FAULT: u8 = 2;
    /// Cycles were skipped right before this tick (an overrun): the previous record is not the
    /// previous control period.
    pub const DROPPED_TICK: u8 = 4;
    /// Walk applied a fresh policy action this tick.
    pub const POLICY_FRESH: u8 = 8;
    /// The ring was full for at least one record since the previous one: records are missing.
    pub const RECORDS_DROPPED: u8 = 16;
}

/// What the estimator derived, without the joint samples (those are in the sensor frame).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimateRecord {
    pub quat_wxyz: [f64; 4],
    pub ang_vel_body_radps: [f64; 3],
    pub projected_gravity_body: [f64; 3],
    pub tilt_rad: f64,
    pub imu_age_ns: u64,
    pub oldest_joint_age_ns: u64,
}

impl From<&RobotState> for EstimateRecord {
    fn from(s: &RobotState) -> Self {
        Self {
            quat_wxyz: s.quat_wxyz,
            ang_vel_body_radps: s.ang_vel_body_radps,
            projected_gravity_body: s.projected_gravity_body,
            tilt_rad: s.tilt_rad,
            imu_age_ns: s.imu_age_ns,
            oldest_joint_age_ns: s.oldest_joint_age_ns,
        }
    }
}

/// One control tick, as the control thread saw it. Fixed-size and `Copy` (about 10 kB): it
/// travels through the ring without allocation. Only the first `n_joints` joints are meaningful.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickRecord {
    pub tick: u64,
    /// Monotonic wake-up time of the tick, and the deadline it was released for.
    pub t_ns: u64,
    pub deadline_ns: u64,
    /// From wake-up to the moment the record was filled.
    pub compute_ns: u32,
    /// Cycles skipped right before this tick.
    pub skipped_cycles: u32,
    /// Records the ring refused so far (the logger sees gaps as jumps here and in `tick`).
    pub records_dropped: u64,
    pub n_joints: u8,
    pub sensors: SensorFrame,
    pub estimate: EstimateRecord,
    /// The latest policy action (observation, raw action, planner statistics and level).
    pub policy: PolicyAction,
    /// What was written to the motors, after limits.
    pub commands: MotorCommands,
    /// Velocity command `[vx m/s, vy m/s, yaw rate rad/s]` after arbitration, and its source.
    pub command_vel: [f64; 3],
    pub source: CommandSource,
    pub mode: Mode,
    pub level: ControllerLevel,
    pub fault: Option<Fault>,
    pub flags: u8,
}

/// The control thread's end of the log ring.
pub struct LogTap {
    producer: Producer<TickRecord>,
    n_joints: u8,
    dropped: u64,
    dropped_since_push: bool,
}

/// A ring of `capacity` records for a robot with `n_joints` joints: the tap for the control
/// loop and the consumer for the logger thread. The only allocation logging ever makes on
/// behalf of the control thread.
pub fn ring(capacity: usize, n_joints: usize) -> (LogTap, Consumer<TickRecord>) {
    let (producer, consumer) = spsc::spsc(capacity);
    let n_joints = n_joints.min(MAX_JOINTS) as u8;
    (LogTap { producer, n_joints, dropped: 0, dropped_since_push: false }, consumer)
}

impl LogTap {
    pub fn n_joints(&self) -> u8 {
        self.n_joints
    }

    /// Records the ring refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queues `record` (filling in the drop count and flag). Never blocks, never allocates.
    pub fn push(&mut self, mut record: TickRecord) {
        record.records_dropped = self.dropped;
        if self.dropped_since_push {
            record.flags |= flags::RECORDS_DROPPED;
        }
        match self.producer.push(record) {
            Ok(()) => self.dropped_since_push = false,
            Err(_) => {
                self.dropped += 1;
                self.dropped_since_push = true;
            }
        }
    }
}

/// Code of a mode in the log (the `MODE_*` constants of the schema).
pub fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Passive => 0,
        Mode::StandUp => 1,
        Mode::Walk => 2,
        Mode::SitDown => 3,
        Mode::EStop => 4,
    }
}

pub const MODE_NAMES: [&str; 5] = ["passive", "stand_up", "walk", "sit_down", "estop"];
pub const MODE_WALK: u8 = 2;

pub fn level_code(l: ControllerLevel) -> u8 {
    match l {
        ControllerLevel::Primary => 0,
        ControllerLevel::Prior => 1,
        ControllerLevel::Stand => 2,
        ControllerLevel::Damp => 3,
    }
}

pub const LEVEL_NAMES: [&str; 4] = ["primary", "prior", "stand", "damp"];

pub fn source_code(s: CommandSource) -> u8 {
    match s {
        CommandSource::None => 0,
        CommandSource::Teleop => 1,
        CommandSource::Autonomy => 2,
    }
}

/// Code of a fault kind in the log: the schema's `FAULT_*` constants. Append-only: a code keeps its
/// meaning in old logs.
pub fn fault_code(f: &Option<Fault>) -> u8 {
    match f {
        None => 0,
        Some(Fault::ImuStale { .. }) => 1,
        Some(Fault::MotorSilent { .. }) => 2,
        Some(Fault::MotorError { .. }) => 3,
        Some(Fault::NonFinite { .. }) => 4,
        Some(Fault::Tilt { .. }) => 5,
        Some(Fault::DeadlineOverruns { .. }) => 6,
        Some(Fault::Hardware(_)) => 7,
        Some(Fault::ImuMissing) => 8,
        Some(Fault::MotorMissing { .. }) => 9,
    }
}

#[cfg(test)]
mod tests;
