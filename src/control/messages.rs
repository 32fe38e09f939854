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

impl ControllerLevel {
    /// Every level, in order; `index` is the position here.
    pub(crate) const ALL: [ControllerLevel; 4] = [Self::Primary, Self::Prior, Self::Stand, Self::Damp];
    pub(crate) const NAMES: [&'static str; 4] = ["primary", "prior", "stand", "damp"];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How many ticks (or plans) each controller level produced, in `ControllerLevel` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelCounts(pub [u64; 4]);

impl LevelCounts {
    pub fn add(&mut self, level: ControllerLevel) {
        self.0[level.index()] += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The counts added since `earlier` (an older copy of the same running count).
    pub(crate) fn since(&self, earlier: &LevelCounts) -> LevelCounts {
        LevelCounts(std::array::from_fn(|i| self.0[i].saturating_sub(earlier.0[i])))
    }

    /// Each level's share of the total (0 when there is none).
    pub fn shares(&self) -> [f64; 4] {
        let total = self.total().max(1) as f64;
        self.0.map(|c| c as f64 / total)
    }
}

/// `primary 72%, prior 28%`: the levels that occurred, or `none`.
impl fmt::Display for LevelCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for (level, share) in ControllerLevel::ALL.iter().zip(self.shares()) {
            if self.0[level.index()] > 0 {
                let sep = if first { "" } else { ", " };
                write!(f, "{sep}{} {:.0}%", ControllerLevel::NAMES[level.index()], 100.0 * share)?;
                first = false;
            }
        }
        Ok(())
    }
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
    /// A joint measured faster than its velocity limit (`vel_max_radps`) allows, with the margin
    /// of `[safety] overspeed_factor`.
    OverSpeed {
        joint: u8,
        qd_radps: f64,
        limit_radps: f64,
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
    pub(crate) fn same_kind(&self, other: &Fault) -> bool {
        use Fault::*;
        match (self, other) {
            (MotorSilent { joint: a, .. }, MotorSilent { joint: b, .. }) => a == b,
            (MotorMissing { joint: a }, MotorMissing { joint: b }) => a == b,
            (MotorError { joint: a, code: x }, MotorError { joint: b, code: y }) => a == b && x == y,
            (OverSpeed { joint: a, .. }, OverSpeed { joint: b, .. }) => a == b,
            (DepthStale { sensor: a, .. }, DepthStale { sensor: b, .. }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// A joint in words: its configured name, or its index where no name is known.
struct JointName<'a>(u8, &'a [String]);

impl fmt::Display for JointName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1.get(usize::from(self.0)) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A message with the configured joint names at hand, for display: `fault.named(&joint_names)`.
pub struct Named<'a, T> {
    item: &'a T,
    joints: &'a [String],
}

impl Fault {
    /// Displays with joints by name (`joints` in configuration order).
    pub fn named<'a>(&'a self, joints: &'a [String]) -> Named<'a, Fault> {
        Named { item: self, joints }
    }

    /// The fault in words. `figures: false` leaves out the measured values (a cleared fault's
    /// figures are stale).
    fn write(&self, f: &mut fmt::Formatter<'_>, joints: &[String], figures: bool) -> fmt::Result {
        let name = |j: &u8| JointName(*j, joints);
        match self {
            Fault::ImuMissing => f.write_str("IMU: no sample received yet"),
            Fault::ImuStale { age_ms } if figures => write!(f, "IMU stale: last sample {age_ms:.1} ms old"),
            Fault::ImuStale { .. } => f.write_str("IMU stale"),
            Fault::DepthStale { sensor, age_ms } if figures && age_ms.is_finite() => {
                write!(f, "depth sensor {sensor} stale: last frame {age_ms:.1} ms old")
            }
            Fault::DepthStale { sensor, age_ms } if !age_ms.is_finite() => {
                write!(f, "depth sensor {sensor}: no frame received yet")
            }
            Fault::DepthStale { sensor, .. } => write!(f, "depth sensor {sensor} stale"),
            Fault::MotorMissing { joint } => write!(f, "motor of joint {}: no reply received yet", name(joint)),
            Fault::MotorSilent { joint, age_ms } if figures => {
                write!(f, "motor of joint {} silent: last reply {age_ms:.1} ms old", name(joint))
            }
            Fault::MotorSilent { joint, .. } => write!(f, "motor of joint {} silent", name(joint)),
            Fault::MotorError { joint, code } => write!(f, "motor of joint {} reports error {code:#x}", name(joint)),
            Fault::NonFinite { what, joint: Some(j) } => write!(f, "non-finite {what} at joint {}", name(j)),
            Fault::NonFinite { what, joint: None } => write!(f, "non-finite {what}"),
            Fault::OverSpeed { joint, qd_radps, limit_radps } if figures => write!(
                f,
                "joint {} measured at {qd_radps:.1} rad/s, beyond {limit_radps:.1} rad/s (vel_max_radps with the overspeed margin)",
                name(joint)
            ),
            Fault::OverSpeed { joint, .. } => write!(f, "joint {} over speed", name(joint)),
            Fault::Tilt { tilt_deg } if figures => write!(f, "tilt {tilt_deg:.1} deg beyond the limit"),
            Fault::Tilt { .. } => f.write_str("tilt beyond the limit"),
            Fault::DeadlineOverruns { consecutive } if figures => {
                write!(f, "{consecutive} consecutive control cycles overran their deadline")
            }
            Fault::DeadlineOverruns { .. } => f.write_str("consecutive control cycles overran their deadline"),
            Fault::Hardware(h) => write!(f, "hardware: {h}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, &[], true)
    }
}

impl fmt::Display for Named<'_, Fault> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.item.write(f, self.joints, true)
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
        self.write(f, &[])
    }
}

impl Refusal {
    fn write(&self, f: &mut fmt::Formatter<'_>, joints: &[String]) -> fmt::Result {
        match self {
            Refusal::EStopLatched => f.write_str("e-stop is latched: send reset first"),
            Refusal::FaultActive(fault) => write!(f, "a fault is active ({})", fault.named(joints)),
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
        self.write(f, &[])
    }
}

impl Reason {
    fn write(&self, f: &mut fmt::Formatter<'_>, joints: &[String]) -> fmt::Result {
        match self {
            Reason::Requested => f.write_str("requested"),
            Reason::Fault(fault) => write!(f, "fault: {}", fault.named(joints)),
            Reason::FaultPersisted(fault) => {
                write!(f, "fault: {}, for longer than [safety.degrade] allows", fault.named(joints))
            }
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
    /// The policy failed on its latest snapshot (the reason is the policy's).
    PolicyFailed(&'static str),
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
        self.write(f, &[])
    }
}

impl fmt::Display for Named<'_, EventKind> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.item.write(f, self.joints)
    }
}

impl EventKind {
    /// Displays with joints by name (`joints` in configuration order).
    pub fn named<'a>(&'a self, joints: &'a [String]) -> Named<'a, EventKind> {
        Named { item: self, joints }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, joints: &[String]) -> fmt::Result {
        match self {
            EventKind::ModeChanged { from, to, reason } => {
                write!(f, "mode {from:?} -> {to:?} (")?;
                reason.write(f, joints)?;
                f.write_str(")")
            }
            EventKind::Refused { request, mode, refusal } => {
                write!(f, "request {request:?} refused in {mode:?}: ")?;
                refusal.write(f, joints)
            }
            EventKind::FaultRaised(fault) => write!(f, "fault: {}", fault.named(joints)),
            EventKind::FaultCleared(fault) => {
                f.write_str("fault cleared: ")?;
                fault.write(f, joints, false)
            }
            EventKind::FallbackSwitched { from, to, why: FallbackWhy::PolicyFailed(reason) } => {
                write!(f, "controller {from:?} -> {to:?} (policy failed: {reason})")
            }
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
pub(crate) const MAX_OBS: usize = 1024;

/// What a planner reports about one plan (zeros for a single-forward policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannerStats {
    /// Iterations completed within the budget.
    pub iterations: u16,
    /// Trajectories sampled per iteration.
    pub samples: u16,
    /// Best and mean elite return of the last iteration.
    pub best_return: f32,
    pub(crate) mean_elite_return: f32,
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
    /// The policy failed on the snapshot of `t_ns` and this holds no targets: why (e.g. "the
    /// model produced a non-finite action"). The loop keeps its last good action until that is
    /// stale, then falls back naming this reason.
    pub failed: Option<&'static str>,
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
            failed: None,
        }
    }
}

/// A shadow model's step (`[controller] shadow`): computed by the policy thread on the same
/// snapshot and perception as the live action of `t_ns`, after that action was published; logged
/// beside the ticks, never actuated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShadowStep {
    /// Time of the state both models acted on (the live action's `t_ns`).
    pub t_ns: u64,
    pub level: ControllerLevel,
    /// The shadow failed on this snapshot: why (its action is then empty).
    pub failed: Option<&'static str>,
    /// The raw action (first `action_len`, clipped, before scaling), as `PolicyAction::action`.
    pub action_len: u16,
    pub action: [f32; MAX_JOINTS],
    pub planner: PlannerStats,
}

impl Default for ShadowStep {
    fn default() -> Self {
        Self {
            t_ns: 0,
            level: ControllerLevel::Primary,
            failed: None,
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
    /// Walk's ticks so far by the level in charge (status lines show the shares between them).
    pub walk_levels: LevelCounts,
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
            walk_levels: LevelCounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_name_joints_and_a_cleared_fault_drops_its_stale_figures() {
        let names: Vec<String> = ["left_hip", "left_knee"].map(String::from).into();
        let silent = Fault::MotorSilent { joint: 1, age_ms: 12.5 };
        assert_eq!(silent.named(&names).to_string(), "motor of joint left_knee silent: last reply 12.5 ms old");
        assert_eq!(
            EventKind::FaultCleared(silent).named(&names).to_string(),
            "fault cleared: motor of joint left_knee silent"
        );
        let over = Fault::OverSpeed { joint: 0, qd_radps: 31.0, limit_radps: 30.0 };
        let mode = EventKind::ModeChanged { from: Mode::Walk, to: Mode::Passive, reason: Reason::Fault(over) };
        assert!(mode
            .named(&names)
            .to_string()
            .starts_with("mode Walk -> Passive (fault: joint left_hip measured at 31.0 rad/s"));
        let stale = Fault::ImuStale { age_ms: 30.2 };
        assert_eq!(EventKind::FaultCleared(stale).named(&names).to_string(), "fault cleared: IMU stale");
        let refused = EventKind::Refused {
            request: ModeRequest::StandUp,
            mode: Mode::Passive,
            refusal: Refusal::FaultActive(Fault::MotorMissing { joint: 0 }),
        };
        assert!(refused.named(&names).to_string().ends_with("(motor of joint left_hip: no reply received yet)"));
        // Without names (an index beyond them), the index.
        assert_eq!(
            Fault::MotorError { joint: 7, code: 10 }.named(&names).to_string(),
            "motor of joint 7 reports error 0xa"
        );
    }
}
