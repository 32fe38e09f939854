//! Scripted drives over zenoh (`locod teleop --drive FILE`): the operator's client standing the
//! robot up, walking it and sending a command file's velocities at the operator's rate, and
//! reporting whether the robot stayed walking. For repeatable field and simulator runs, and data
//! collection that follows the same path every time.
//!
//! A command file has one command per line, `t_s, vx, yaw_rate` (commas or spaces between the
//! numbers), each held from `t_s` (seconds since Walk began) until the next line's; before the
//! first line the command is zero. Times must increase; `#` starts a comment; blank lines are
//! skipped. `locod eval --commands FILE` reads the same files (`sim::profile`).
//!
//! Not for: deciding anything on the robot (the daemon's arbiter limits and times out these
//! commands like any operator's), or ground truth (the report is what the robot says about itself).

use super::client::{Link, Outgoing};
use super::wire::{RequestedMode, StateMsg};
use crate::config::Config;
use crate::control::messages::{LevelCounts, Mode};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The rows `(t_s, vx, yaw_rate)` of a command file's text; errors name `path` and the line.
pub(crate) fn parse_rows(path: &str, text: &str) -> Result<Vec<(f64, f64, f64)>, String> {
    let mut rows: Vec<(f64, f64, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("{path}:{}: {m}", i + 1);
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(|c: char| c == ',' || c.is_whitespace()).filter(|f| !f.is_empty()).collect();
        let numbers: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        let v = match numbers {
            Ok(v) if v.len() == 3 => v,
            _ => return Err(at(format!("expected `t_s, vx, yaw_rate` (three numbers), got {line:?}"))),
        };
        if v.iter().any(|x| !x.is_finite()) {
            return Err(at("the numbers must be finite".into()));
        }
        if v[0] < 0.0 || rows.last().is_some_and(|r| v[0] <= r.0) {
            return Err(at(format!("t_s {} must be >= 0 and later than the line before", v[0])));
        }
        rows.push((v[0], v[1], v[2]));
    }
    if rows.is_empty() {
        return Err(format!("{path}: no commands (lines of `t_s, vx, yaw_rate`)"));
    }
    Ok(rows)
}

/// A command file, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub path: String,
    rows: Vec<(f64, f64, f64)>,
}

impl Script {
    pub fn read(path: &str) -> Result<Script, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Script { path: path.to_string(), rows: parse_rows(path, &text)? })
    }

    /// The command [vx, vy, yaw rate] `t_s` seconds after Walk began.
    pub fn at(&self, t_s: f64) -> [f64; 3] {
        self.rows.iter().take_while(|r| r.0 <= t_s).last().map_or([0.0; 3], |r| [r.1, 0.0, r.2])
    }

    /// The last command's start: the script's length, less its last hold.
    pub(crate) fn last_change_s(&self) -> f64 {
        self.rows.last().map_or(0.0, |r| r.0)
    }
}

/// How a drive went, as the robot reported it over telemetry.
#[derive(Debug, Serialize)]
pub struct DriveReport {
    pub script: String,
    /// Seconds from the stand-up request until the robot reported standing.
    pub(crate) stand_up_s: f64,
    /// Seconds driven in Walk (the script's time).
    pub walked_s: f64,
    /// The robot was in Walk at every state message of the drive (a degraded fault, held by the
    /// balance fallback, does not leave Walk).
    pub stayed_walking: bool,
    /// When and how it left Walk, if it did.
    pub(crate) left_walk: Option<String>,
    /// The first fault the robot reported during the drive, if any, and when.
    pub(crate) first_fault: Option<String>,
    /// Largest tilt the robot's own estimate reported during the drive (a fall included).
    pub(crate) tilt_max_deg: f64,
    /// The state messages of the drive by controller level: `primary 98%, stand 2%`.
    pub levels: String,
    /// The control loop's tick compute p99 (us), the largest the daemon reported in the drive.
    pub(crate) control_compute_p99_us: f64,
    /// Control ticks overrun and skipped during the drive (the daemon's counters' increase).
    pub(crate) overruns: u64,
    pub skipped: u64,
    /// Events the daemon reported during the drive (faults, fallbacks, rejections).
    pub events: Vec<String>,
}

/// The operator's command rate (docs/teleop.md).
const SEND_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for the daemon's first state, for standing, and for Walk.
const PATIENCE: Duration = Duration::from_secs(30);

