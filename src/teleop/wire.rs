//! The payloads on locod's zenoh keys, and their decoders: JSON for locod's own keys, CDR for the
//! ROS 2 `geometry_msgs/Twist`. docs/teleop.md is the reference for people; this is the code.
//!
//! Every decoder returns a typed error and never panics; a payload that fails is dropped and
//! counted by the caller, never applied. Not for: sessions, keys or rates (`server`, `client`).

use crate::control::messages::{CommandSource, ControllerLevel, Event, EventKind, Mode, ModeRequest, Snapshot};
use crate::control::TimingSummary;
use crate::io::transport::bus::BusCounts;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a payload was dropped. The `Display` names are the counters' names in `diag`.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// Larger than `[teleop] max_payload_bytes`: not even parsed.
    Oversized { bytes: usize, max: usize },
    /// Not the expected JSON / CDR shape (including unknown fields and mode names).
    Malformed(String),
    /// A NaN or infinite number.
    NonFinite,
    /// A velocity beyond `[command] max_vel`.
    OutOfRange { axis: usize, value: f64, max: f64 },
}

impl DecodeError {
    /// The counter this error increments.
    pub(crate) fn counter(&self) -> RejectReason {
        match self {
            DecodeError::Oversized { .. } => RejectReason::Oversized,
            DecodeError::Malformed(_) => RejectReason::Malformed,
            DecodeError::NonFinite => RejectReason::NonFinite,
            DecodeError::OutOfRange { .. } => RejectReason::OutOfRange,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Oversized { bytes, max } => write!(f, "payload of {bytes} bytes is over the {max}-byte limit"),
            DecodeError::Malformed(why) => write!(f, "malformed: {why}"),
            DecodeError::NonFinite => f.write_str("a value is NaN or infinite"),
            DecodeError::OutOfRange { axis, value, max } => {
                write!(f, "{} = {} is beyond the limit ±{max}", AXES[*axis], Short(*value))
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A rejected number as a reader wants it: short whatever its size (`1e308` is not 309 digits).
struct Short(f64);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.abs() < 1e6 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:.3e}", self.0)
        }
    }
}

/// The longest parser message kept with a rejection; the parser quotes the offending text, which
/// a sender controls.
const MAX_REASON_CHARS: usize = 120;

/// `why` cut to `MAX_REASON_CHARS` characters, marked where it was cut.
fn truncated(mut why: String) -> String {
    if let Some((cut, _)) = why.char_indices().nth(MAX_REASON_CHARS) {
        why.truncate(cut);
        why.push_str("...");
    }
    why
}

const AXES: [&str; 3] = ["vx", "vy", "wz"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RejectReason {
    Oversized,
    Malformed,
    NonFinite,
    OutOfRange,
}

/// `cmd/vel` and `cmd/auto/vel`: body-frame velocity, m/s and rad/s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelCmd {
    pub vx: f64,
    #[serde(default)]
    pub vy: f64,
    #[serde(default)]
    pub wz: f64,
}

impl VelCmd {
    pub fn as_array(&self) -> [f64; 3] {
        [self.vx, self.vy, self.wz]
    }
}

/// `cmd/mode`: a mode request. Reset is not one: only `cmd/estop` releases an e-stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeCmd {
    pub mode: RequestedMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedMode {
    Passive,
    StandUp,
    Walk,
    SitDown,
}

impl From<RequestedMode> for ModeRequest {
    fn from(m: RequestedMode) -> Self {
        match m {
            RequestedMode::Passive => ModeRequest::Passive,
            RequestedMode::StandUp => ModeRequest::StandUp,
            RequestedMode::Walk => ModeRequest::Walk,
            RequestedMode::SitDown => ModeRequest::SitDown,
        }
    }
}

/// `cmd/estop`: latch the e-stop, or release it (EStop → Passive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EstopCmd {
    pub action: EstopAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EstopAction {
    Stop,
    Reset,
}

/// `cmd/reload`: load a model and switch to it (`{}`: the configured model file, read again).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadCmd {
    /// The model file; relative to the daemon's configuration directory when relative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `cmd/controller`: select one of the configured controllers ("default" is `[controller]`,
/// the others `[[controller.choices]]`) and switch to it as a reload does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerCmd {
    pub name: String,
}

fn check_size(payload: &[u8], max: usize) -> Result<(), DecodeError> {
    if payload.len() > max {
        return Err(DecodeError::Oversized { bytes: payload.len(), max });
    }
    Ok(())
}

