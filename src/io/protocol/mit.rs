//! The MIT-mode motor protocol family: the mini-cheetah firmware's CAN framing, also spoken by CubeMars
//! AK motors and by Damiao DM-J motors in MIT mode. Packs impedance commands, builds the special
//! frames, decodes replies in both forms (mini-cheetah 6 bytes, Damiao 8 bytes), builds Damiao
//! parameter frames, and maps joint space to motor space.
//!
//! Not for: the bus (see `can` and the transports), timing, retries, limits beyond the protocol's
//! own ranges, or deciding what to command. Everything here is pure, allocation-free and total:
//! bad bytes come back as typed errors, never as panics.

use crate::io::transport::can::CanFrame;
pub use crate::types::motor::{MotorModel, MotorRanges, RangesError, ReplyFormat, UnknownMotorModel};
use std::fmt;

/// Bits per field in a command and a reply.
const P_BITS: u32 = 16;
const V_BITS: u32 = 12;
const KP_BITS: u32 = 12;
const KD_BITS: u32 = 12;
const T_BITS: u32 = 12;

/// `(2^bits - 1)` as the firmware computes it, in f32. `bits` above 32 act as 32.
fn max_int(bits: u32) -> f32 {
    ((1u64 << bits.min(32)) - 1) as f32
}

/// Float to an unsigned `bits`-wide field, exactly as the mini-cheetah firmware and its host code do:
/// clamp (`fminf(fmaxf(min, x), max)`, so NaN becomes `min`), then
/// `(int)((x - min) * (2^bits - 1) / (max - min))` in f32.
///
/// The cast truncates, so decoding gives back a value up to one step (`(max - min) / (2^bits - 1)`)
/// *below* the input, never above: a zero torque with ±18 N·m in 12 bits decodes as −4.4 mN·m. The
/// motor does the same, so matching it matters more than rounding nicely. Exact for `bits <= 24`.
pub(crate) fn float_to_uint(x: f32, min: f32, max: f32, bits: u32) -> u32 {
    let x = x.max(min).min(max);
    let top = max_int(bits);
    let scaled = (x - min) * top / (max - min);
    // `as` truncates toward zero like C's cast, saturates, and maps NaN (a zero span) to 0.
    (scaled as u32).min(top as u32)
}

/// Unsigned field back to float, exactly as the firmware: `x * (max - min) / (2^bits - 1) + min`.
pub(crate) fn uint_to_float(x: u32, min: f32, max: f32, bits: u32) -> f32 {
    (x as f32) * (max - min) / max_int(bits) + min
}

/// One impedance command in MIT mode: the motor applies
/// `tau = kp * (q_rad - q) + kd * (qd_radps - qd) + tau_ff_nm`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MitCommand {
    pub q_rad: f32,
    pub qd_radps: f32,
    /// N·m/rad.
    pub kp: f32,
    /// N·m·s/rad.
    pub kd: f32,
    pub tau_ff_nm: f32,
}

/// A packed command frame. `clamped` says some field was outside the motor's range and was sent
/// as the nearest bound instead (or was nudged off a special frame, see [`pack_command`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    pub frame: CanFrame,
    pub clamped: bool,
}

/// Why a frame for a motor could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The CAN id does not fit in 11 bits; MIT-mode motors use standard ids.
    CanIdOutOfRange(u32),
    /// A command field is NaN or infinite; it names the field. Clamping such a value would command
    /// a range bound, so it is refused instead.
    NotFinite(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::CanIdOutOfRange(id) => write!(
                f,
                "motor CAN id {id:#X} is above 0x7FF; MIT-mode motors use 11-bit ids, check can_id in the configuration"
            ),
            CommandError::NotFinite(field) => write!(
                f,
                "motor command field {field} is not a finite number; the command was not sent (a NaN upstream, e.g. in the policy output)"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// The special frames: eight bytes `FF ... FF XX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Special {
    /// Enter motor mode (`... FC`).
    Enable,
    /// Exit motor mode (`... FD`).
    Disable,
    /// Take the current position as zero (`... FE`).
    SetZero,
    /// Clear a latched fault (`... FB`). Damiao firmware only; others ignore or misread it.
    ClearError,
}

impl Special {
    const ALL: [Special; 4] = [Special::Enable, Special::Disable, Special::SetZero, Special::ClearError];

    fn last_byte(self) -> u8 {
        match self {
            Special::Enable => 0xFC,
            Special::Disable => 0xFD,
            Special::SetZero => 0xFE,
            Special::ClearError => 0xFB,
        }
    }

    fn from_data(data: &[u8]) -> Option<Special> {
        let (last, head) = data.split_last()?;
        if data.len() != 8 || head.iter().any(|&b| b != 0xFF) {
            return None;
        }
        Special::ALL.into_iter().find(|s| s.last_byte() == *last)
    }
}

fn standard_frame(can_id: u32, data: &[u8]) -> Result<CanFrame, CommandError> {
    CanFrame::standard(can_id, data).ok_or(CommandError::CanIdOutOfRange(can_id))
}

/// The special frame `kind` for the motor at `can_id`.
pub fn special_frame(can_id: u32, kind: Special) -> Result<CanFrame, CommandError> {
    let mut data = [0xFF; 8];
    data[7] = kind.last_byte();
    standard_frame(can_id, &data)
}

/// Returns `x` clamped to `[lo, hi]`, recording whether it had to be.
fn clamp_noting(x: f32, lo: f32, hi: f32, clamped: &mut bool) -> f32 {
    if x < lo {
        *clamped = true;
        lo
    } else if x > hi {
        *clamped = true;
        hi
    } else {
        x
    }
}

/// Packs a command for the motor at `can_id` (p 16 bits, v/kp/kd/t 12 bits, big-endian, see
/// `spec/protocols.md`). Values outside `ranges` are clamped and reported in [`Packed::clamped`];
/// non-finite values are refused.
///
/// With every field at its maximum, the packed bytes could equal a special frame (`FF..FC` would
/// *enable* the motor). Such a command is sent with kd one step lower, and reported as clamped.
pub fn pack_command(can_id: u32, cmd: &MitCommand, ranges: &MotorRanges) -> Result<Packed, CommandError> {
    let fields = [
        ("q_rad", cmd.q_rad),
        ("qd_radps", cmd.qd_radps),
        ("kp", cmd.kp),
        ("kd", cmd.kd),
        ("tau_ff_nm", cmd.tau_ff_nm),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, v)| !v.is_finite()) {
        return Err(CommandError::NotFinite(name));
    }
    let r = ranges;
    let mut clamped = false;
    let q = clamp_noting(cmd.q_rad, -r.p_max_rad, r.p_max_rad, &mut clamped);
    let qd = clamp_noting(cmd.qd_radps, -r.v_max_radps, r.v_max_radps, &mut clamped);
    let kp = clamp_noting(cmd.kp, 0.0, r.kp_max, &mut clamped);
    let kd = clamp_noting(cmd.kd, 0.0, r.kd_max, &mut clamped);
    let tau = clamp_noting(cmd.tau_ff_nm, -r.t_max_nm, r.t_max_nm, &mut clamped);

    let p = float_to_uint(q, -r.p_max_rad, r.p_max_rad, P_BITS);
    let v = float_to_uint(qd, -r.v_max_radps, r.v_max_radps, V_BITS);
    let kp = float_to_uint(kp, 0.0, r.kp_max, KP_BITS);
    let mut kd = float_to_uint(kd, 0.0, r.kd_max, KD_BITS);
    let t = float_to_uint(tau, -r.t_max_nm, r.t_max_nm, T_BITS);
    let mut data = command_bytes(p, v, kp, kd, t);
    if Special::from_data(&data).is_some() {
        // Only kd = 0xFFF fills byte 5 and the top of byte 6 with ones: one step down breaks the match.
        kd = kd.saturating_sub(1);
        clamped = true;
        data = command_bytes(p, v, kp, kd, t);
    }
    Ok(Packed { frame: standard_frame(can_id, &data)?, clamped })
}

