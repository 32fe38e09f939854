//! Checks serde cannot make: cross-references, orderings, ranges and rates. Each failure is the
//! key path of the offending value and a message that says what was expected.

use super::error::Seg::{self, Index, Key};
use super::{Config, JointMode, MAX_JOINTS};
use std::collections::HashSet;

type Check = Result<(), (Vec<Seg>, String)>;

fn fail(path: Vec<Seg>, message: impl Into<String>) -> Check {
    Err((path, message.into()))
}

fn positive(path: Vec<Seg>, value: f64) -> Check {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        fail(path, format!("expected a positive finite number, got {value}"))
    }
}

fn non_negative(path: Vec<Seg>, value: f64) -> Check {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        fail(path, format!("expected a finite number >= 0, got {value}"))
    }
}

pub fn validate(c: &Config) -> Check {
    if c.robot.name.trim().is_empty() {
        return fail(vec![Key("robot"), Key("name")], "expected a robot name, got an empty string");
    }
    validate_loop(c)?;
    validate_buses(c)?;
    validate_joints(c)?;
    validate_safety(c)?;
    validate_command(c)?;
    validate_log(c)?;
    positive(vec![Key("controller"), Key("standup_s")], c.controller.standup_s)?;
    positive(vec![Key("controller"), Key("sitdown_s")], c.controller.sitdown_s)?;
    for (i, v) in c.imu.mounting_rpy_deg.iter().enumerate() {
        if !v.is_finite() {
            return fail(vec![Key("imu"), Key("mounting_rpy_deg"), Index(i)], "expected a finite angle");
        }
    }
    Ok(())
}

fn validate_loop(c: &Config) -> Check {
    let l = &c.rate;
    let at = |k| vec![Key("loop"), Key(k)];
    if !(1..=10_000).contains(&l.control_hz) {
        return fail(at("control_hz"), format!("expected 1..=10000 Hz, got {}", l.control_hz));
    }
    if l.policy_hz == 0 || l.policy_hz > l.control_hz {
        return fail(
            at("policy_hz"),
            format!("expected 1..={} Hz (at most control_hz), got {}", l.control_hz, l.policy_hz),
        );
    }
    if l.control_hz % l.policy_hz != 0 {
        return fail(
            at("policy_hz"),
            format!(
                "policy_hz {} must divide control_hz {} evenly, so each policy tick lands on a control tick",
                l.policy_hz, l.control_hz
            ),
        );
    }
    for (key, p) in [("priority", l.priority), ("policy_priority", l.policy_priority)] {
        if !(0..=99).contains(&p) {
            return fail(at(key), format!("expected a SCHED_FIFO priority 1..=99, or 0 for none; got {p}"));
        }
    }
    if l.priority > 0 && l.policy_priority >= l.priority {
        return fail(
            at("policy_priority"),
            format!(
                "the policy thread must run below the control thread: expected < {}, got {}",
                l.priority, l.policy_priority
            ),
        );
    }
    non_negative(at("status_interval_s"), l.status_interval_s)
}

fn validate_buses(c: &Config) -> Check {
    if c.buses.is_empty() {
        return fail(vec![Key("bus")], "expected at least one [[bus]]");
    }
    let mut names = HashSet::new();
    for (i, b) in c.buses.iter().enumerate() {
        if !names.insert(b.name.as_str()) {
            return fail(vec![Key("bus"), Index(i), Key("name")], format!("bus name {:?} is used twice", b.name));
        }
        if b.bitrate == 0 {
            return fail(vec![Key("bus"), Index(i), Key("bitrate")], "expected a bitrate in bit/s");
        }
    }
    Ok(())
}

