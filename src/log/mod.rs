//! Transition logging: every control tick recorded for finetuning, replay and plots.
//!
//! The control thread fills one fixed-size `control::record::TickRecord` per tick and pushes it
//! into a preallocated SPSC ring (`LogTap`, never blocks, counts what it drops). The logger thread
//! (`writer`) drains the ring into MCAP files, one per episode; `read` reads them back (also
//! after a crash), `export` turns them into training datasets and `plot` into pictures.
//! `schema` is the on-disk message (ros2msg + CDR, so Foxglove and the Python `mcap` reader
//! show named fields).
//!
//! Not for: deciding anything about the robot; telemetry to people (that is the supervisor).

pub(crate) mod cdr;
pub mod export;
pub mod plot;
pub mod read;
pub mod schema;
pub mod writer;

use crate::control::messages::{CommandSource, ControllerLevel, Fault, Mode};

/// Code of a mode in the log (the `MODE_*` constants of the schema).
pub(crate) fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Passive => 0,
        Mode::StandUp => 1,
        Mode::Walk => 2,
        Mode::SitDown => 3,
        Mode::EStop => 4,
    }
}

pub(crate) const MODE_NAMES: [&str; 5] = ["passive", "stand_up", "walk", "sit_down", "estop"];
pub(crate) const MODE_WALK: u8 = 2;

pub(crate) fn level_code(l: ControllerLevel) -> u8 {
    l.index() as u8
}

pub(crate) const LEVEL_NAMES: [&str; 4] = ControllerLevel::NAMES;

pub(crate) fn source_code(s: CommandSource) -> u8 {
    match s {
        CommandSource::None => 0,
        CommandSource::Teleop => 1,
        CommandSource::Autonomy => 2,
    }
}

/// Code of a fault kind in the log: the schema's `FAULT_*` constants. Append-only: a code keeps its
/// meaning in old logs.
pub(crate) fn fault_code(f: &Option<Fault>) -> u8 {
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
        Some(Fault::OverSpeed { .. }) => 10,
        Some(Fault::DepthStale { .. }) => 11,
    }
}

#[cfg(test)]
mod tests;