fn json<'a, T: Deserialize<'a>>(payload: &'a [u8], max: usize) -> Result<T, DecodeError> {
    check_size(payload, max)?;
    serde_json::from_slice(payload).map_err(|e| {
        // serde_json rejects NaN and Infinity literals as syntax; 1e999 overflows to an error too.
        DecodeError::Malformed(truncated(e.to_string()))
    })
}

/// Finite and within `max_vel` on every axis.
pub(crate) fn check_velocity(vel: [f64; 3], max_vel: &[f64; 3]) -> Result<[f64; 3], DecodeError> {
    if vel.iter().any(|v| !v.is_finite()) {
        return Err(DecodeError::NonFinite);
    }
    for (axis, (v, max)) in vel.iter().zip(max_vel).enumerate() {
        if v.abs() > *max {
            return Err(DecodeError::OutOfRange { axis, value: *v, max: *max });
        }
    }
    Ok(vel)
}

pub(crate) fn decode_vel(payload: &[u8], max: usize, max_vel: &[f64; 3]) -> Result<[f64; 3], DecodeError> {
    let v: VelCmd = json(payload, max)?;
    check_velocity(v.as_array(), max_vel)
}

pub(crate) fn decode_mode(payload: &[u8], max: usize) -> Result<ModeRequest, DecodeError> {
    let m: ModeCmd = json(payload, max)?;
    Ok(m.mode.into())
}

pub(crate) fn decode_estop(payload: &[u8], max: usize) -> Result<EstopAction, DecodeError> {
    let e: EstopCmd = json(payload, max)?;
    Ok(e.action)
}

/// The model file a `cmd/reload` names (`None`: the configured one). An empty payload is `{}`.
pub(crate) fn decode_reload(payload: &[u8], max: usize) -> Result<Option<std::path::PathBuf>, DecodeError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let r: ReloadCmd = json(payload, max)?;
    match r.model {
        None => Ok(None),
        Some(m) if m.is_empty() || m.contains('\0') => {
            Err(DecodeError::Malformed("model: expected a file path".into()))
        }
        Some(m) => Ok(Some(m.into())),
    }
}

/// The controller a `cmd/controller` selects (a configured name; the reload thread checks it).
pub(crate) fn decode_controller(payload: &[u8], max: usize) -> Result<String, DecodeError> {
    let c: ControllerCmd = json(payload, max)?;
    let n = c.name.as_str();
    if n.is_empty() || n.len() > 64 || !n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
        return Err(DecodeError::Malformed("name: expected a configured controller's name".into()));
    }
    Ok(c.name)
}

/// Size of a CDR `geometry_msgs/Twist`: the 4-byte encapsulation header and six float64.
pub(crate) const TWIST_CDR_BYTES: usize = 4 + 6 * 8;

/// A ROS 2 `geometry_msgs/Twist` as zenoh-bridge-ros2dds forwards it (CDR, either byte order):
/// `linear.x` → vx, `linear.y` → vy, `angular.z` → yaw rate. Every component must be finite.
pub(crate) fn decode_twist(payload: &[u8], max_vel: &[f64; 3]) -> Result<[f64; 3], DecodeError> {
    if payload.len() != TWIST_CDR_BYTES {
        return Err(DecodeError::Malformed(format!(
            "a CDR geometry_msgs/Twist is {TWIST_CDR_BYTES} bytes, got {}",
            payload.len()
        )));
    }
    let little = match payload[..2] {
        [0x00, 0x01] => true,
        [0x00, 0x00] => false,
        _ => {
            return Err(DecodeError::Malformed(format!(
                "unknown CDR encapsulation {:02x}{:02x}",
                payload[0], payload[1]
            )))
        }
    };
    let mut f = [0.0f64; 6];
    for (i, chunk) in payload[4..].chunks_exact(8).enumerate() {
        let bytes: [u8; 8] = chunk.try_into().unwrap_or_default();
        f[i] = if little { f64::from_le_bytes(bytes) } else { f64::from_be_bytes(bytes) };
    }
    if f.iter().any(|v| !v.is_finite()) {
        return Err(DecodeError::NonFinite);
    }
    check_velocity([f[0], f[1], f[5]], max_vel)
}