fn validate_joints(c: &Config) -> Check {
    if c.joints.is_empty() || c.joints.len() > MAX_JOINTS {
        return fail(
            vec![Key("joint")],
            format!("expected 1..={MAX_JOINTS} [[joint]] entries, got {}", c.joints.len()),
        );
    }
    let bus_names: Vec<&str> = c.buses.iter().map(|b| b.name.as_str()).collect();
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for (i, j) in c.joints.iter().enumerate() {
        let at = |k| vec![Key("joint"), Index(i), Key(k)];
        if j.name.trim().is_empty() || !names.insert(j.name.as_str()) {
            return fail(at("name"), format!("joint names must be unique and non-empty; {:?} is not", j.name));
        }
        if !bus_names.contains(&j.bus.as_str()) {
            return fail(
                at("bus"),
                format!("bus {:?} is not defined; expected one of: {}", j.bus, bus_names.join(", ")),
            );
        }
        if j.can_id == 0 || j.can_id > 0x7FF {
            return fail(at("can_id"), format!("expected a standard CAN id 1..=0x7FF, got {:#x}", j.can_id));
        }
        if !ids.insert((j.bus.as_str(), j.can_id)) {
            return fail(at("can_id"), format!("CAN id {:#x} is used twice on bus {:?}", j.can_id, j.bus));
        }
        if let Some(m) = j.master_id {
            if m > 0x7FF {
                return fail(at("master_id"), format!("expected a standard CAN id, got {m:#x}"));
            }
        }
        if j.direction != 1 && j.direction != -1 {
            return fail(at("direction"), format!("expected 1 or -1, got {}", j.direction));
        }
        if !j.offset_rad.is_finite() {
            return fail(at("offset_rad"), "expected a finite angle");
        }
        positive(at("gear_ratio"), j.gear_ratio)?;
        positive(at("vel_max_radps"), j.vel_max_radps)?;
        positive(at("torque_max_nm"), j.torque_max_nm)?;
        non_negative(at("stand_kp"), j.stand_kp)?;
        non_negative(at("stand_kd"), j.stand_kd)?;
        non_negative(at("damping_kd"), j.damping_kd)?;
        if !j.default_pos_rad.is_finite() {
            return fail(at("default_pos_rad"), "expected a finite angle");
        }
        match (j.mode, j.pos_min_rad, j.pos_max_rad) {
            (JointMode::Position, None, _) => {
                return fail(at("pos_min_rad"), "a position joint needs pos_min_rad and pos_max_rad")
            }
            (JointMode::Position, _, None) => {
                return fail(at("pos_max_rad"), "a position joint needs pos_min_rad and pos_max_rad")
            }
            (_, Some(lo), Some(hi)) => {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return fail(at("pos_max_rad"), format!("expected pos_min_rad < pos_max_rad, got {lo} and {hi}"));
                }
                if j.mode == JointMode::Position && !(lo..=hi).contains(&j.default_pos_rad) {
                    return fail(
                        at("default_pos_rad"),
                        format!("{} is outside the joint's limits [{lo}, {hi}]", j.default_pos_rad),
                    );
                }
            }
            (JointMode::Velocity, Some(_), None) | (JointMode::Velocity, None, Some(_)) => {
                return fail(at("pos_min_rad"), "give both pos_min_rad and pos_max_rad, or neither")
            }
            (JointMode::Velocity, None, None) => {}
        }
    }
    Ok(())
}

fn validate_safety(c: &Config) -> Check {
    let s = &c.safety;
    let at = |k| vec![Key("safety"), Key(k)];
    let period_ms = 1e3 / c.rate.control_hz as f64;
    let policy_period_ms = 1e3 / c.rate.policy_hz as f64;
    if !(s.tilt_limit_deg > 0.0 && s.tilt_limit_deg <= 180.0) {
        return fail(at("tilt_limit_deg"), format!("expected 0 < tilt <= 180 degrees, got {}", s.tilt_limit_deg));
    }
    for (key, v) in [("imu_timeout_ms", s.imu_timeout_ms), ("motor_timeout_ms", s.motor_timeout_ms)] {
        positive(at(key), v)?;
        if v < period_ms {
            return fail(at(key), format!("{v} ms is shorter than one control period ({period_ms} ms)"));
        }
    }
    if s.max_consecutive_overruns == 0 {
        return fail(at("max_consecutive_overruns"), "expected at least 1");
    }
    positive(at("policy_timeout_ms"), s.policy_timeout_ms)?;
    if s.policy_timeout_ms < policy_period_ms {
        return fail(
            at("policy_timeout_ms"),
            format!("{} ms is shorter than one policy period ({policy_period_ms} ms)", s.policy_timeout_ms),
        );
    }
    positive(at("action_rate_limit_radps"), s.action_rate_limit_radps)?;
    non_negative(at("shutdown_damp_ms"), s.shutdown_damp_ms)
}

fn validate_command(c: &Config) -> Check {
    let l = &c.command;
    positive(vec![Key("command"), Key("lease_ms")], l.lease_ms)?;
    for i in 0..3 {
        non_negative(vec![Key("command"), Key("max_vel"), Index(i)], l.max_vel[i])?;
        positive(vec![Key("command"), Key("max_accel"), Index(i)], l.max_accel[i])?;
    }
    Ok(())
}

fn validate_log(c: &Config) -> Check {
    let l = &c.log;
    let at = |k| vec![Key("log"), Key(k)];
    if l.dir.as_os_str().is_empty() {
        return fail(at("dir"), "expected a directory for the logs, got an empty path");
    }
    positive(at("episode_s"), l.episode_s)?;
    positive(at("fsync_interval_ms"), l.fsync_interval_ms)?;
    if l.fsync_interval_ms > 1000.0 {
        return fail(
            at("fsync_interval_ms"),
            format!("expected at most 1000 ms (a crash may lose this much), got {}", l.fsync_interval_ms),
        );
    }
    positive(at("quota_mb"), l.quota_mb)?;
    if !(16..=1 << 20).contains(&l.ring_records) {
        return fail(at("ring_records"), format!("expected 16..=1048576 records, got {}", l.ring_records));
    }
    Ok(())
}
