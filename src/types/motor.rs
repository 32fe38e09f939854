//! The motor table: the MIT-mode motor models locod knows, the ranges their firmware scales
//! command and reply fields to, and which reply form each sends. Below both `config` (which names a
//! model per joint and validates overrides) and `io::protocol::mit` (whose codecs scale by the ranges).
//!
//! Not for: packing or decoding frames (`io::protocol::mit`).

use std::fmt;
use std::str::FromStr;

/// The motor models locod knows the ranges of. The ranges must match what the motor's firmware was
/// built or configured with; where they differ, override them with a [`MotorRanges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MotorModel {
    /// The mini-cheetah firmware's defaults (also many open-firmware clones).
    MiniCheetah,
    /// CubeMars AK60-6.
    Ak60_6,
    /// CubeMars AK80-9.
    Ak80_9,
    /// Damiao DM-J4310 in MIT mode.
    DmJ4310,
}

impl MotorModel {
    pub(crate) const ALL: [MotorModel; 4] =
        [MotorModel::MiniCheetah, MotorModel::Ak60_6, MotorModel::Ak80_9, MotorModel::DmJ4310];

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            MotorModel::MiniCheetah => "mini_cheetah",
            MotorModel::Ak60_6 => "ak60_6",
            MotorModel::Ak80_9 => "ak80_9",
            MotorModel::DmJ4310 => "dm_j4310",
        }
    }

    /// The documented default ranges (see `spec/protocols.md`).
    pub fn ranges(self) -> MotorRanges {
        let (v_max_radps, t_max_nm) = match self {
            MotorModel::MiniCheetah => (65.0, 18.0),
            MotorModel::Ak60_6 => (45.0, 15.0),
            MotorModel::Ak80_9 => (50.0, 18.0),
            MotorModel::DmJ4310 => (30.0, 10.0),
        };
        MotorRanges { p_max_rad: 12.5, v_max_radps, kp_max: 500.0, kd_max: 5.0, t_max_nm }
    }

    /// Which reply form the model sends.
    pub(crate) fn reply_format(self) -> ReplyFormat {
        match self {
            MotorModel::MiniCheetah | MotorModel::Ak60_6 | MotorModel::Ak80_9 => ReplyFormat::MiniCheetah,
            MotorModel::DmJ4310 => ReplyFormat::Damiao,
        }
    }
}

impl fmt::Display for MotorModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MotorModel {
    type Err = UnknownMotorModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MotorModel::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownMotorModel { name: s.to_owned() })
    }
}

/// A motor model name that is not in [`MotorModel::ALL`]. Configuration-time only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMotorModel {
    pub name: String,
}

impl fmt::Display for UnknownMotorModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown motor model {:?}; valid names are", self.name)?;
        for (i, m) in MotorModel::ALL.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{}", m.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownMotorModel {}

/// The ranges a motor's firmware scales its fields to: position, velocity and torque are symmetric
/// (±max), the gains run from 0 to their max. Both ends of the bus must agree on these, or every
/// value is silently scaled wrong.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MotorRanges {
    pub(crate) p_max_rad: f32,
    pub(crate) v_max_radps: f32,
    /// Stiffness, N·m/rad.
    pub(crate) kp_max: f32,
    /// Damping, N·m·s/rad.
    pub(crate) kd_max: f32,
    pub(crate) t_max_nm: f32,
}

impl MotorRanges {
    /// Checks that every bound is finite and positive. The codecs stay total with invalid ranges
    /// (they produce garbage, not panics), so check once when loading a configuration.
    pub(crate) fn validate(&self) -> Result<(), RangesError> {
        let fields = [
            ("p_max_rad", self.p_max_rad),
            ("v_max_radps", self.v_max_radps),
            ("kp_max", self.kp_max),
            ("kd_max", self.kd_max),
            ("t_max_nm", self.t_max_nm),
        ];
        for (field, value) in fields {
            if !(value.is_finite() && value > 0.0) {
                return Err(RangesError { field, value });
            }
        }
        Ok(())
    }
}

/// A [`MotorRanges`] bound that is not finite and positive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangesError {
    pub field: &'static str,
    pub value: f32,
}

impl fmt::Display for RangesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "motor range {} is {}, but must be a finite number above zero (it must match the motor firmware's range)",
            self.field, self.value
        )
    }
}

impl std::error::Error for RangesError {}

/// The two reply forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyFormat {
    /// Mini-cheetah firmware and CubeMars AK: `[id, p16, v12, t12]`, 6 bytes. Some CubeMars firmware
    /// appends two bytes (temperature, error code) whose meaning differs by version: 8-byte
    /// replies are accepted and those two bytes ignored.
    MiniCheetah,
    /// Damiao DM-J: 8 bytes from the master id, `[state<<4 | id, p16, v12, t12, T_mosfet, T_rotor]`.
    /// Only the low 4 bits of the motor id are sent, so motors sharing a master id need ids that
    /// differ in their low 4 bits.
    Damiao,
}
