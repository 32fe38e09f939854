//! What the tick produces for the log: one fixed-size `TickRecord` per tick, its `flags`, and the
//! control thread's end of the log ring (`LogTap`, never blocks, counts what it drops).
//!
//! Not for: files, schemas or episodes (that is `log`, which consumes these records).

use super::messages::{CommandSource, ControllerLevel, Fault, Mode, PolicyAction};
use crate::estimate::RobotState;
use crate::rt::spsc::{self, Consumer, Producer};
use crate::types::{MotorCommands, SensorFrame, MAX_JOINTS};

/// Bits of `TickRecord::flags`.
pub mod flags {
    /// Teleop was in charge of the velocity command (an operator intervention).
    pub(crate) const TELEOP: u8 = 1;
    /// A fault was active.
    pub(crate) const FAULT: u8 = 2;
    /// Cycles were skipped right before this tick (an overrun): the previous record is not the
    /// previous control period.
    pub const DROPPED_TICK: u8 = 4;
    /// Walk applied a fresh policy action this tick (no fallback held the robot instead).
    pub const POLICY_FRESH: u8 = 8;
    /// The ring was full for at least one record since the previous one: records are missing.
    pub const RECORDS_DROPPED: u8 = 16;
    /// A policy step: this tick took a new action from the policy (`policy.t_ns` changed), the
    /// first record to carry it.
    pub const POLICY_STEP: u8 = 32;
}

/// What the estimator derived, without the joint samples (those are in the sensor frame).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimateRecord {
    pub quat_wxyz: [f64; 4],
    pub ang_vel_body_radps: [f64; 3],
    pub projected_gravity_body: [f64; 3],
    pub(crate) tilt_rad: f64,
    pub(crate) imu_age_ns: u64,
    pub(crate) oldest_joint_age_ns: u64,
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