fn command_bytes(p: u32, v: u32, kp: u32, kd: u32, t: u32) -> [u8; 8] {
    [
        (p >> 8) as u8,
        p as u8,
        (v >> 4) as u8,
        (((v & 0xF) << 4) | (kp >> 8)) as u8,
        kp as u8,
        (kd >> 4) as u8,
        (((kd & 0xF) << 4) | (t >> 8)) as u8,
        t as u8,
    ]
}

/// What a frame sent to a motor asks of it: the motor's (or the simulator's) side of
/// [`pack_command`] and [`special_frame`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MotorRequest {
    Command(MitCommand),
    Special(Special),
}

/// Why a frame sent to a motor could not be read as a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    RemoteFrame,
    /// Commands are exactly 8 bytes.
    WrongLength(usize),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::RemoteFrame => {
                f.write_str("a remote frame is not an MIT-mode command; another device shares the id")
            }
            RequestError::WrongLength(len) => {
                write!(f, "MIT-mode command has {len} data bytes, expected 8; another device shares the id")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Reads a frame sent to a motor, as the motor would: special frames first, then a command scaled
/// by `ranges`.
pub fn decode_request(frame: &CanFrame, ranges: &MotorRanges) -> Result<MotorRequest, RequestError> {
    if frame.is_remote() {
        return Err(RequestError::RemoteFrame);
    }
    let d = frame.data();
    if d.len() != 8 {
        return Err(RequestError::WrongLength(d.len()));
    }
    if let Some(s) = Special::from_data(d) {
        return Ok(MotorRequest::Special(s));
    }
    let b = |i: usize| u32::from(d[i]);
    let p = (b(0) << 8) | b(1);
    let v = (b(2) << 4) | (b(3) >> 4);
    let kp = ((b(3) & 0xF) << 8) | b(4);
    let kd = (b(5) << 4) | (b(6) >> 4);
    let t = ((b(6) & 0xF) << 8) | b(7);
    let r = ranges;
    Ok(MotorRequest::Command(MitCommand {
        q_rad: uint_to_float(p, -r.p_max_rad, r.p_max_rad, P_BITS),
        qd_radps: uint_to_float(v, -r.v_max_radps, r.v_max_radps, V_BITS),
        kp: uint_to_float(kp, 0.0, r.kp_max, KP_BITS),
        kd: uint_to_float(kd, 0.0, r.kd_max, KD_BITS),
        tau_ff_nm: uint_to_float(t, -r.t_max_nm, r.t_max_nm, T_BITS),
    }))
}

/// A fault a Damiao motor reports in the high nibble of reply byte 0. Codes 0 (disabled) and
/// 1 (enabled) are states, not faults, and appear as [`MotorReply::enabled`] instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MotorError {
    /// Code 8.
    OverVoltage,
    /// Code 9.
    UnderVoltage,
    /// Code 0xA.
    OverCurrent,
    /// Code 0xB.
    MosfetOverTemperature,
    /// Code 0xC.
    RotorOverTemperature,
    /// Code 0xD: the motor's CAN timeout expired without a command.
    CommunicationLost,
    /// Code 0xE.
    Overload,
    /// Any other code (2..7, 0xF): not documented.
    Unknown(u8),
}

impl MotorError {
    /// The Damiao state code; `None` for 0 and 1, which are states.
    pub(crate) fn from_damiao_code(code: u8) -> Option<MotorError> {
        Some(match code & 0xF {
            0 | 1 => return None,
            0x8 => MotorError::OverVoltage,
            0x9 => MotorError::UnderVoltage,
            0xA => MotorError::OverCurrent,
            0xB => MotorError::MosfetOverTemperature,
            0xC => MotorError::RotorOverTemperature,
            0xD => MotorError::CommunicationLost,
            0xE => MotorError::Overload,
            other => MotorError::Unknown(other),
        })
    }

    pub(crate) fn damiao_code(self) -> u8 {
        match self {
            MotorError::OverVoltage => 0x8,
            MotorError::UnderVoltage => 0x9,
            MotorError::OverCurrent => 0xA,
            MotorError::MosfetOverTemperature => 0xB,
            MotorError::RotorOverTemperature => 0xC,
            MotorError::CommunicationLost => 0xD,
            MotorError::Overload => 0xE,
            MotorError::Unknown(code) => code & 0xF,
        }
    }
}

impl fmt::Display for MotorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.damiao_code();
        match self {
            MotorError::OverVoltage => write!(
                f,
                "motor over-voltage (code {code:X}): check the supply, and regenerated energy when braking"
            ),
            MotorError::UnderVoltage => {
                write!(f, "motor under-voltage (code {code:X}): check the supply and its wiring")
            }
            MotorError::OverCurrent => write!(
                f,
                "motor over-current (code {code:X}): gains or torque too high, or a short circuit"
            ),
            MotorError::MosfetOverTemperature => {
                write!(f, "motor driver MOSFET over-temperature (code {code:X}): let it cool, reduce load")
            }
            MotorError::RotorOverTemperature => {
                write!(f, "motor rotor over-temperature (code {code:X}): let it cool, reduce load")
            }
            MotorError::CommunicationLost => write!(
                f,
                "motor lost communication (code {code:X}): no command within its CAN timeout; check the bus and the loop rate"
            ),
            MotorError::Overload => {
                write!(f, "motor overload (code {code:X}): sustained torque above rating")
            }
            MotorError::Unknown(_) => write!(f, "motor reported undocumented state code {code:X}"),
        }
    }
}