/// Encodes a Twist the way a ROS 2 node does (little-endian CDR); for tests and tools.
pub fn encode_twist(linear: [f64; 3], angular: [f64; 3]) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0x00, 0x00];
    for v in linear.iter().chain(&angular) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The loop's timing, as `state` carries it (microseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingMsg {
    pub ticks: u64,
    pub skipped: u64,
    pub(crate) overruns: u64,
    pub(crate) wake_p50_us: f64,
    pub(crate) wake_p99_us: f64,
    pub(crate) wake_max_us: f64,
    pub(crate) compute_p50_us: f64,
    pub(crate) compute_p99_us: f64,
    pub(crate) compute_max_us: f64,
}

impl From<&TimingSummary> for TimingMsg {
    fn from(t: &TimingSummary) -> Self {
        Self {
            ticks: t.ticks,
            skipped: t.skipped,
            overruns: t.overruns,
            wake_p50_us: t.wake.p50_us,
            wake_p99_us: t.wake.p99_us,
            wake_max_us: t.wake.max_us,
            compute_p50_us: t.compute.p50_us,
            compute_p99_us: t.compute.p99_us,
            compute_max_us: t.compute.max_us,
        }
    }
}

/// `state`: the robot at one control tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateMsg {
    pub tick: u64,
    /// The tick's time, monotonic nanoseconds on the robot.
    pub t_ns: u64,
    pub mode: Mode,
    /// The configured walking controller.
    pub controller: String,
    /// Who is in charge now (the fallback level).
    pub level: ControllerLevel,
    pub standing: bool,
    /// The arbitrated velocity command.
    pub command: VelCmd,
    pub source: CommandSource,
    /// The active fault, in words.
    pub fault: Option<String>,
    pub(crate) tilt_deg: f64,
    /// Joint positions in configuration order.
    pub q_rad: Vec<f64>,
    pub timing: TimingMsg,
}

impl StateMsg {
    /// `joints`: the joint names, in configuration order.
    pub fn new(s: &Snapshot, joints: &[String], controller: &str, timing: &TimingSummary) -> Self {
        Self {
            tick: s.tick,
            t_ns: s.state.t_ns,
            mode: s.mode,
            controller: controller.to_string(),
            level: s.level,
            standing: s.standing,
            command: VelCmd { vx: s.command[0], vy: s.command[1], wz: s.command[2] },
            source: s.source,
            fault: s.fault.map(|f| f.named(joints).to_string()),
            tilt_deg: s.state.tilt_rad.to_degrees(),
            q_rad: s.state.joints[..joints.len()].iter().map(|j| j.q_rad).collect(),
            timing: timing.into(),
        }
    }
}

/// One control-loop event in `diag`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMsg {
    pub t_ns: u64,
    /// `mode_changed`, `refused`, `fault_raised`, `fault_cleared`, `fallback_switched`,
    /// `command_rejected`.
    pub kind: String,
    pub text: String,
}

impl EventMsg {
    /// `joints`: the joint names, in configuration order.
    pub fn new(e: &Event, joints: &[String]) -> Self {
        let kind = match e.kind {
            EventKind::ModeChanged { .. } => "mode_changed",
            EventKind::Refused { .. } => "refused",
            EventKind::FaultRaised(_) => "fault_raised",
            EventKind::FaultCleared(_) => "fault_cleared",
            EventKind::FallbackSwitched { .. } => "fallback_switched",
            EventKind::CommandRejected { .. } => "command_rejected",
        };
        Self { t_ns: e.t_ns, kind: kind.into(), text: e.kind.named(joints).to_string() }
    }
}

/// Messages per key that were applied, and rejected by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub accepted: u64,
    pub oversized: u64,
    pub malformed: u64,
    pub non_finite: u64,
    pub out_of_range: u64,
}

impl Counters {
    pub fn rejected(&self) -> u64 {
        self.oversized + self.malformed + self.non_finite + self.out_of_range
    }
}

/// One rejected message, for `diag`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RejectMsg {
    pub key: String,
    pub reason: String,
}

/// `diag`: events since the last `diag`, rejections, and counters since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiagMsg {
    pub seq: u64,
    pub events: Vec<EventMsg>,
    /// Rejections since the last `diag` (at most a few; the counters have them all).
    pub(crate) rejects: Vec<RejectMsg>,
    pub vel: Counters,
    pub auto_vel: Counters,
    pub ros_cmd_vel: Counters,
    pub mode: Counters,
    pub estop: Counters,
    #[serde(default)]
    pub reload: Counters,
    #[serde(default)]
    pub controller: Counters,
    /// Model reloads since the last `diag`: each outcome as the journal wrote it.
    #[serde(default)]
    pub reloads: Vec<ReloadMsg>,
    /// Events the telemetry could not keep (the supervisor still logged them).
    pub(crate) events_dropped: u64,
    /// Per bus: frames and lines the receive side could not use, since start.
    #[serde(default)]
    pub buses: Vec<BusMsg>,
}

