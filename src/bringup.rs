//! Bring-up tools for a robot on the bench: `locod motors` scans the configured motors, enables or
//! disables one, jogs one gently, and sets a joint's zero into the calibration file.
//!
//! This is how a user checks wiring, CAN ids and joint directions before any policy runs. Every
//! action touches one motor at a time and leaves it disabled. Not for: running the robot.

use crate::config::{calibration, Config, JointMode};
use crate::io::device::can_motors::CanMotors;
use crate::io::protocol::mit::Special;
use crate::rt::clock::monotonic_ns;
use crate::types::{JointSample, MotorCommand};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

/// How long a motor gets to answer.
const REPLY_WAIT: Duration = Duration::from_millis(150);
/// The largest jog step allowed.
pub(crate) const MAX_JOG_RAD: f64 = 0.5;
const JOG_RATE_HZ: f64 = 200.0;

fn open(config: &Config) -> Result<CanMotors, String> {
    if config.buses.iter().any(|b| b.kind == crate::config::BusKind::Mem) {
        return Err("the in-memory robot has no motors to bring up: configure socketcan or slcan buses".into());
    }
    // Bring-up needs no IMU.
    CanMotors::open(config).map_err(|e| crate::report::chain(&e))
}

fn joint(config: &Config, name: &str) -> Result<usize, String> {
    config.joint_index(name).ok_or_else(|| {
        let names: Vec<&str> = config.joints.iter().map(|j| j.name.as_str()).collect();
        format!("no joint named {name:?}; expected one of: {}", names.join(", "))
    })
}

/// Sends `cmd` until a reply newer than `since_ns` arrives or `REPLY_WAIT` passes.
fn ask(robot: &mut CanMotors, j: usize, cmd: &MotorCommand, since_ns: u64) -> Option<JointSample> {
    let deadline = Instant::now() + REPLY_WAIT;
    while Instant::now() < deadline {
        let _ = robot.send_command(j, cmd);
        std::thread::sleep(Duration::from_millis(5));
        let s = robot.sample(j);
        if s.t_ns > since_ns {
            return Some(s);
        }
    }
    None
}

/// Enables the motor, reads it with zero gains (no torque), disables it again.
fn probe(robot: &mut CanMotors, j: usize) -> Option<JointSample> {
    let since = monotonic_ns();
    let _ = robot.send_special(j, Special::Enable);
    let s = ask(robot, j, &MotorCommand::default(), since);
    let _ = robot.send_special(j, Special::Disable);
    s
}

pub fn scan(config: &Config, out: &mut dyn Write) -> Result<usize, String> {
    let mut robot = open(config)?;
    writeln!(
        out,
        "{:<14} {:<6} {:>5} {:<13} {:>9} {:>9} {:>8} {:>6} {:>6}",
        "joint", "bus", "id", "model", "q_rad", "qd_radps", "tau_nm", "temp", "error"
    )
    .map_err(|e| e.to_string())?;
    let mut answered = 0;
    for (j, cfg) in config.joints.iter().enumerate() {
        let m = *robot.motor(j);
        let line = match probe(&mut robot, j) {
            Some(s) => {
                answered += 1;
                let err = if s.error == 0 { "-".to_string() } else { format!("{:#x}", s.error) };
                format!("{:>9.4} {:>9.3} {:>8.3} {:>6.0} {:>6}", s.q_rad, s.qd_radps, s.tau_nm, s.temp_c, err)
            }
            None => "no answer: check power, wiring, bitrate and the can_id".to_string(),
        };
        writeln!(out, "{:<14} {:<6} {:>#5x} {:<13} {line}", cfg.name, cfg.bus, m.can_id, cfg.motor.name())
            .map_err(|e| e.to_string())?;
    }
    writeln!(out, "{answered} of {} motors answered", config.joints.len()).map_err(|e| e.to_string())?;
    for (bus, counts) in robot.bus_watch().counts() {
        writeln!(out, "bus {bus}: {counts}").map_err(|e| e.to_string())?;
    }
    Ok(answered)
}

pub fn set_enabled(config: &Config, name: &str, enable: bool, out: &mut dyn Write) -> Result<(), String> {
    let j = joint(config, name)?;
    let mut robot = open(config)?;
    let since = monotonic_ns();
    let kind = if enable { Special::Enable } else { Special::Disable };
    robot.send_special(j, kind).map_err(|e| format!("{e:?}"))?;
    let s = ask(&mut robot, j, &MotorCommand::default(), since).ok_or(format!("{name}: no answer"))?;
    writeln!(out, "{name}: {} (q {:.4} rad)", if enable { "enabled, zero torque" } else { "disabled" }, s.q_rad)
        .map_err(|e| e.to_string())
}