fn wait(link: &Link, what: &str, until: impl Fn(&StateMsg) -> bool) -> Result<StateMsg, String> {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(s) = link.state().filter(|s| until(s)) {
            return Ok(s);
        }
        if Instant::now() > end {
            let now = link.state().map_or("no state at all".to_string(), |s| {
                format!("mode {:?}, fault {}", s.mode, s.fault.as_deref().unwrap_or("none"))
            });
            return Err(format!("no {what} within {} s ({now})", PATIENCE.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stands the robot up, walks it, and sends `script`'s commands for `seconds` of Walk (at least
/// until its last command starts), then zero; the robot is left walking in place. `progress`
/// prints a line per second to stderr.
pub fn drive(config: &Config, script: &Script, seconds: f64, progress: bool) -> Result<DriveReport, String> {
    let link = Link::connect(config).map_err(|e| e.to_string())?;
    let first = wait(&link, "state from the daemon", |_| true)?;
    if first.mode == Mode::EStop {
        return Err("the robot is e-stopped; reset it first".into());
    }
    let asked = Instant::now();
    if first.mode != Mode::Walk {
        link.send(Outgoing::Mode(RequestedMode::StandUp)).map_err(|e| e.to_string())?;
        wait(&link, "standing", |s| s.standing || s.mode == Mode::Walk)?;
    }
    let stand_up_s = asked.elapsed().as_secs_f64();
    link.send(Outgoing::Mode(RequestedMode::Walk)).map_err(|e| e.to_string())?;
    let start = wait(&link, "Walk", |s| s.mode == Mode::Walk)?;
    let events_before = link.diag_lines().len();

    let walked = Instant::now();
    let mut levels = LevelCounts::default();
    let (mut tilt_max, mut compute_p99, mut left_walk, mut first_fault) = (0.0f64, 0.0f64, None, None);
    let (mut last_tick, mut last_print) = (start.tick, 0.0);
    let mut last = start.clone();
    let length = seconds.max(script.last_change_s());
    loop {
        let t = walked.elapsed().as_secs_f64();
        if t >= length {
            break;
        }
        link.send(Outgoing::Vel(script.at(t))).map_err(|e| e.to_string())?;
        std::thread::sleep(SEND_EVERY);
        let Some(s) = link.state() else { continue };
        if s.tick != last_tick {
            last_tick = s.tick;
            levels.add(s.level);
            tilt_max = tilt_max.max(s.tilt_deg);
            compute_p99 = compute_p99.max(s.timing.compute_p99_us);
            if first_fault.is_none() {
                first_fault = s.fault.as_ref().map(|f| format!("at {t:.1} s: {f} (controller {:?})", s.level));
            }
            if left_walk.is_none() && s.mode != Mode::Walk {
                left_walk = Some(format!(
                    "at {t:.1} s: mode {:?}, controller {:?}, fault {}",
                    s.mode,
                    s.level,
                    s.fault.as_deref().unwrap_or("none")
                ));
            }
            if progress && t - last_print >= 1.0 {
                last_print = t;
                let c = script.at(t);
                eprintln!(
                    "drive: {t:5.1} s  mode {:?}  controller {:?}  command [{:.2}, {:.2}]  tilt {:.1} deg  compute p99 {:.0} us",
                    s.mode, s.level, c[0], c[2], s.tilt_deg, s.timing.compute_p99_us
                );
            }
            last = s;
        }
    }
    let _ = link.send(Outgoing::Vel([0.0; 3]));
    let events = link.diag_lines().into_iter().skip(events_before).collect();
    let stayed = left_walk.is_none();
    let report = DriveReport {
        script: script.path.clone(),
        stand_up_s,
        walked_s: walked.elapsed().as_secs_f64(),
        stayed_walking: stayed,
        left_walk,
        first_fault,
        tilt_max_deg: tilt_max,
        levels: levels.to_string(),
        control_compute_p99_us: compute_p99,
        overruns: last.timing.overruns.saturating_sub(start.timing.overruns),
        skipped: last.timing.skipped.saturating_sub(start.timing.skipped),
        events,
    };
    link.close();
    Ok(report)
}

impl std::fmt::Display for DriveReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match &self.left_walk {
            None => "stayed walking".to_string(),
            Some(how) => format!("left Walk {how}"),
        };
        writeln!(
            out,
            "drive {}: {verdict} ({:.1} s walked, stood up in {:.1} s)",
            self.script, self.walked_s, self.stand_up_s
        )?;
        writeln!(
            out,
            "  controller {}; tilt max {:.1} deg (estimate); control compute p99 {:.0} us; {} overruns, {} skipped",
            self.levels, self.tilt_max_deg, self.control_compute_p99_us, self.overruns, self.skipped
        )?;
        if let Some(fault) = &self.first_fault {
            writeln!(out, "  first fault {fault}")?;
        }
        for e in &self.events {
            writeln!(out, "  event: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_hold_each_command_until_the_next() {
        let rows = parse_rows("c.csv", "# t_s, vx, yaw_rate\n1.0, 0.3, 0\n\n4 -0.2 0.5  # back and turn\n").unwrap();
        let s = Script { path: "c.csv".into(), rows };
        assert_eq!(s.at(0.5), [0.0; 3]);
        assert_eq!(s.at(1.0), [0.3, 0.0, 0.0]);
        assert_eq!(s.at(9.0), [-0.2, 0.0, 0.5]);
        assert_eq!(s.last_change_s(), 4.0);
    }

    #[test]
    fn bad_command_files_say_where() {
        assert!(parse_rows("c", "0, 1\n").unwrap_err().starts_with("c:1: expected"));
        assert!(parse_rows("c", "0 0 0\n0 1 1\n").unwrap_err().starts_with("c:2: t_s 0"));
        assert!(parse_rows("c", "0 nan 0\n").unwrap_err().starts_with("c:1:"));
        assert!(parse_rows("c", "# nothing\n").unwrap_err().contains("no commands"));
        assert!(Script::read("/nonexistent/commands.csv").unwrap_err().starts_with("/nonexistent/commands.csv: "));
    }
}