/// A model reload's outcome in `diag`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadMsg {
    /// "ready" (loaded and checked), "switched" (acting) or "refused" (the old model acts on).
    pub status: String,
    pub message: String,
}

/// One bus's receive-side counters in `diag`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BusMsg {
    pub bus: String,
    #[serde(flatten)]
    pub counts: BusCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: [f64; 3] = [1.0, 0.5, 1.5];

    #[test]
    fn velocity_commands_decode_and_bad_ones_say_why() {
        assert_eq!(decode_vel(br#"{"vx":0.5,"wz":-1.0}"#, 256, &MAX), Ok([0.5, 0.0, -1.0]));
        assert_eq!(
            decode_vel(br#"{"vx":1.5}"#, 256, &MAX),
            Err(DecodeError::OutOfRange { axis: 0, value: 1.5, max: 1.0 })
        );
        assert_eq!(decode_vel(&[b' '; 300], 256, &MAX), Err(DecodeError::Oversized { bytes: 300, max: 256 }));
        for bad in [&br#"{"vx":NaN}"#[..], br#"{"vx":1e999}"#, br#"{"vx":"fast"}"#, br#"{"vz":0.1}"#, b"\xff", b""] {
            assert_eq!(decode_vel(bad, 256, &MAX).unwrap_err().counter(), RejectReason::Malformed, "{bad:?}");
        }
        assert_eq!(check_velocity([f64::INFINITY, 0.0, 0.0], &MAX), Err(DecodeError::NonFinite));
    }

    #[test]
    fn a_rejected_value_is_not_echoed_in_full() {
        let huge = format!(r#"{{"vx":{}}}"#, "9".repeat(300));
        let e = decode_vel(huge.as_bytes(), 1024, &MAX).unwrap_err();
        assert_eq!(e.to_string(), "vx = 1.000e300 is beyond the limit ±1");
        let long = format!(r#"{{"vx":"{}"}}"#, "x".repeat(500));
        let e = decode_vel(long.as_bytes(), 1024, &MAX).unwrap_err().to_string();
        assert!(e.len() < 200 && e.ends_with("..."), "{e}");
        assert_eq!(decode_vel(br#"{"vx":1.5}"#, 256, &MAX).unwrap_err().to_string(), "vx = 1.5 is beyond the limit ±1");
    }

    #[test]
    fn modes_and_estop_decode_and_reset_is_only_an_estop_action() {
        assert_eq!(decode_mode(br#"{"mode":"stand_up"}"#, 256), Ok(ModeRequest::StandUp));
        assert!(decode_mode(br#"{"mode":"reset"}"#, 256).is_err());
        assert_eq!(decode_estop(br#"{"action":"stop"}"#, 256), Ok(EstopAction::Stop));
        assert_eq!(decode_estop(br#"{"action":"reset"}"#, 256), Ok(EstopAction::Reset));
        assert!(decode_estop(br#"{"action":"stop","extra":1}"#, 256).is_err());
    }

    #[test]
    fn twist_decodes_in_both_byte_orders() {
        let le = encode_twist([0.4, 0.1, 9.0], [9.0, 9.0, -0.7]);
        assert_eq!(le.len(), TWIST_CDR_BYTES);
        assert_eq!(decode_twist(&le, &MAX), Ok([0.4, 0.1, -0.7]));
        let mut be = vec![0x00, 0x00, 0x00, 0x00];
        for v in [0.4f64, 0.1, 0.0, 0.0, 0.0, -0.7] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(decode_twist(&be, &MAX), Ok([0.4, 0.1, -0.7]));
        assert_eq!(decode_twist(&le[..40], &MAX).unwrap_err().counter(), RejectReason::Malformed);
        let nan = encode_twist([0.0; 3], [f64::NAN, 0.0, 0.0]);
        assert_eq!(decode_twist(&nan, &MAX), Err(DecodeError::NonFinite));
        let fast = encode_twist([3.0, 0.0, 0.0], [0.0; 3]);
        assert_eq!(decode_twist(&fast, &MAX).unwrap_err().counter(), RejectReason::OutOfRange);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = decode_vel(&bytes, 64, &MAX);
            let _ = decode_mode(&bytes, 64);
            let _ = decode_estop(&bytes, 64);
            let _ = decode_twist(&bytes, &MAX);
        }
    }
}