impl std::error::Error for MotorError {}

/// One motor reply, scaled to SI units in motor space (see [`JointMap`] for joint space).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotorReply {
    /// From byte 0 (all 8 bits for mini-cheetah, the low 4 bits for Damiao).
    pub(crate) motor_id: u8,
    pub q_rad: f32,
    pub qd_radps: f32,
    pub(crate) tau_nm: f32,
    /// Damiao only.
    pub(crate) temp_mosfet_c: Option<f32>,
    /// Damiao only.
    pub(crate) temp_rotor_c: Option<f32>,
    /// Damiao only: `Some` when the state code is 0 (disabled) or 1 (enabled).
    pub enabled: Option<bool>,
    /// Damiao only: a fault code (anything but 0 and 1).
    pub error: Option<MotorError>,
}

/// Why a frame could not be read as a motor reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    RemoteFrame,
    WrongLength {
        format: ReplyFormat,
        len: usize,
    },
    /// The id in byte 0 is not a motor this bus is configured with.
    UnknownMotor(u8),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::RemoteFrame => f.write_str(
                "a remote frame arrived on a motor reply id; another device shares the id",
            ),
            ReplyError::WrongLength { format, len } => {
                let expected = match format {
                    ReplyFormat::MiniCheetah => "6 or 8",
                    ReplyFormat::Damiao => "8",
                };
                write!(
                    f,
                    "{format:?} motor reply has {len} data bytes, expected {expected}; check the motor model in the configuration"
                )
            }
            ReplyError::UnknownMotor(id) => write!(
                f,
                "reply from motor id {id}, which is not configured on this bus; check can_id (and master_id) in the configuration"
            ),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Decodes a reply. The frame's CAN id is not checked: route by id first (mini-cheetah replies come
/// from the firmware's master id, Damiao ones from the configured master id). `ranges_for` gives the
/// ranges of the motor whose id is in byte 0, or `None` if no such motor is configured.
pub fn decode_reply(
    frame: &CanFrame,
    format: ReplyFormat,
    mut ranges_for: impl FnMut(u8) -> Option<MotorRanges>,
) -> Result<MotorReply, ReplyError> {
    if frame.is_remote() {
        return Err(ReplyError::RemoteFrame);
    }
    let d = frame.data();
    let len_ok = match format {
        ReplyFormat::MiniCheetah => d.len() == 6 || d.len() == 8,
        ReplyFormat::Damiao => d.len() == 8,
    };
    if !len_ok {
        return Err(ReplyError::WrongLength { format, len: d.len() });
    }
    let motor_id = match format {
        ReplyFormat::MiniCheetah => d[0],
        ReplyFormat::Damiao => d[0] & 0xF,
    };
    let r = ranges_for(motor_id).ok_or(ReplyError::UnknownMotor(motor_id))?;
    let b = |i: usize| u32::from(d[i]);
    let p = (b(1) << 8) | b(2);
    let v = (b(3) << 4) | (b(4) >> 4);
    let t = ((b(4) & 0xF) << 8) | b(5);
    let mut reply = MotorReply {
        motor_id,
        q_rad: uint_to_float(p, -r.p_max_rad, r.p_max_rad, P_BITS),
        qd_radps: uint_to_float(v, -r.v_max_radps, r.v_max_radps, V_BITS),
        tau_nm: uint_to_float(t, -r.t_max_nm, r.t_max_nm, T_BITS),
        temp_mosfet_c: None,
        temp_rotor_c: None,
        enabled: None,
        error: None,
    };
    if format == ReplyFormat::Damiao {
        let code = d[0] >> 4;
        reply.enabled = match code {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        reply.error = MotorError::from_damiao_code(code);
        reply.temp_mosfet_c = Some(f32::from(d[6]));
        reply.temp_rotor_c = Some(f32::from(d[7]));
    }
    Ok(reply)
}

/// Encodes a reply as a motor would send it from `can_id` (the simulator's side of
/// [`decode_reply`]). Values are clamped to `ranges`; Damiao's motor id keeps its low 4 bits,
/// temperatures are rounded and clamped to 0..=255 °C (absent ones sent as 0), and the state code
/// comes from `error`, else `enabled` (absent means disabled).
pub fn encode_reply(
    can_id: u32,
    reply: &MotorReply,
    format: ReplyFormat,
    ranges: &MotorRanges,
) -> Result<CanFrame, CommandError> {
    let r = ranges;
    let p = float_to_uint(reply.q_rad, -r.p_max_rad, r.p_max_rad, P_BITS);
    let v = float_to_uint(reply.qd_radps, -r.v_max_radps, r.v_max_radps, V_BITS);
    let t = float_to_uint(reply.tau_nm, -r.t_max_nm, r.t_max_nm, T_BITS);
    let mut data =
        [reply.motor_id, (p >> 8) as u8, p as u8, (v >> 4) as u8, (((v & 0xF) << 4) | (t >> 8)) as u8, t as u8, 0, 0];
    match format {
        ReplyFormat::MiniCheetah => standard_frame(can_id, &data[..6]),
        ReplyFormat::Damiao => {
            let code = match (reply.error, reply.enabled) {
                (Some(e), _) => e.damiao_code(),
                (None, Some(true)) => 1,
                (None, _) => 0,
            };
            // `as u8` saturates (and maps NaN to 0), which is the clamp wanted here.
            let temp = |c: Option<f32>| c.map_or(0, |c| c.round() as u8);
            data[0] = (code << 4) | (reply.motor_id & 0xF);
            data[6] = temp(reply.temp_mosfet_c);
            data[7] = temp(reply.temp_rotor_c);
            standard_frame(can_id, &data)
        }
    }
}

/// Damiao parameter frames all go to this id.
pub(crate) const DAMIAO_PARAM_CAN_ID: u32 = 0x7FF;

/// The operation byte of a Damiao parameter frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamOp {
    /// `0xCC`: ask for a status reply (answered by an ordinary MIT-mode reply).
    Refresh,
    /// `0x33`: read a register.
    Read,
    /// `0x55`: write a register (RAM only; Damiao's separate save-to-flash op is not built here).
    Write,
}

