//! The logged message `locod_msgs/msg/Tick`: its ros2msg definition (stored in every file, so
//! Foxglove and the Python `mcap-ros2-support` decoder show named fields), the CDR encoding of a
//! `TickRecord`, and `Tick`, the decoded owned form the tools (export, plots) work on.
//!
//! Joint arrays are sequences of the robot's joints in configuration order (names in the file's
//! metadata); the policy's observation and action are sequences of their real lengths. The field
//! order of `MSG`, `encode` and `Tick::decode` is the same; a test and the Python reader check it.
//!
//! Not for: files and episodes (`writer`, `read`).

use super::cdr::{self, DecodeError};
use super::{fault_code, level_code, mode_code, source_code};
use crate::control::messages::ShadowStep;
use crate::control::record::TickRecord;

pub(crate) const SCHEMA_NAME: &str = "locod_msgs/msg/Tick";
pub(crate) const SCHEMA_ENCODING: &str = "ros2msg";
pub(crate) const MESSAGE_ENCODING: &str = "cdr";
pub(crate) const TOPIC: &str = "/locod/tick";
/// Name of the metadata record every file carries (robot, configuration, versions, joints).
pub(crate) const METADATA_NAME: &str = "locod";
/// Name of the metadata record written when an episode closes (why, how many records).
pub(crate) const EPISODE_END_NAME: &str = "locod.episode_end";

/// The ros2msg definition. Field order is wire order.
pub(crate) const MSG: &str = "\
# One control tick of locod. Times are CLOCK_MONOTONIC nanoseconds. Joint arrays follow the
# joint order in the file's `locod` metadata record (`joint_names`).
uint8 MODE_PASSIVE=0
uint8 MODE_STAND_UP=1
uint8 MODE_WALK=2
uint8 MODE_SIT_DOWN=3
uint8 MODE_ESTOP=4
uint8 LEVEL_PRIMARY=0
uint8 LEVEL_PRIOR=1
uint8 LEVEL_STAND=2
uint8 LEVEL_DAMP=3
uint8 SOURCE_NONE=0
uint8 SOURCE_TELEOP=1
uint8 SOURCE_AUTONOMY=2
uint8 FAULT_NONE=0
uint8 FAULT_IMU_STALE=1
uint8 FAULT_MOTOR_SILENT=2
uint8 FAULT_MOTOR_ERROR=3
uint8 FAULT_NON_FINITE=4
uint8 FAULT_TILT=5
uint8 FAULT_DEADLINE_OVERRUNS=6
uint8 FAULT_HARDWARE=7
uint8 FAULT_IMU_MISSING=8
uint8 FAULT_MOTOR_MISSING=9
uint8 FAULT_OVER_SPEED=10
uint8 FAULT_DEPTH_STALE=11
uint8 FLAG_TELEOP=1
uint8 FLAG_FAULT=2
uint8 FLAG_DROPPED_TICK=4
uint8 FLAG_POLICY_FRESH=8
uint8 FLAG_RECORDS_DROPPED=16
uint8 FLAG_POLICY_STEP=32
uint64 episode
uint64 tick
uint64 t_ns
uint64 deadline_ns
uint32 compute_ns
uint32 skipped_cycles
uint64 records_dropped
uint8 mode
uint8 level
uint8 command_source
uint8 flags
uint8 fault_kind
string fault
float64[3] command_vel
uint64 imu_t_ns
float64[4] imu_quat_wxyz
float64[3] imu_gyro_body_radps
float64[3] imu_accel_body_mps2
uint64[] joint_t_ns
float64[] joint_q_rad
float64[] joint_qd_radps
float64[] joint_tau_nm
float32[] joint_temp_c
uint8[] joint_error
float64[4] est_quat_wxyz
float64[3] est_ang_vel_body_radps
float64[3] est_projected_gravity_body
float64 est_tilt_rad
uint64 est_imu_age_ns
uint64 est_oldest_joint_age_ns
float64[] cmd_q_rad
float64[] cmd_qd_radps
float64[] cmd_kp
float64[] cmd_kd
float64[] cmd_tau_ff_nm
uint64 policy_t_ns
uint8 policy_level
float32[] policy_obs
float32[] policy_action
uint16 planner_iterations
uint16 planner_samples
float32 planner_best_return
float32 planner_mean_elite_return
float32 planner_compute_us
";