/// Moves one joint by `step_rad` and back with its stand gains, then disables it. Prints the
/// commanded and measured angles so the user sees the direction and the tracking.
pub fn jog(config: &Config, name: &str, step_rad: f64, out: &mut dyn Write) -> Result<(), String> {
    let j = joint(config, name)?;
    if !(step_rad.is_finite() && step_rad.abs() <= MAX_JOG_RAD && step_rad != 0.0) {
        return Err(format!("--step-rad must be non-zero and within ±{MAX_JOG_RAD} rad, got {step_rad}"));
    }
    let cfg = &config.joints[j];
    if cfg.mode == JointMode::Velocity {
        return Err(format!("{name} is a velocity (wheel) joint: jog moves position joints"));
    }
    let mut robot = open(config)?;
    let start = probe(&mut robot, j).ok_or(format!("{name}: no answer"))?;
    let q0 = start.q_rad;
    let target = q0 + step_rad;
    let (lo, hi) = (cfg.pos_min_rad.unwrap_or(f64::MIN), cfg.pos_max_rad.unwrap_or(f64::MAX));
    if !(lo..=hi).contains(&target) {
        return Err(format!("{name}: {q0:.3} + {step_rad} rad = {target:.3} leaves the joint's limits [{lo}, {hi}]"));
    }
    let _ = robot.send_special(j, Special::Enable);
    let mut max_err: f64 = 0.0;
    let mut peak = q0;
    // hold, out (1 s), hold, back (1 s), hold
    let phases = [(0.3, q0, q0), (1.0, q0, target), (0.5, target, target), (1.0, target, q0), (0.3, q0, q0)];
    for (seconds, from, to) in phases {
        let steps = (seconds * JOG_RATE_HZ) as usize;
        for k in 0..steps {
            let a = (k + 1) as f64 / steps as f64;
            let q = from + (to - from) * (3.0 * a * a - 2.0 * a * a * a);
            let cmd = MotorCommand { q_rad: q, qd_radps: 0.0, kp: cfg.stand_kp, kd: cfg.stand_kd, tau_ff_nm: 0.0 };
            let _ = robot.send_command(j, &cmd);
            std::thread::sleep(Duration::from_secs_f64(1.0 / JOG_RATE_HZ));
            let s = robot.sample(j);
            max_err = max_err.max((s.q_rad - q).abs());
            if (s.q_rad - q0).abs() > (peak - q0).abs() {
                peak = s.q_rad;
            }
        }
    }
    let end = robot.sample(j).q_rad;
    let _ = robot.send_special(j, Special::Disable);
    writeln!(
        out,
        "{name}: start {q0:.4} rad, commanded {target:.4}, reached {peak:.4}, back at {end:.4}; largest tracking error {max_err:.4} rad"
    )
    .map_err(|e| e.to_string())?;
    if (peak - q0).signum() != step_rad.signum() {
        writeln!(out, "{name}: the joint moved the wrong way: flip its `direction`").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Makes the joint's current angle read `pose_rad` by writing a new offset into the calibration
/// file. Asks the user to type the joint's name unless `confirmed`.
pub fn zero(
    config: &Config,
    name: &str,
    pose_rad: f64,
    confirmed: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), String> {
    let j = joint(config, name)?;
    let file = calibration::path(config)
        .ok_or("set [robot] calibration = \"<robot>.calibration.toml\" in the configuration first")?;
    let mut robot = open(config)?;
    let s = probe(&mut robot, j).ok_or(format!("{name}: no answer"))?;
    let offset_now = config.joints[j].offset_rad;
    let offset = pose_rad - (s.q_rad - offset_now);
    writeln!(
        out,
        "{name} reads {:.4} rad (offset {offset_now:.4}). The new offset {offset:.4} makes this pose read {pose_rad:.4} rad.",
        s.q_rad
    )
    .map_err(|e| e.to_string())?;
    if !confirmed {
        write!(out, "Type the joint's name ({name}) to write {}: ", file.display()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        input.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != name {
            return Err("not confirmed: nothing written".into());
        }
    }
    calibration::write_offset(&file, name, offset)?;
    writeln!(out, "wrote offset_rad.{name} = {offset:.6} to {}", file.display()).map_err(|e| e.to_string())
}