impl ParamOp {
    pub fn byte(self) -> u8 {
        match self {
            ParamOp::Refresh => 0xCC,
            ParamOp::Read => 0x33,
            ParamOp::Write => 0x55,
        }
    }
}

/// A Damiao parameter frame to [`DAMIAO_PARAM_CAN_ID`]:
/// `[id_lo, id_hi, op, register, value (4 bytes, little-endian)]`. Register values are u32 or f32
/// depending on the register (see Damiao's register table); pass their little-endian bytes.
pub(crate) fn damiao_param_frame(motor_id: u16, op: ParamOp, register: u8, value: [u8; 4]) -> CanFrame {
    let [id_lo, id_hi] = motor_id.to_le_bytes();
    let [v0, v1, v2, v3] = value;
    let data = [id_lo, id_hi, op.byte(), register, v0, v1, v2, v3];
    match CanFrame::standard(DAMIAO_PARAM_CAN_ID, &data) {
        Some(frame) => frame,
        // 0x7FF is the largest standard id and the payload is 8 bytes: both always in range.
        None => unreachable!("0x7FF with 8 bytes is a valid standard frame"),
    }
}

pub fn damiao_refresh(motor_id: u16) -> CanFrame {
    damiao_param_frame(motor_id, ParamOp::Refresh, 0, [0; 4])
}

pub fn damiao_read(motor_id: u16, register: u8) -> CanFrame {
    damiao_param_frame(motor_id, ParamOp::Read, register, [0; 4])
}

pub fn damiao_write_u32(motor_id: u16, register: u8, value: u32) -> CanFrame {
    damiao_param_frame(motor_id, ParamOp::Write, register, value.to_le_bytes())
}

pub fn damiao_write_f32(motor_id: u16, register: u8, value: f32) -> CanFrame {
    damiao_param_frame(motor_id, ParamOp::Write, register, value.to_le_bytes())
}

/// A Damiao motor's answer to a read or write: the register's value after the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamReply {
    pub(crate) motor_id: u16,
    /// [`ParamOp::Read`] or [`ParamOp::Write`].
    pub op: ParamOp,
    pub(crate) register: u8,
    /// Little-endian; read it with [`ParamReply::as_u32`] or [`ParamReply::as_f32`] as the register's
    /// type says.
    pub value: [u8; 4],
}

impl ParamReply {
    pub fn as_u32(&self) -> u32 {
        u32::from_le_bytes(self.value)
    }

    pub fn as_f32(&self) -> f32 {
        f32::from_le_bytes(self.value)
    }
}

/// Why a frame could not be read as a Damiao parameter reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamReplyError {
    RemoteFrame,
    WrongLength(usize),
    /// Byte 2 is neither 0x33 (read) nor 0x55 (write): most likely an ordinary status reply.
    NotAParamReply(u8),
}

impl fmt::Display for ParamReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamReplyError::RemoteFrame => f.write_str("a remote frame is not a Damiao parameter reply"),
            ParamReplyError::WrongLength(len) => {
                write!(f, "Damiao parameter reply has {len} data bytes, expected 8")
            }
            ParamReplyError::NotAParamReply(op) => write!(
                f,
                "frame has op byte {op:#04X}, not 0x33 (read) or 0x55 (write): not a parameter reply (a status reply from the same master id?)"
            ),
        }
    }
}

impl std::error::Error for ParamReplyError {}

/// Reads a reply to [`damiao_read`] or a write. These come from the master id, like status
/// replies, and a status reply can happen to have 0x33 or 0x55 in byte 2: only call this while a
/// read or write is outstanding, and check `motor_id` and `register` against it.
pub fn parse_damiao_param_reply(frame: &CanFrame) -> Result<ParamReply, ParamReplyError> {
    if frame.is_remote() {
        return Err(ParamReplyError::RemoteFrame);
    }
    let d = frame.data();
    let &[id_lo, id_hi, op, register, v0, v1, v2, v3] = d else {
        return Err(ParamReplyError::WrongLength(d.len()));
    };
    let op = match op {
        0x33 => ParamOp::Read,
        0x55 => ParamOp::Write,
        other => return Err(ParamReplyError::NotAParamReply(other)),
    };
    Ok(ParamReply { motor_id: u16::from_le_bytes([id_lo, id_hi]), op, register, value: [v0, v1, v2, v3] })
}

/// Position, velocity and torque of one axis, in joint space or motor space (the [`JointMap`]
/// method that produced it says which).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JointState {
    pub q_rad: f32,
    pub qd_radps: f32,
    pub(crate) tau_nm: f32,
}

/// How a joint relates to its motor's output shaft, through an ideal (lossless) transmission:
///
/// - position: `q_motor = direction · gear_ratio · (q_joint − offset_rad)`, so `offset_rad` is the
///   joint angle at which the motor reads zero;
/// - velocity: `qd_motor = direction · gear_ratio · qd_joint`;
/// - torque: `tau_motor = direction · tau_joint / gear_ratio`;
/// - gains: the joint torque is `direction · gear_ratio · tau_motor`, and
///   `tau_motor = kp_motor · Δq_motor = kp_motor · direction · gear_ratio · Δq_joint`, so
///   `kp_joint = gear_ratio² · kp_motor` (direction² = 1); likewise for kd. Hence
///   `kp_motor = kp_joint / gear_ratio²`.
///
/// `gear_ratio` is a reduction *after* the motor's output shaft (a belt, a linkage); the MIT-mode
/// motors already report their own output shaft, so it is 1 for a directly driven joint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JointMap {
    direction: f32,
    offset_rad: f32,
    gear_ratio: f32,
}

/// A [`JointMap`] parameter out of range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JointMapError {
    /// Direction must be +1 or −1.
    Direction(i8),
    /// Offset must be finite.
    Offset(f32),
    /// Gear ratio must be finite and above zero (use `direction` to reverse).
    GearRatio(f32),
}

impl fmt::Display for JointMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JointMapError::Direction(d) => write!(f, "joint direction is {d}, must be 1 or -1"),
            JointMapError::Offset(o) => write!(f, "joint offset is {o} rad, must be a finite number"),
            JointMapError::GearRatio(g) => {
                write!(f, "joint gear ratio is {g}, must be a finite number above zero (reverse with direction = -1)")
            }
        }
    }
}

impl std::error::Error for JointMapError {}

impl JointMap {
    /// Joint and motor are the same axis.
    pub const IDENTITY: JointMap = JointMap { direction: 1.0, offset_rad: 0.0, gear_ratio: 1.0 };