/// Encodes `r` (of episode `episode`) into `buf` (cleared first).
pub fn encode(r: &TickRecord, episode: u64, buf: &mut Vec<u8>) {
    let n = r.n_joints as usize;
    let joints = &r.sensors.joints[..n];
    let cmds = &r.commands.joints[..n];
    let p = &r.policy;
    let mut w = cdr::Writer::new(buf);
    w.u64(episode);
    w.u64(r.tick);
    w.u64(r.t_ns);
    w.u64(r.deadline_ns);
    w.u32(r.compute_ns);
    w.u32(r.skipped_cycles);
    w.u64(r.records_dropped);
    w.u8(mode_code(r.mode));
    w.u8(level_code(r.level));
    w.u8(source_code(r.source));
    w.u8(r.flags);
    w.u8(fault_code(&r.fault));
    match &r.fault {
        Some(f) => w.string(&f.to_string()),
        None => w.string(""),
    }
    w.f64_array(&r.command_vel);
    let imu = &r.sensors.imu;
    w.u64(imu.t_ns);
    w.f64_array(&imu.quat_wxyz);
    w.f64_array(&imu.gyro_body_radps);
    w.f64_array(&imu.accel_body_mps2);
    w.u64_seq(joints.iter().map(|j| j.t_ns));
    w.f64_seq(joints.iter().map(|j| j.q_rad));
    w.f64_seq(joints.iter().map(|j| j.qd_radps));
    w.f64_seq(joints.iter().map(|j| j.tau_nm));
    w.f32_seq(joints.iter().map(|j| j.temp_c));
    w.u8_seq(joints.iter().map(|j| j.error));
    let e = &r.estimate;
    w.f64_array(&e.quat_wxyz);
    w.f64_array(&e.ang_vel_body_radps);
    w.f64_array(&e.projected_gravity_body);
    w.f64(e.tilt_rad);
    w.u64(e.imu_age_ns);
    w.u64(e.oldest_joint_age_ns);
    w.f64_seq(cmds.iter().map(|c| c.q_rad));
    w.f64_seq(cmds.iter().map(|c| c.qd_radps));
    w.f64_seq(cmds.iter().map(|c| c.kp));
    w.f64_seq(cmds.iter().map(|c| c.kd));
    w.f64_seq(cmds.iter().map(|c| c.tau_ff_nm));
    w.u64(p.t_ns);
    w.u8(level_code(p.level));
    w.f32_seq(p.obs[..(p.obs_len as usize).min(p.obs.len())].iter().copied());
    w.f32_seq(p.action[..(p.action_len as usize).min(p.action.len())].iter().copied());
    w.u16(p.planner.iterations);
    w.u16(p.planner.samples);
    w.f32(p.planner.best_return);
    w.f32(p.planner.mean_elite_return);
    w.f32(p.planner.compute_us);
}

/// A decoded tick: the fields of `MSG`, owned.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Tick {
    pub episode: u64,
    pub tick: u64,
    pub t_ns: u64,
    pub deadline_ns: u64,
    pub compute_ns: u32,
    pub skipped_cycles: u32,
    pub records_dropped: u64,
    pub mode: u8,
    pub level: u8,
    pub(crate) command_source: u8,
    pub flags: u8,
    pub(crate) fault_kind: u8,
    pub fault: String,
    pub command_vel: [f64; 3],
    pub(crate) imu_t_ns: u64,
    pub(crate) imu_quat_wxyz: [f64; 4],
    pub(crate) imu_gyro_body_radps: [f64; 3],
    pub(crate) imu_accel_body_mps2: [f64; 3],
    pub(crate) joint_t_ns: Vec<u64>,
    pub joint_q_rad: Vec<f64>,
    pub(crate) joint_qd_radps: Vec<f64>,
    pub(crate) joint_tau_nm: Vec<f64>,
    pub(crate) joint_temp_c: Vec<f32>,
    pub(crate) joint_error: Vec<u8>,
    pub est_quat_wxyz: [f64; 4],
    pub(crate) est_ang_vel_body_radps: [f64; 3],
    pub(crate) est_projected_gravity_body: [f64; 3],
    pub(crate) est_tilt_rad: f64,
    pub(crate) est_imu_age_ns: u64,
    pub(crate) est_oldest_joint_age_ns: u64,
    pub(crate) cmd_q_rad: Vec<f64>,
    pub(crate) cmd_qd_radps: Vec<f64>,
    pub cmd_kp: Vec<f64>,
    pub(crate) cmd_kd: Vec<f64>,
    pub(crate) cmd_tau_ff_nm: Vec<f64>,
    pub policy_t_ns: u64,
    pub(crate) policy_level: u8,
    pub policy_obs: Vec<f32>,
    pub policy_action: Vec<f32>,
    pub(crate) planner_iterations: u16,
    pub(crate) planner_samples: u16,
    pub planner_best_return: f32,
    pub(crate) planner_mean_elite_return: f32,
    pub(crate) planner_compute_us: f32,
}

