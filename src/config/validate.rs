//! Checks serde cannot make: cross-references, orderings, ranges and rates. Each failure is the
//! key path of the offending value and a message that says what was expected.

use super::error::Seg::{self, Index, Key};
use super::{BusKind, Config, ControllerKind, ImuKind, JointMode, OrientationSource};
use crate::types::terrain::MAX_DEPTH_SENSORS;
use crate::types::MAX_JOINTS;
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

/// Longest robot name: it goes into every log file name and the teleop key prefix.
pub(crate) const ROBOT_NAME_MAX: usize = 64;

/// The robot's name goes raw into log file names (`<stamp>-<name>-e0000.mcap`) and zenoh keys
/// (`locod/<name>/...`): letters, digits, `_` and `-`, and `.` after the first character, so
/// that it can never leave the log directory or add a key chunk.
fn validate_robot_name(name: &str) -> Check {
    let at = vec![Key("robot"), Key("name")];
    if name.is_empty() {
        return fail(at, "expected a robot name, got an empty string");
    }
    if name.len() > ROBOT_NAME_MAX {
        return fail(at, format!("expected at most {ROBOT_NAME_MAX} characters, got {}", name.len()));
    }
    let bad = name
        .char_indices()
        .find(|&(i, ch)| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || (ch == '.' && i > 0)));
    if let Some((_, ch)) = bad {
        return fail(
            at,
            format!(
                "{name:?} contains {ch:?}: a robot name is used in file names and keys, so it may only have letters, digits, '_', '-' and (not first) '.'"
            ),
        );
    }
    Ok(())
}

pub(crate) fn validate(c: &Config) -> Check {
    validate_robot_name(&c.robot.name)?;
    validate_loop(c)?;
    validate_buses(c)?;
    validate_joints(c)?;
    validate_devices(c)?;
    validate_safety(c)?;
    validate_command(c)?;
    validate_teleop(c)?;
    validate_log(c)?;
    positive(vec![Key("controller"), Key("standup_s")], c.controller.standup_s)?;
    positive(vec![Key("controller"), Key("sitdown_s")], c.controller.sitdown_s)?;
    validate_controller(c)?;
    validate_mppi(c)?;
    validate_balance(c)?;
    for (i, v) in c.imu.mounting_rpy_deg.iter().enumerate() {
        if !v.is_finite() {
            return fail(vec![Key("imu"), Key("mounting_rpy_deg"), Index(i)], "expected a finite angle");
        }
    }
    Ok(())
}

fn validate_balance(c: &Config) -> Check {
    let Some(b) = &c.balance else {
        if c.controller.kind == ControllerKind::Balance {
            return fail(vec![Key("controller"), Key("kind")], "\"balance\" needs a [balance] section");
        }
        return Ok(());
    };
    let at = |k| vec![Key("balance"), Key(k)];
    for (key, name) in [("left_wheel", &b.left_wheel), ("right_wheel", &b.right_wheel)] {
        match c.joints.iter().find(|j| &j.name == name) {
            None => return fail(at(key), format!("joint \"{name}\" is not defined")),
            Some(j) if j.mode != JointMode::Velocity => {
                return fail(at(key), format!("joint \"{name}\" must be a wheel (mode = \"velocity\")"))
            }
            Some(_) => {}
        }
    }
    if b.left_wheel == b.right_wheel {
        return fail(at("right_wheel"), "expected a different joint than left_wheel");
    }
    positive(at("wheel_radius_m"), b.wheel_radius_m)?;
    positive(at("pos_error_max_m"), b.pos_error_max_m)?;
    for (key, v) in [
        ("k_pitch", b.k_pitch),
        ("k_pitch_rate", b.k_pitch_rate),
        ("k_vel", b.k_vel),
        ("k_pos", b.k_pos),
        ("k_yaw_rate", b.k_yaw_rate),
        ("k_yaw", b.k_yaw),
    ] {
        non_negative(at(key), v)?;
    }
    if !(b.pitch_offset_rad.is_finite() && b.pitch_offset_rad.abs() < 0.5) {
        return fail(
            at("pitch_offset_rad"),
            format!("expected a finite angle within ±0.5 rad, got {}", b.pitch_offset_rad),
        );
    }
    validate_leveling(c, b)
}