    pub fn new(direction: i8, offset_rad: f32, gear_ratio: f32) -> Result<Self, JointMapError> {
        let direction = match direction {
            1 => 1.0,
            -1 => -1.0,
            other => return Err(JointMapError::Direction(other)),
        };
        if !offset_rad.is_finite() {
            return Err(JointMapError::Offset(offset_rad));
        }
        if !(gear_ratio.is_finite() && gear_ratio > 0.0) {
            return Err(JointMapError::GearRatio(gear_ratio));
        }
        Ok(Self { direction, offset_rad, gear_ratio })
    }

    pub fn direction(&self) -> i8 {
        if self.direction > 0.0 {
            1
        } else {
            -1
        }
    }

    pub fn offset_rad(&self) -> f32 {
        self.offset_rad
    }

    pub fn gear_ratio(&self) -> f32 {
        self.gear_ratio
    }

    /// A joint-space command as the motor must be commanded.
    pub fn command_to_motor(&self, joint: &MitCommand) -> MitCommand {
        let (s, n) = (self.direction, self.gear_ratio);
        MitCommand {
            q_rad: s * n * (joint.q_rad - self.offset_rad),
            qd_radps: s * n * joint.qd_radps,
            kp: joint.kp / (n * n),
            kd: joint.kd / (n * n),
            tau_ff_nm: s * joint.tau_ff_nm / n,
        }
    }

    /// A motor-space command in joint space (the inverse of [`JointMap::command_to_motor`]).
    pub fn command_to_joint(&self, motor: &MitCommand) -> MitCommand {
        let (s, n) = (self.direction, self.gear_ratio);
        MitCommand {
            q_rad: s * motor.q_rad / n + self.offset_rad,
            qd_radps: s * motor.qd_radps / n,
            kp: motor.kp * n * n,
            kd: motor.kd * n * n,
            tau_ff_nm: s * n * motor.tau_ff_nm,
        }
    }

    /// A motor-space state in joint space.
    pub(crate) fn state_to_joint(&self, motor: &JointState) -> JointState {
        let (s, n) = (self.direction, self.gear_ratio);
        JointState {
            q_rad: s * motor.q_rad / n + self.offset_rad,
            qd_radps: s * motor.qd_radps / n,
            tau_nm: s * n * motor.tau_nm,
        }
    }

    /// A joint-space state in motor space (the inverse of [`JointMap::state_to_joint`]).
    pub(crate) fn state_to_motor(&self, joint: &JointState) -> JointState {
        let (s, n) = (self.direction, self.gear_ratio);
        JointState {
            q_rad: s * n * (joint.q_rad - self.offset_rad),
            qd_radps: s * n * joint.qd_radps,
            tau_nm: s * joint.tau_nm / n,
        }
    }

