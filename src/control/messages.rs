//! The messages that cross the control loop's boundary: requests in, events and snapshots out.
//! All are `Copy` and fixed-size, so they travel through lock-free handoffs without allocation.

use crate::estimate::RobotState;
use crate::types::MAX_JOINTS;
use crate::types::{HwFault, MotorCommand};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Motors damped. The start-up mode and where every fault lands.
    Passive,
    /// Interpolating to the default pose.
    StandUp,
    /// The walking controller (or its fallback) in charge.
    Walk,
    /// Interpolating back to the resting pose, then Passive.
    SitDown,
    /// Damped and latched until an explicit reset.
    EStop,
}

/// What someone (teleop, the CLI, a test) asks the mode machine for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeRequest {
    Passive,
    StandUp,
    Walk,
    SitDown,
    /// Leaves EStop for Passive.
    Reset,
}

/// Who is in charge while walking: the primary controller, its fallbacks, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerLevel {
    /// The configured controller (student policy or MPPI planner).
    Primary,
    /// The model's own policy prior, used when the planner misses its budget.
    Prior,
    /// Holding the default pose.
    Stand,
    /// Damping.
    Damp,
}

/// Where the velocity command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSource {
    None,
    Teleop,
    Autonomy,
}

/// A condition that takes the robot to damping, or (a brief sensor gap or overrun burst on a
/// robot configured to degrade, `control::response`) to its balance fallback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// No IMU sample has arrived since start.
    ImuMissing,
    ImuStale {
        age_ms: f64,
    },
    /// A depth sensor (index in `[[depth.sensor]]` order) whose newest frame is older than `[depth]
    /// timeout_ms` (infinite: none yet) while a policy that reads the terrain walks.
    DepthStale {
        sensor: u8,
        age_ms: f64,
    },
    /// A motor has not replied once since start.
    MotorMissing {
        joint: u8,
    },
    MotorSilent {
        joint: u8,
        age_ms: f64,
    },
    MotorError {
        joint: u8,
        code: u8,
    },
    NonFinite {
        what: &'static str,
        joint: Option<u8>,
    },
    Tilt {
        tilt_deg: f64,
    },
    DeadlineOverruns {
        consecutive: u32,
    },
    Hardware(HwFault),
}

impl Fault {
    /// Same kind of fault (ignoring the measured values), for edge-triggered reporting.
    pub fn same_kind(&self, other: &Fault) -> bool {
        use Fault::*;
        match (self, other) {
            (MotorSilent { joint: a, .. }, MotorSilent { joint: b, .. }) => a == b,
            (MotorMissing { joint: a }, MotorMissing { joint: b }) => a == b,
            (MotorError { joint: a, code: x }, MotorError { joint: b, code: y }) => a == b && x == y,
            (DepthStale { sensor: a, .. }, DepthStale { sensor: b, .. }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ImuMissing => f.write_str("IMU: no sample received yet"),
            Fault::ImuStale { age_ms } => write!(f, "IMU stale: last sample {age_ms:.1} ms old"),
            Fault::DepthStale { sensor, age_ms } if age_ms.is_finite() => {
                write!(f, "depth sensor {sensor} stale: last frame {age_ms:.1} ms old")
            }
            Fault::DepthStale { sensor, .. } => write!(f, "depth sensor {sensor}: no frame received yet"),
            Fault::MotorMissing { joint } => write!(f, "motor of joint {joint}: no reply received yet"),
            Fault::MotorSilent { joint, age_ms } => {
                write!(f, "motor of joint {joint} silent: last reply {age_ms:.1} ms old")
            }
            Fault::MotorError { joint, code } => write!(f, "motor of joint {joint} reports error {code:#x}"),
            Fault::NonFinite { what, joint: Some(j) } => write!(f, "non-finite {what} at joint {j}"),
            Fault::NonFinite { what, joint: None } => write!(f, "non-finite {what}"),
            Fault::Tilt { tilt_deg } => write!(f, "tilt {tilt_deg:.1} deg beyond the limit"),
            Fault::DeadlineOverruns { consecutive } => {
                write!(f, "{consecutive} consecutive control cycles overran their deadline")
            }
            Fault::Hardware(h) => write!(f, "hardware: {h}"),
        }
    }
}

/// Why a mode request was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    EStopLatched,
    FaultActive(Fault),
    NotStanding,
    NoWalkController,
    NotInEStop,
    Transitioning(Mode),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::EStopLatched => f.write_str("e-stop is latched: send reset first"),
            Refusal::FaultActive(fault) => write!(f, "a fault is active ({fault})"),
            Refusal::NotStanding => f.write_str("stand up first: walking starts from a completed StandUp"),
            Refusal::NoWalkController => f.write_str("no walking controller is running (configure [controller] kind)"),
            Refusal::NotInEStop => f.write_str("reset only leaves EStop"),
            Refusal::Transitioning(m) => write!(f, "not possible during {m:?}"),
        }
    }
}