impl Tick {
    pub fn decode(data: &[u8]) -> Result<Tick, DecodeError> {
        let mut r = cdr::Reader::new(data)?;
        Ok(Tick {
            episode: r.u64()?,
            tick: r.u64()?,
            t_ns: r.u64()?,
            deadline_ns: r.u64()?,
            compute_ns: r.u32()?,
            skipped_cycles: r.u32()?,
            records_dropped: r.u64()?,
            mode: r.u8()?,
            level: r.u8()?,
            command_source: r.u8()?,
            flags: r.u8()?,
            fault_kind: r.u8()?,
            fault: r.string()?,
            command_vel: r.f64_array()?,
            imu_t_ns: r.u64()?,
            imu_quat_wxyz: r.f64_array()?,
            imu_gyro_body_radps: r.f64_array()?,
            imu_accel_body_mps2: r.f64_array()?,
            joint_t_ns: r.u64_seq()?,
            joint_q_rad: r.f64_seq()?,
            joint_qd_radps: r.f64_seq()?,
            joint_tau_nm: r.f64_seq()?,
            joint_temp_c: r.f32_seq()?,
            joint_error: r.u8_seq()?,
            est_quat_wxyz: r.f64_array()?,
            est_ang_vel_body_radps: r.f64_array()?,
            est_projected_gravity_body: r.f64_array()?,
            est_tilt_rad: r.f64()?,
            est_imu_age_ns: r.u64()?,
            est_oldest_joint_age_ns: r.u64()?,
            cmd_q_rad: r.f64_seq()?,
            cmd_qd_radps: r.f64_seq()?,
            cmd_kp: r.f64_seq()?,
            cmd_kd: r.f64_seq()?,
            cmd_tau_ff_nm: r.f64_seq()?,
            policy_t_ns: r.u64()?,
            policy_level: r.u8()?,
            policy_obs: r.f32_seq()?,
            policy_action: r.f32_seq()?,
            planner_iterations: r.u16()?,
            planner_samples: r.u16()?,
            planner_best_return: r.f32()?,
            planner_mean_elite_return: r.f32()?,
            planner_compute_us: r.f32()?,
        })
    }

    pub fn n_joints(&self) -> usize {
        self.joint_q_rad.len()
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The shadow model's steps (`[controller] shadow`): a second channel in the same files.
pub(crate) const SHADOW_SCHEMA_NAME: &str = "locod_msgs/msg/ShadowStep";
pub(crate) const SHADOW_TOPIC: &str = "/locod/shadow";

/// The ros2msg definition of a shadow step. Field order is wire order.
pub(crate) const SHADOW_MSG: &str = "\
# A shadow model's step (locod [controller] shadow): computed on the same snapshot and perception
# as the live policy step whose policy_t_ns it carries, logged, never actuated.
uint64 episode
uint64 policy_t_ns
uint8 policy_level
string failed
float32[] policy_action
uint16 planner_iterations
float32 planner_best_return
float32 planner_compute_us
";

/// Encodes a shadow step (of episode `episode`) into `buf` (cleared first).
pub fn encode_shadow(s: &ShadowStep, episode: u64, buf: &mut Vec<u8>) {
    let mut w = cdr::Writer::new(buf);
    w.u64(episode);
    w.u64(s.t_ns);
    w.u8(level_code(s.level));
    w.string(s.failed.unwrap_or(""));
    w.f32_seq(s.action[..(s.action_len as usize).min(s.action.len())].iter().copied());
    w.u16(s.planner.iterations);
    w.f32(s.planner.best_return);
    w.f32(s.planner.compute_us);
}

/// A decoded shadow step: the fields of `SHADOW_MSG`, owned.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Shadow {
    pub episode: u64,
    pub policy_t_ns: u64,
    pub policy_level: u8,
    pub failed: String,
    pub policy_action: Vec<f32>,
    pub planner_iterations: u16,
    pub planner_best_return: f32,
    pub planner_compute_us: f32,
}

impl Shadow {
    pub fn decode(data: &[u8]) -> Result<Shadow, DecodeError> {
        let mut r = cdr::Reader::new(data)?;
        Ok(Shadow {
            episode: r.u64()?,
            policy_t_ns: r.u64()?,
            policy_level: r.u8()?,
            failed: r.string()?,
            policy_action: r.f32_seq()?,
            planner_iterations: r.u16()?,
            planner_best_return: r.f32()?,
            planner_compute_us: r.f32()?,
        })
    }
}