    /// A motor's reply as the joint's state.
    pub fn reply_to_joint(&self, reply: &MotorReply) -> JointState {
        self.state_to_joint(&JointState { q_rad: reply.q_rad, qd_radps: reply.qd_radps, tau_nm: reply.tau_nm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Case count for the long "fuzz" property tests: `LOCOD_FUZZ_CASES=1000000 cargo test --release fuzz`.
    fn fuzz_cases() -> u32 {
        std::env::var("LOCOD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    }

    fn cheetah() -> MotorRanges {
        MotorModel::MiniCheetah.ranges()
    }

    fn only(id: u8, ranges: MotorRanges) -> impl FnMut(u8) -> Option<MotorRanges> {
        move |i| (i == id).then_some(ranges)
    }

    #[test]
    fn model_table_matches_the_spec() {
        let r = MotorModel::Ak60_6.ranges();
        assert_eq!((r.p_max_rad, r.v_max_radps, r.t_max_nm), (12.5, 45.0, 15.0));
        let r = MotorModel::Ak80_9.ranges();
        assert_eq!((r.v_max_radps, r.t_max_nm), (50.0, 18.0));
        let r = MotorModel::MiniCheetah.ranges();
        assert_eq!((r.v_max_radps, r.t_max_nm, r.kp_max, r.kd_max), (65.0, 18.0, 500.0, 5.0));
        let r = MotorModel::DmJ4310.ranges();
        assert_eq!((r.v_max_radps, r.t_max_nm), (30.0, 10.0));
        for m in MotorModel::ALL {
            assert_eq!(m.ranges().validate(), Ok(()));
        }
        assert_eq!(MotorModel::DmJ4310.reply_format(), ReplyFormat::Damiao);
        assert_eq!(MotorModel::Ak80_9.reply_format(), ReplyFormat::MiniCheetah);
    }

    #[test]
    fn model_names_parse_and_unknown_names_list_the_valid_ones() {
        for m in MotorModel::ALL {
            assert_eq!(m.name().parse::<MotorModel>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        let err = "ak10_9".parse::<MotorModel>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown motor model \"ak10_9\"; valid names are mini_cheetah, ak60_6, ak80_9, dm_j4310"
        );
    }

    #[test]
    fn invalid_ranges_name_the_field() {
        let mut r = cheetah();
        r.kd_max = 0.0;
        assert_eq!(r.validate(), Err(RangesError { field: "kd_max", value: 0.0 }));
        r.kd_max = f32::NAN;
        assert!(r.validate().unwrap_err().to_string().contains("kd_max"));
    }

    #[test]
    fn float_to_uint_truncates_like_the_firmware() {
        assert_eq!(float_to_uint(0.0, -12.5, 12.5, 16), 32767); // 32767.5 truncated
        assert_eq!(float_to_uint(12.5, -12.5, 12.5, 16), 65535);
        assert_eq!(float_to_uint(-12.5, -12.5, 12.5, 16), 0);
        assert_eq!(float_to_uint(99.0, -12.5, 12.5, 16), 65535);
        assert_eq!(float_to_uint(-99.0, -12.5, 12.5, 16), 0);
        assert_eq!(float_to_uint(f32::NAN, -12.5, 12.5, 16), 0);
        assert_eq!(float_to_uint(0.0, -18.0, 18.0, 12), 2047); // 2047.5 truncated
        assert_eq!(float_to_uint(1.0, 0.0, 5.0, 12), 819);
        // Degenerate ranges and widths stay total.
        assert_eq!(float_to_uint(1.0, 0.0, 0.0, 12), 0);
        assert_eq!(float_to_uint(1.0, 0.0, 1.0, 0), 0);
        assert_eq!(float_to_uint(1.0, 0.0, 1.0, 99), u32::MAX);
        assert_eq!(uint_to_float(65535, -12.5, 12.5, 16), 12.5);
        assert_eq!(uint_to_float(0, -12.5, 12.5, 16), -12.5);
        assert_eq!(uint_to_float(819, 0.0, 5.0, 12), 1.0);
    }

    #[test]
    fn packs_a_hand_computed_command() {
        // p = (1 + 12.5) * 65535 / 25 = 35388.9 -> 35388 = 0x8A3C
        // v = (-2 + 65) * 4095 / 130 = 1984.5 -> 1984 = 0x7C0
        // kp = 50 * 4095 / 500 = 409.5 -> 409 = 0x199
        // kd = 1 * 4095 / 5 = 819 = 0x333
        // t = (3 + 18) * 4095 / 36 = 2388.75 -> 2388 = 0x954
        let cmd = MitCommand { q_rad: 1.0, qd_radps: -2.0, kp: 50.0, kd: 1.0, tau_ff_nm: 3.0 };
        let packed = pack_command(0x01, &cmd, &cheetah()).unwrap();
        assert!(!packed.clamped);
        assert_eq!(packed.frame.id(), 0x01);
        assert!(!packed.frame.is_extended());
        assert_eq!(packed.frame.data(), &[0x8A, 0x3C, 0x7C, 0x01, 0x99, 0x33, 0x39, 0x54]);

        let zero = pack_command(0x01, &MitCommand::default(), &cheetah()).unwrap();
        assert_eq!(zero.frame.data(), &[0x7F, 0xFF, 0x7F, 0xF0, 0x00, 0x00, 0x07, 0xFF]);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_reported() {
        let r = cheetah();
        let cmd = MitCommand { q_rad: 20.0, qd_radps: 0.0, kp: -1.0, kd: 0.0, tau_ff_nm: 0.0 };
        let packed = pack_command(3, &cmd, &r).unwrap();
        assert!(packed.clamped);
        let MotorRequest::Command(back) = decode_request(&packed.frame, &r).unwrap() else {
            panic!("expected a command");
        };
        assert_eq!(back.q_rad, 12.5);
        assert_eq!(back.kp, 0.0);
    }

    #[test]
    fn non_finite_commands_and_bad_ids_are_refused() {
        let r = cheetah();
        let cmd = MitCommand { tau_ff_nm: f32::NAN, ..MitCommand::default() };
        assert_eq!(pack_command(1, &cmd, &r), Err(CommandError::NotFinite("tau_ff_nm")));
        let cmd = MitCommand { q_rad: f32::INFINITY, ..MitCommand::default() };
        assert_eq!(pack_command(1, &cmd, &r), Err(CommandError::NotFinite("q_rad")));
        assert_eq!(pack_command(0x800, &MitCommand::default(), &r), Err(CommandError::CanIdOutOfRange(0x800)));
        assert_eq!(special_frame(0x800, Special::Enable), Err(CommandError::CanIdOutOfRange(0x800)));
    }

    #[test]
    fn special_frames_match_the_spec() {
        let tail = |s| special_frame(1, s).unwrap().data()[7];
        assert_eq!(
            special_frame(1, Special::Enable).unwrap().data(),
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC]
        );
        assert_eq!(tail(Special::Disable), 0xFD);
        assert_eq!(tail(Special::SetZero), 0xFE);
        assert_eq!(tail(Special::ClearError), 0xFB);
        for s in Special::ALL {
            let f = special_frame(7, s).unwrap();
            assert_eq!(decode_request(&f, &cheetah()), Ok(MotorRequest::Special(s)));
        }
    }

    #[test]
    fn an_all_maximum_command_never_reads_as_a_special_frame() {
        for model in MotorModel::ALL {
            let r = model.ranges();
            for tau in [r.t_max_nm, r.t_max_nm - 0.01, r.t_max_nm - 0.02, r.t_max_nm - 0.03] {
                let cmd = MitCommand {
                    q_rad: r.p_max_rad,
                    qd_radps: r.v_max_radps,
                    kp: r.kp_max,
                    kd: r.kd_max,
                    tau_ff_nm: tau,
                };
                let packed = pack_command(1, &cmd, &r).unwrap();
                assert!(matches!(decode_request(&packed.frame, &r), Ok(MotorRequest::Command(_))));
            }
        }
    }

    #[test]
    fn decodes_a_mini_cheetah_reply() {
        // id 5, p = 0x8A3C, v = 0x7C0, t = 0x954 (the fields of the hand-computed command).
        let f = CanFrame::standard(0, &[0x05, 0x8A, 0x3C, 0x7C, 0x09, 0x54]).unwrap();
        let r = decode_reply(&f, ReplyFormat::MiniCheetah, only(5, cheetah())).unwrap();
        assert_eq!(r.motor_id, 5);
        assert!((r.q_rad - 1.0).abs() < 25.0 / 65535.0);
        assert!((r.qd_radps + 2.0).abs() < 130.0 / 4095.0);
        assert!((r.tau_nm - 3.0).abs() < 36.0 / 4095.0);
        assert_eq!((r.temp_mosfet_c, r.temp_rotor_c, r.enabled, r.error), (None, None, None, None));
        // CubeMars firmware that appends two bytes is accepted.
        let f8 = CanFrame::standard(0, &[0x05, 0x8A, 0x3C, 0x7C, 0x09, 0x54, 40, 0]).unwrap();
        assert_eq!(decode_reply(&f8, ReplyFormat::MiniCheetah, only(5, cheetah())), Ok(r));
    }

    #[test]
    fn decodes_a_damiao_reply_with_state_and_temperatures() {
        let dm = MotorModel::DmJ4310.ranges();
        let f = CanFrame::standard(0x11, &[0x12, 0xFF, 0xFF, 0x00, 0x0F, 0xFF, 41, 57]).unwrap();
        let r = decode_reply(&f, ReplyFormat::Damiao, only(2, dm)).unwrap();
        assert_eq!(r.motor_id, 2);
        assert_eq!((r.q_rad, r.qd_radps, r.tau_nm), (12.5, -30.0, 10.0));
        assert_eq!((r.temp_mosfet_c, r.temp_rotor_c), (Some(41.0), Some(57.0)));
        assert_eq!((r.enabled, r.error), (Some(true), None));

        let f = CanFrame::standard(0x11, &[0xB2, 0, 0, 0, 0, 0, 120, 60]).unwrap();
        let r = decode_reply(&f, ReplyFormat::Damiao, only(2, dm)).unwrap();
        assert_eq!((r.enabled, r.error), (None, Some(MotorError::MosfetOverTemperature)));
    }

    #[test]
    fn damiao_codes_are_documented_states_and_faults() {
        assert_eq!(MotorError::from_damiao_code(0), None);
        assert_eq!(MotorError::from_damiao_code(1), None);
        let table = [
            (0x8, MotorError::OverVoltage),
            (0x9, MotorError::UnderVoltage),
            (0xA, MotorError::OverCurrent),
            (0xB, MotorError::MosfetOverTemperature),
            (0xC, MotorError::RotorOverTemperature),
            (0xD, MotorError::CommunicationLost),
            (0xE, MotorError::Overload),
            (0x3, MotorError::Unknown(3)),
            (0xF, MotorError::Unknown(0xF)),
        ];
        for (code, e) in table {
            assert_eq!(MotorError::from_damiao_code(code), Some(e));
            assert_eq!(e.damiao_code(), code);
        }
        assert!(MotorError::CommunicationLost.to_string().contains("code D"));
    }

    #[test]
    fn bad_replies_are_typed_errors() {
        let r = cheetah();
        let short = CanFrame::standard(0, &[1, 2, 3]).unwrap();
        assert_eq!(
            decode_reply(&short, ReplyFormat::MiniCheetah, only(1, r)),
            Err(ReplyError::WrongLength { format: ReplyFormat::MiniCheetah, len: 3 })
        );
        let six = CanFrame::standard(0, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(
            decode_reply(&six, ReplyFormat::Damiao, only(1, r)),
            Err(ReplyError::WrongLength { format: ReplyFormat::Damiao, len: 6 })
        );
        assert_eq!(decode_reply(&six, ReplyFormat::MiniCheetah, only(9, r)), Err(ReplyError::UnknownMotor(1)));
        let remote = CanFrame::remote(0, false, 6).unwrap();
        assert_eq!(decode_reply(&remote, ReplyFormat::MiniCheetah, only(1, r)), Err(ReplyError::RemoteFrame));
        assert_eq!(decode_request(&remote, &r), Err(RequestError::RemoteFrame));
        assert_eq!(decode_request(&six, &r), Err(RequestError::WrongLength(6)));
    }

    #[test]
    fn damiao_parameter_frames_match_the_spec() {
        let f = damiao_read(0x101, 0x0A);
        assert_eq!(f.id(), 0x7FF);
        assert_eq!(f.data(), &[0x01, 0x01, 0x33, 0x0A, 0, 0, 0, 0]);
        assert_eq!(damiao_refresh(3).data(), &[0x03, 0x00, 0xCC, 0x00, 0, 0, 0, 0]);
        assert_eq!(damiao_write_f32(3, 0x15, 1.0).data(), &[3, 0, 0x55, 0x15, 0x00, 0x00, 0x80, 0x3F]);
        assert_eq!(damiao_write_u32(3, 0x09, 0x1234).data(), &[3, 0, 0x55, 0x09, 0x34, 0x12, 0, 0]);

        let reply = CanFrame::standard(0x11, &[3, 0, 0x33, 0x15, 0x00, 0x00, 0x80, 0x3F]).unwrap();
        let p = parse_damiao_param_reply(&reply).unwrap();
        assert_eq!((p.motor_id, p.op, p.register, p.as_f32()), (3, ParamOp::Read, 0x15, 1.0));
        let status = CanFrame::standard(0x11, &[0x13, 0x80, 0x00, 0x80, 0x07, 0xFF, 30, 30]).unwrap();
        assert_eq!(parse_damiao_param_reply(&status), Err(ParamReplyError::NotAParamReply(0)));
        let short = CanFrame::standard(0x11, &[3, 0, 0x33]).unwrap();
        assert_eq!(parse_damiao_param_reply(&short), Err(ParamReplyError::WrongLength(3)));
    }

    #[test]
    fn gains_scale_by_the_square_of_the_gear_ratio() {
        let map = JointMap::new(-1, 0.5, 2.0).unwrap();
        let joint = MitCommand { q_rad: 1.5, qd_radps: 1.0, kp: 40.0, kd: 2.0, tau_ff_nm: 4.0 };
        let motor = map.command_to_motor(&joint);
        assert_eq!(motor, MitCommand { q_rad: -2.0, qd_radps: -2.0, kp: 10.0, kd: 0.5, tau_ff_nm: -2.0 });
        // The motor's impedance torque, mapped to the joint, equals the joint-space law.
        let (q_j, qd_j) = (1.0, 0.0);
        let m = map.state_to_motor(&JointState { q_rad: q_j, qd_radps: qd_j, tau_nm: 0.0 });
        let tau_m = motor.kp * (motor.q_rad - m.q_rad) + motor.kd * (motor.qd_radps - m.qd_radps) + motor.tau_ff_nm;
        let tau_j = map.state_to_joint(&JointState { tau_nm: tau_m, ..m }).tau_nm;
        let expected = joint.kp * (joint.q_rad - q_j) + joint.kd * (joint.qd_radps - qd_j) + joint.tau_ff_nm;
        assert!((tau_j - expected).abs() < 1e-4, "{tau_j} vs {expected}");
        assert_eq!(map.command_to_joint(&motor), joint);
    }

    #[test]
    fn bad_joint_maps_are_refused() {
        assert_eq!(JointMap::new(0, 0.0, 1.0), Err(JointMapError::Direction(0)));
        assert_eq!(JointMap::new(1, 0.0, -2.0), Err(JointMapError::GearRatio(-2.0)));
        assert!(matches!(JointMap::new(1, f32::NAN, 1.0), Err(JointMapError::Offset(_))));
        assert_eq!(JointMap::new(1, 0.0, 1.0), Ok(JointMap::IDENTITY));
        assert_eq!(JointMap::new(-1, 0.0, 1.0).unwrap().direction(), -1);
    }

    fn any_ranges() -> impl Strategy<Value = MotorRanges> {
        prop::sample::select(MotorModel::ALL.to_vec()).prop_map(MotorModel::ranges)
    }

    fn arb_frame() -> impl Strategy<Value = CanFrame> {
        (0u32..=0x7FF, prop::collection::vec(any::<u8>(), 0..=8), any::<bool>(), 0usize..=8).prop_map(
            |(id, data, remote, rlen)| {
                if remote {
                    CanFrame::remote(id, false, rlen).unwrap()
                } else {
                    CanFrame::standard(id, &data).unwrap()
                }
            },
        )
    }

    /// One quantisation step (the round-trip bound, since the firmware truncates), plus f32 slack.
    fn step(max: f32, min: f32, bits: u32) -> f32 {
        (max - min) / max_int(bits) * 1.001 + 1e-5
    }

    proptest! {
        /// Pack then decode (as the motor does) returns every in-range field to within one step,
        /// never above the input: p 25/65535 = 3.8e-4 rad; v 2·v_max/4095 (≤ 0.032 rad/s);
        /// kp 500/4095 = 0.12; kd 5/4095 = 1.2e-3; t 2·t_max/4095 (≤ 8.8e-3 N·m).
        #[test]
        fn command_round_trip_within_one_step(
            r in any_ranges(),
            fq in -1.0f32..=1.0, fv in -1.0f32..=1.0, fkp in 0.0f32..=1.0, fkd in 0.0f32..=1.0, ft in -1.0f32..=1.0,
        ) {
            let cmd = MitCommand {
                q_rad: fq * r.p_max_rad,
                qd_radps: fv * r.v_max_radps,
                kp: fkp * r.kp_max,
                kd: fkd * r.kd_max,
                tau_ff_nm: ft * r.t_max_nm,
            };
            let packed = pack_command(0x7F, &cmd, &r).unwrap();
            let MotorRequest::Command(back) = decode_request(&packed.frame, &r).unwrap() else {
                panic!("decoded as a special frame");
            };
            let checks = [
                (cmd.q_rad, back.q_rad, step(r.p_max_rad, -r.p_max_rad, 16)),
                (cmd.qd_radps, back.qd_radps, step(r.v_max_radps, -r.v_max_radps, 12)),
                (cmd.kp, back.kp, step(r.kp_max, 0.0, 12)),
                (cmd.kd, back.kd, step(r.kd_max, 0.0, 12)),
                (cmd.tau_ff_nm, back.tau_ff_nm, step(r.t_max_nm, -r.t_max_nm, 12)),
            ];
            for (sent, got, bound) in checks {
                prop_assert!(sent - got <= bound && got - sent <= 1e-4, "{sent} -> {got} (step {bound})");
            }
        }

        /// Reply encode then decode returns position, velocity and torque within one step, and the
        /// Damiao state, id and temperatures exactly.
        #[test]
        fn reply_round_trip_within_one_step(
            r in any_ranges(),
            damiao in any::<bool>(),
            id in 0u8..16, fq in -1.0f32..=1.0, fv in -1.0f32..=1.0, ft in -1.0f32..=1.0,
            code in 0u8..16, t_mos in 0u8..=255, t_rot in 0u8..=255,
        ) {
            let format = if damiao { ReplyFormat::Damiao } else { ReplyFormat::MiniCheetah };
            let reply = MotorReply {
                motor_id: id,
                q_rad: fq * r.p_max_rad,
                qd_radps: fv * r.v_max_radps,
                tau_nm: ft * r.t_max_nm,
                temp_mosfet_c: damiao.then_some(f32::from(t_mos)),
                temp_rotor_c: damiao.then_some(f32::from(t_rot)),
                enabled: if damiao && code <= 1 { Some(code == 1) } else { None },
                error: if damiao { MotorError::from_damiao_code(code) } else { None },
            };
            let frame = encode_reply(0x10, &reply, format, &r).unwrap();
            let back = decode_reply(&frame, format, only(id, r)).unwrap();
            prop_assert!((reply.q_rad - back.q_rad).abs() <= step(r.p_max_rad, -r.p_max_rad, 16));
            prop_assert!((reply.qd_radps - back.qd_radps).abs() <= step(r.v_max_radps, -r.v_max_radps, 12));
            prop_assert!((reply.tau_nm - back.tau_nm).abs() <= step(r.t_max_nm, -r.t_max_nm, 12));
            prop_assert_eq!(
                (back.motor_id, back.temp_mosfet_c, back.temp_rotor_c, back.enabled, back.error),
                (reply.motor_id, reply.temp_mosfet_c, reply.temp_rotor_c, reply.enabled, reply.error)
            );
        }

        /// Joint → motor → joint is the identity (to f32 precision) for states and commands.
        #[test]
        fn joint_map_round_trips(
            dir in prop::sample::select(vec![1i8, -1]),
            offset in -3.0f32..3.0, gear in 0.1f32..20.0,
            q in -3.0f32..3.0, qd in -30.0f32..30.0, tau in -20.0f32..20.0, kp in 0.0f32..500.0, kd in 0.0f32..5.0,
        ) {
            let map = JointMap::new(dir, offset, gear).unwrap();
            let joint = JointState { q_rad: q, qd_radps: qd, tau_nm: tau };
            let back = map.state_to_joint(&map.state_to_motor(&joint));
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()));
            prop_assert!(close(back.q_rad, q) && close(back.qd_radps, qd) && close(back.tau_nm, tau), "{joint:?} -> {back:?}");
            let cmd = MitCommand { q_rad: q, qd_radps: qd, kp, kd, tau_ff_nm: tau };
            let back = map.command_to_joint(&map.command_to_motor(&cmd));
            prop_assert!(close(back.q_rad, q) && close(back.qd_radps, qd) && close(back.tau_ff_nm, tau));
            prop_assert!(close(back.kp, kp) && close(back.kd, kd));
            let reply = MotorReply {
                motor_id: 1, q_rad: q, qd_radps: qd, tau_nm: tau,
                temp_mosfet_c: None, temp_rotor_c: None, enabled: None, error: None,
            };
            prop_assert_eq!(map.reply_to_joint(&reply), map.state_to_joint(&JointState { q_rad: q, qd_radps: qd, tau_nm: tau }));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Any frame, any ranges (even invalid ones): decoding never panics.
        #[test]
        fn fuzz_decoders_never_panic(
            frame in arb_frame(),
            ranges in (any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>()),
            known in any::<bool>(),
        ) {
            let (p_max_rad, v_max_radps, kp_max, kd_max, t_max_nm) = ranges;
            let r = MotorRanges { p_max_rad, v_max_radps, kp_max, kd_max, t_max_nm };
            for format in [ReplyFormat::MiniCheetah, ReplyFormat::Damiao] {
                let _ = decode_reply(&frame, format, |_| known.then_some(r));
            }
            let _ = decode_request(&frame, &r);
            let _ = parse_damiao_param_reply(&frame);
        }

        /// Any command values, any ranges: packing never panics and never emits a special frame.
        #[test]
        fn fuzz_pack_never_panics(
            id in any::<u32>(),
            v in (any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>()),
            r in any_ranges(),
        ) {
            let cmd = MitCommand { q_rad: v.0, qd_radps: v.1, kp: v.2, kd: v.3, tau_ff_nm: v.4 };
            if let Ok(p) = pack_command(id, &cmd, &r) {
                prop_assert!(Special::from_data(p.frame.data()).is_none());
            }
        }
    }
}