fn validate_leveling(c: &Config, b: &crate::config::Balance) -> Check {
    let at = |k| vec![Key("balance"), Key(k)];
    for (i, name) in b.level_joints.iter().enumerate() {
        let here = || vec![Key("balance"), Key("level_joints"), Index(i)];
        match c.joints.iter().find(|j| &j.name == name) {
            None => return fail(here(), format!("joint \"{name}\" is not defined")),
            Some(j) if j.mode != JointMode::Position => {
                return fail(here(), format!("joint \"{name}\" must hold a position (mode = \"position\")"))
            }
            Some(_) if b.level_joints[..i].contains(name) => {
                return fail(here(), format!("joint \"{name}\" is listed twice"))
            }
            Some(_) => {}
        }
    }
    if !(b.k_level.is_finite() && b.k_level.abs() <= 5.0) {
        return fail(at("k_level"), format!("expected a finite rate within ±5 rad/s per rad, got {}", b.k_level));
    }
    if b.level_joints.is_empty() != (b.k_level == 0.0) {
        return fail(
            at(if b.level_joints.is_empty() { "k_level" } else { "level_joints" }),
            "leveling needs both level_joints and a non-zero k_level",
        );
    }
    if !(b.level_max_rad > 0.0 && b.level_max_rad <= 1.0) {
        return fail(at("level_max_rad"), format!("expected an angle in (0, 1] rad, got {}", b.level_max_rad));
    }
    if !(b.level_pitch_rad.is_finite() && b.level_pitch_rad.abs() < 0.5) {
        return fail(
            at("level_pitch_rad"),
            format!("expected a finite angle within ±0.5 rad, got {}", b.level_pitch_rad),
        );
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
        if b.kind == BusKind::Slcan && crate::types::bus::slcan_bitrate_code(b.bitrate).is_none() {
            return fail(
                vec![Key("bus"), Index(i), Key("bitrate")],
                format!(
                    "slcan adapters support 10k, 20k, 50k, 100k, 125k, 250k, 500k, 800k and 1M bit/s, not {}",
                    b.bitrate
                ),
            );
        }
        if b.kind != BusKind::Mem && b.device.as_deref().is_none_or(|d| d.trim().is_empty()) {
            let what = if b.kind == BusKind::Socketcan {
                "a CAN interface such as \"can0\""
            } else {
                "a serial port such as \"/dev/ttyACM0\""
            };
            return fail(
                vec![Key("bus"), Index(i), Key("device")],
                format!("a {:?} bus needs device = {what}", b.kind).to_lowercase(),
            );
        }
        positive(vec![Key("bus"), Index(i), Key("tx_backoff_ms")], b.tx_backoff_ms)?;
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
        let ranges = match j.ranges {
            Some(r) => {
                if let Err(e) = r.validate() {
                    return fail(at("ranges"), e.to_string());
                }
                r
            }
            None => j.motor.ranges(),
        };
        // Joint-side limits must be expressible on the wire after the gear ratio.
        if j.torque_max_nm > ranges.t_max_nm as f64 * j.gear_ratio + 1e-6 {
            return fail(
                at("torque_max_nm"),
                format!(
                    "{} N·m is beyond what a {} can command (±{} N·m at the motor, x{} gear)",
                    j.torque_max_nm, j.motor, ranges.t_max_nm, j.gear_ratio
                ),
            );
        }
        // Gains are sent to the motor divided by the gear ratio squared.
        let n2 = j.gear_ratio * j.gear_ratio;
        for (key, gain, max, what) in [
            ("stand_kp", j.stand_kp, ranges.kp_max, "kp"),
            ("stand_kd", j.stand_kd, ranges.kd_max, "kd"),
            ("damping_kd", j.damping_kd, ranges.kd_max, "kd"),
        ] {
            if gain > max as f64 * n2 * (1.0 + 1e-9) {
                return fail(
                    at(key),
                    format!(
                        "{gain} is beyond what a {} can be commanded ({what} 0..{max} at the motor, x{} gear)",
                        j.motor, j.gear_ratio
                    ),
                );
            }
        }
        if j.vel_max_radps > ranges.v_max_radps as f64 / j.gear_ratio + 1e-6 {
            return fail(
                at("vel_max_radps"),
                format!(
                    "{} rad/s is beyond what a {} can report (±{} rad/s at the motor, x{} gear)",
                    j.vel_max_radps, j.motor, ranges.v_max_radps, j.gear_ratio
                ),
            );
        }
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

fn validate_devices(c: &Config) -> Check {
    let mem_bus = c.buses.iter().position(|b| b.kind == BusKind::Mem);
    let real_bus = c.buses.iter().position(|b| b.kind != BusKind::Mem);
    if let (Some(_), Some(i)) = (mem_bus, real_bus) {
        return fail(
            vec![Key("bus"), Index(i), Key("kind")],
            "the in-memory robot (kind = \"mem\") cannot be mixed with real buses",
        );
    }
    let mem_imu = c.imu.kind == ImuKind::Mem;
    if mem_imu != mem_bus.is_some() {
        return fail(
            vec![Key("imu"), Key("kind")],
            "the in-memory robot needs kind = \"mem\" on every bus and the IMU, or on none",
        );
    }
    match c.imu.kind {
        ImuKind::Witmotion if c.imu.port.is_none() => {
            return fail(vec![Key("imu"), Key("port")], "a witmotion IMU needs port = \"/dev/...\"");
        }
        ImuKind::Bridge if c.bridge.is_none() => {
            return fail(vec![Key("imu"), Key("kind")], "kind = \"bridge\" needs a [bridge] section with the port");
        }
        _ => {}
    }
    if c.imu.orientation == OrientationSource::Device && c.imu.kind == ImuKind::Bridge {
        return fail(
            vec![Key("imu"), Key("orientation")],
            "the bridge IMU sends raw gyro and accelerometer: use orientation = \"filter\"",
        );
    }
    for (k, v) in c.imu.filter_gains.iter().enumerate() {
        non_negative(vec![Key("imu"), Key("filter_gains"), Index(k)], *v)?;
    }
    if let Some(b) = &c.bridge {
        positive(vec![Key("bridge"), Key("ping_interval_ms")], b.ping_interval_ms)?;
        if b.baud == 0 {
            return fail(vec![Key("bridge"), Key("baud")], "expected a baud rate");
        }
    }
    if let Some(d) = &c.depth {
        if c.bridge.is_none() {
            return fail(
                vec![Key("depth")],
                "depth sensors are read through the firmware bridge: add a [bridge] section",
            );
        }
        positive(vec![Key("depth"), Key("map_resolution_m")], d.map_resolution_m)?;
        positive(vec![Key("depth"), Key("timeout_ms")], d.timeout_ms)?;
        if d.sensors.is_empty() || d.sensors.len() > MAX_DEPTH_SENSORS {
            return fail(
                vec![Key("depth"), Key("sensor")],
                format!("expected 1..={MAX_DEPTH_SENSORS} [[depth.sensor]] entries"),
            );
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, s) in d.sensors.iter().enumerate() {
            let at = |k| vec![Key("depth"), Key("sensor"), Index(i), Key(k)];
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return fail(at("name"), format!("sensor names must be unique and non-empty; {:?} is not", s.name));
            }
            if !ids.insert(s.bridge_sensor) {
                return fail(at("bridge_sensor"), format!("bridge sensor {} is used twice", s.bridge_sensor));
            }
            if s.position_m.iter().chain(&s.rpy_deg).any(|v| !v.is_finite()) {
                return fail(at("position_m"), "expected finite numbers for the mounting pose");
            }
            if !(s.fov_deg > 0.0 && s.fov_deg < 180.0) {
                return fail(at("fov_deg"), format!("expected 0 < fov < 180 degrees, got {}", s.fov_deg));
            }
            positive(at("max_range_m"), s.max_range_m)?;
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
    non_negative(at("fault_clear_ms"), s.fault_clear_ms)?;
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
    if !(s.overspeed_factor >= 1.0 && s.overspeed_factor.is_finite()) {
        return fail(at("overspeed_factor"), format!("expected a finite factor >= 1, got {}", s.overspeed_factor));
    }
    non_negative(at("shutdown_damp_ms"), s.shutdown_damp_ms)?;
    let d = &s.degrade;
    for (key, v) in [
        ("imu_stale_ms", d.imu_stale_ms),
        ("deadline_overruns_ms", d.deadline_overruns_ms),
        ("motor_silent_ms", d.motor_silent_ms),
        ("depth_stale_ms", d.depth_stale_ms),
    ] {
        if let Some(v) = v {
            non_negative(vec![Key("safety"), Key("degrade"), Key(key)], v)?;
        }
    }
    Ok(())
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

/// A key expression chunk list without wildcards or empty chunks (zenoh's canonical form).
fn plain_key(key: &str) -> bool {
    !key.is_empty() && key.split('/').all(|c| !c.is_empty() && !c.contains(['*', '$', '?', '#', ' ']))
}

fn validate_teleop(c: &Config) -> Check {
    let Some(t) = &c.teleop else { return Ok(()) };
    let at = |k| vec![Key("teleop"), Key(k)];
    let prefix = c.teleop_prefix();
    if !plain_key(&prefix) {
        return fail(
            at("prefix"),
            format!("expected a key expression like \"locod/biwheel\" (no wildcards, no empty chunks), got {prefix:?}"),
        );
    }
    if !t.ros_cmd_vel_key.is_empty() && !plain_key(&t.ros_cmd_vel_key) {
        return fail(at("ros_cmd_vel_key"), format!("expected a key expression or \"\", got {:?}", t.ros_cmd_vel_key));
    }
    if t.listen.is_empty() && t.zenoh_config.is_none() {
        return fail(at("listen"), "expected at least one endpoint such as \"tcp/127.0.0.1:7447\", or zenoh_config");
    }
    for (i, e) in t.listen.iter().enumerate() {
        let ok = e.split_once('/').is_some_and(|(proto, addr)| matches!(proto, "tcp" | "tls") && addr.contains(':'));
        if !ok {
            return fail(
                vec![Key("teleop"), Key("listen"), Index(i)],
                format!("expected \"tcp/<address>:<port>\" or \"tls/<address>:<port>\", got {e:?}"),
            );
        }
    }
    positive(at("state_hz"), t.state_hz)?;
    if t.state_hz > c.rate.control_hz as f64 {
        return fail(
            at("state_hz"),
            format!("expected at most control_hz ({}), got {}", c.rate.control_hz, t.state_hz),
        );
    }
    if !(64..=65_536).contains(&t.max_payload_bytes) {
        return fail(at("max_payload_bytes"), format!("expected 64..=65536 bytes, got {}", t.max_payload_bytes));
    }
    positive(at("send_hz"), t.send_hz)?;
    // Two sends per lease at least, so one lost message does not stop the robot.
    let send_ms = 1e3 / t.send_hz;
    if send_ms * 2.0 > c.command.lease_ms {
        return fail(
            at("send_hz"),
            format!(
                "{} Hz sends every {send_ms:.0} ms: at least two sends must fit in [command] lease_ms ({} ms)",
                t.send_hz, c.command.lease_ms
            ),
        );
    }
    positive(at("key_hold_ms"), t.key_hold_ms)
}

fn validate_controller(c: &Config) -> Check {
    let k = &c.controller;
    let at = |key| vec![Key("controller"), Key(key)];
    if matches!(k.kind, ControllerKind::Student | ControllerKind::Mppi) && k.model.is_none() {
        let kind = if k.kind == ControllerKind::Student { "student" } else { "mppi" };
        return fail(at("kind"), format!("kind = \"{kind}\" needs a TorchScript file: set controller.model"));
    }
    for (key, m) in [("model", &k.model), ("shadow", &k.shadow)] {
        if m.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
            return fail(at(key), "expected a path to a TorchScript file, got an empty string");
        }
    }
    let mut names = vec!["default"];
    for (i, choice) in k.choices.iter().enumerate() {
        let at = |key| vec![Key("controller"), Key("choices"), Index(i), Key(key)];
        let n = choice.name.as_str();
        let name_ok =
            !n.is_empty() && n.len() <= 64 && n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !name_ok {
            return fail(at("name"), format!("{n:?}: expected 1 to 64 letters, digits, '_' or '-'"));
        }
        if names.contains(&n) {
            return fail(at("name"), format!("{n:?} is taken (\"default\" is the [controller] one)"));
        }
        names.push(n);
        if !matches!(choice.kind, ControllerKind::Student | ControllerKind::Mppi) {
            return fail(at("kind"), "a selectable controller is learned: \"student\" or \"mppi\"");
        }
        if choice.model.as_os_str().is_empty() {
            return fail(at("model"), "expected a path to a TorchScript file, got an empty string");
        }
    }
    if !k.choices.is_empty() && !matches!(k.kind, ControllerKind::Student | ControllerKind::Mppi) {
        return fail(
            vec![Key("controller"), Key("choices")],
            "choices are selected on the policy thread: the [controller] one must be \"student\" or \"mppi\" too",
        );
    }
    if k.shadow.is_some() {
        if !matches!(k.kind, ControllerKind::Student | ControllerKind::Mppi) {
            return fail(at("shadow"), "a shadow runs beside a learned controller: kind = \"student\" or \"mppi\"");
        }
        if !c.log.enabled {
            return fail(at("shadow"), "the shadow's steps are only logged: set [log] enabled = true");
        }
    }
    let d = k.device.as_str();
    let cuda_ok = d.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if !(d == "cpu" || d == "cuda" || cuda_ok) {
        return fail(at("device"), format!("expected \"cpu\", \"cuda\" or \"cuda:N\", got {d:?}"));
    }
    for (key, n) in [("threads", k.threads), ("interop_threads", k.interop_threads)] {
        if !(1..=256).contains(&n) {
            return fail(at(key), format!("expected 1..=256 threads, got {n}"));
        }
    }
    Ok(())
}

fn validate_mppi(c: &Config) -> Check {
    let m = &c.mppi;
    let at = |key| vec![Key("mppi"), Key(key)];
    for (key, v) in [("horizon", m.horizon), ("samples", m.samples), ("elites", m.elites), ("iterations", m.iterations)]
    {
        if v == Some(0) {
            return fail(at(key), "expected at least 1");
        }
    }
    if let (Some(e), Some(s)) = (m.elites, m.samples) {
        if e > s {
            return fail(at("elites"), format!("{e} elites of {s} samples: expected elites <= samples"));
        }
    }
    if let (Some(p), Some(s)) = (m.prior_samples, m.samples) {
        if p >= s {
            return fail(at("prior_samples"), format!("{p} prior samples of {s}: expected prior_samples < samples"));
        }
    }
    for (key, v) in [("temperature", m.temperature), ("min_std", m.min_std), ("max_std", m.max_std)] {
        if let Some(v) = v {
            positive(at(key), v)?;
        }
    }
    if let (Some(lo), Some(hi)) = (m.min_std, m.max_std) {
        if lo > hi {
            return fail(at("min_std"), format!("expected min_std <= max_std, got {lo} and {hi}"));
        }
    }
    if let Some(g) = m.gamma {
        if !(g > 0.0 && g <= 1.0) {
            return fail(at("gamma"), format!("expected 0 < gamma <= 1, got {g}"));
        }
    }
    let period_ms = 1e3 / c.rate.policy_hz as f64;
    if let Some(b) = m.budget_ms {
        positive(at("budget_ms"), b)?;
        if b >= period_ms {
            return fail(
                at("budget_ms"),
                format!("{b} ms leaves no time in a policy period of {period_ms} ms: expected less"),
            );
        }
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
