//! The MuJoCo simulator of a robot, behind the robot's real protocols (cargo feature `sim`).
//!
//! `locod sim` (`realtime`) steps the scene in real time and exposes the robot as hardware would:
//! its motors as MIT-mode motors behind an emulated slcan USB-CAN adapter on one pseudo-terminal,
//! its IMU and ToF sensors behind a firmware-bridge board on another, each linked at the path the
//! configuration gives the daemon. The daemon cannot tell it from the robot. `lockstep` runs the
//! daemon's own control loop and its configured controller in-process on simulated time instead,
//! for fast deterministic tests and data generation; `eval` measures a controller over seeded
//! lock-step episodes under command `profile`s (`locod eval`). The pieces: `world` (MuJoCo),
//! `motors` (MIT firmware on the joints), `board` (the sensor microcontroller), `noise`.
//!
//! Not for: anything the daemon runs on a robot; the daemon never sees the simulator's privileged
//! state (base pose, velocities), only what crosses the wire.

pub mod board;
pub mod eval;
pub mod lockstep;
pub mod motors;
pub mod noise;
pub mod profile;
pub mod realtime;
pub mod world;

use crate::config::sim::{Perturbation, Sim};
use crate::config::Joint;
use std::fmt;

#[derive(Debug)]
pub enum SimError {
    /// The configuration cannot be simulated.
    Config(String),
    /// The scene cannot be loaded or lacks something the configuration names.
    Model(String),
    /// A pseudo-terminal or its link could not be made.
    Port(String),
    /// Lock-step: the configured controller could not be built (its model, its contract).
    Controller(crate::policy::BuildError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Config(m) => write!(f, "simulator configuration: {m}"),
            SimError::Model(m) => write!(f, "simulator model: {m}"),
            SimError::Port(m) => write!(f, "simulator port: {m}"),
            SimError::Controller(e) => write!(f, "controller: {e}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Controller(e) => e.source(),
            _ => None,
        }
    }
}

/// The `[sim]` table (defaults when absent) and the perturbation to apply.
pub(crate) fn settings(sim: Option<&Sim>, real_world: bool) -> (Sim, Perturbation) {
    let sim = sim.cloned().unwrap_or_default();
    let p = if real_world { sim.real_world.clone() } else { Perturbation::nominal() };
    (sim, p)
}

/// A fault to inject at a simulated time, from `--fault KIND[:ARG]@SECONDS`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledFault {
    pub(crate) at_s: f64,
    pub kind: FaultKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// The board's IMU stream stops.
    ImuStop,
    /// The board's IMU stream pauses for this many milliseconds (a brief sensor gap).
    ImuGap(f64),
    /// The board's depth sensors stop sending.
    DepthStop,
    /// The motor of the named joint stops answering.
    MotorSilent(String),
    /// The board starts sending random bytes between frames.
    BridgeGarbage,
    /// The simulator process exits at once, as if it crashed (real-time mode only).
    Exit,
}

impl std::str::FromStr for ScheduledFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected KIND@SECONDS with KIND one of imu-stop, imu-gap:MS, depth-stop, motor-silent:JOINT, \
                     bridge-garbage, exit";
        let (kind, at) = s.rsplit_once('@').ok_or(usage)?;
        let at_s: f64 = at.parse().map_err(|_| format!("{s}: {usage}"))?;
        if !(at_s.is_finite() && at_s >= 0.0) {
            return Err(format!("{s}: the time must be a non-negative number of seconds"));
        }
        let kind = match kind.split_once(':') {
            None if kind == "imu-stop" => FaultKind::ImuStop,
            None if kind == "depth-stop" => FaultKind::DepthStop,
            Some(("imu-gap", ms)) => match ms.parse::<f64>() {
                Ok(ms) if ms.is_finite() && ms > 0.0 => FaultKind::ImuGap(ms),
                _ => return Err(format!("{s}: imu-gap:MS needs a positive number of milliseconds")),
            },
            None if kind == "bridge-garbage" => FaultKind::BridgeGarbage,
            None if kind == "exit" => FaultKind::Exit,
            Some(("motor-silent", joint)) if !joint.is_empty() => FaultKind::MotorSilent(joint.to_string()),
            _ => return Err(format!("{s}: {usage}")),
        };
        Ok(ScheduledFault { at_s, kind })
    }
}

/// Checks that `config` describes hardware the simulator can be: its scene must name every joint.
pub(crate) fn check_joint(joints: &[Joint], name: &str) -> Result<usize, SimError> {
    joints.iter().position(|j| j.name == name).ok_or_else(|| SimError::Config(format!("no joint named \"{name}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_say_why() {
        let f: ScheduledFault = "motor-silent:left_knee@2.5".parse().unwrap();
        assert_eq!(f, ScheduledFault { at_s: 2.5, kind: FaultKind::MotorSilent("left_knee".into()) });
        assert_eq!("imu-stop@1".parse::<ScheduledFault>().unwrap().kind, FaultKind::ImuStop);
        assert_eq!("imu-gap:40@5".parse::<ScheduledFault>().unwrap().kind, FaultKind::ImuGap(40.0));
        assert!("imu-gap:-3@5".parse::<ScheduledFault>().unwrap_err().contains("milliseconds"));
        assert_eq!("depth-stop@2".parse::<ScheduledFault>().unwrap().kind, FaultKind::DepthStop);
        assert!("imu-stop".parse::<ScheduledFault>().unwrap_err().contains("KIND@SECONDS"));
        assert!("melt@1".parse::<ScheduledFault>().is_err());
        assert!("exit@-1".parse::<ScheduledFault>().is_err());
    }
}