/// Why the mode changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    Requested,
    Fault(Fault),
    /// A fault that degrades lasted longer than its `[safety.degrade]` limit.
    FaultPersisted(Fault),
    EStop,
    Completed,
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested => f.write_str("requested"),
            Reason::Fault(fault) => write!(f, "fault: {fault}"),
            Reason::FaultPersisted(fault) => write!(f, "fault: {fault}, for longer than [safety.degrade] allows"),
            Reason::EStop => f.write_str("e-stop"),
            Reason::Completed => f.write_str("completed"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// Something the control loop reports; drained and logged off the real-time path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    ModeChanged {
        from: Mode,
        to: Mode,
        reason: Reason,
    },
    Refused {
        request: ModeRequest,
        mode: Mode,
        refusal: Refusal,
    },
    FaultRaised(Fault),
    FaultCleared(Fault),
    FallbackSwitched {
        from: ControllerLevel,
        to: ControllerLevel,
        why: FallbackWhy,
    },
    /// Commands to the motors were limited (position, rate or torque) on this many joints.
    CommandRejected {
        source: CommandSource,
    },
}

/// Why the walking controller level changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackWhy {
    /// The policy's action is older than the policy timeout.
    ActionStale,
    /// The policy itself reported falling back (e.g. the planner missed its budget).
    PolicyReported,
    /// A fresh action is available again.
    Recovered,
    /// A fault that degrades (a brief sensor gap, an overrun burst): the balance fallback holds the
    /// robot on the last good estimate until the fault clears or outlasts its limit.
    Degraded,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub t_ns: u64,
    pub kind: EventKind,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::ModeChanged { from, to, reason } => write!(f, "mode {from:?} -> {to:?} ({reason})"),
            EventKind::Refused { request, mode, refusal } => {
                write!(f, "request {request:?} refused in {mode:?}: {refusal}")
            }
            EventKind::FaultRaised(fault) => write!(f, "fault: {fault}"),
            EventKind::FaultCleared(fault) => write!(f, "fault cleared: {fault}"),
            EventKind::FallbackSwitched { from, to, why } => {
                write!(f, "controller {from:?} -> {to:?} ({why:?})")
            }
            EventKind::CommandRejected { source } => write!(f, "invalid velocity command from {source:?} dropped"),
        }
    }
}

/// A velocity command `[vx m/s, vy m/s, yaw rate rad/s]` as sent by a source.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VelocityMsg {
    pub vel: [f64; 3],
    /// When it was received (monotonic); 0 = never.
    pub t_ns: u64,
}

/// The largest observation a model may take, in floats (a 17x11 height scan plus proprioception
/// and history fits with room to spare). Fixed so that actions and log records are fixed-size.
pub const MAX_OBS: usize = 1024;

/// What a planner reports about one plan (zeros for a single-forward policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannerStats {
    /// Iterations completed within the budget.
    pub iterations: u16,
    /// Trajectories sampled per iteration.
    pub samples: u16,
    /// Best and mean elite return of the last iteration.
    pub best_return: f32,
    pub mean_elite_return: f32,
    /// Time the policy spent on this tick, microseconds.
    pub compute_us: f32,
}

/// What the policy thread hands the control loop every policy tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyAction {
    /// Time of the state the action was computed from; 0 = no action yet.
    pub t_ns: u64,
    pub level: ControllerLevel,
    /// Joint targets; limited by the control loop before they reach a motor.
    pub targets: [MotorCommand; MAX_JOINTS],
    /// The model's observation (first `obs_len` floats) and raw action (first `action_len`,
    /// clipped, before scaling), recorded for finetuning and replay.
    pub obs_len: u16,
    pub obs: [f32; MAX_OBS],
    pub action_len: u16,
    pub action: [f32; MAX_JOINTS],
    pub planner: PlannerStats,
}

impl Default for PolicyAction {
    fn default() -> Self {
        Self {
            t_ns: 0,
            level: ControllerLevel::Primary,
            targets: [MotorCommand::default(); MAX_JOINTS],
            obs_len: 0,
            obs: [0.0; MAX_OBS],
            action_len: 0,
            action: [0.0; MAX_JOINTS],
            planner: PlannerStats::default(),
        }
    }
}

/// The control loop's view at one tick, published for the policy thread, telemetry and logging.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub tick: u64,
    pub state: RobotState,
    pub mode: Mode,
    pub level: ControllerLevel,
    pub command: [f64; 3],
    pub source: CommandSource,
    pub fault: Option<Fault>,
    /// StandUp has reached the default pose (Walk may be requested).
    pub standing: bool,
    pub commands: [MotorCommand; MAX_JOINTS],
    /// Cycles skipped so far because of overruns.
    pub skipped_cycles: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            tick: 0,
            state: RobotState::default(),
            mode: Mode::Passive,
            level: ControllerLevel::Damp,
            command: [0.0; 3],
            source: CommandSource::None,
            fault: None,
            standing: false,
            commands: [MotorCommand::default(); MAX_JOINTS],
            skipped_cycles: 0,
        }
    }
}
