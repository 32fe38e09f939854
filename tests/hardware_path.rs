//! `locod run` on the hardware path, end to end: motors on an slcan adapter (emulated MIT motors
//! behind a pseudo-terminal), the IMU and depth through the firmware bridge (the `bridge-emu`
//! process), the same binary and configuration code as on the robot.

mod common;

use common::{Emu, SlcanMotors};
use locod::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");

struct Robot {
    _dir: tempfile::TempDir,
    config: PathBuf,
    bridge: PathBuf,
    _motors: SlcanMotors,
    /// Last, so that it is released after everything else is torn down.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Robot {
    /// `locod run --goal stand --json` for `seconds`: it must exit 0; its stdout and stderr.
    fn stand_for(&self, seconds: u32) -> (std::process::Output, String) {
        let out = Command::new(LOCOD)
            .args(["run", "--goal", "stand", "--duration", &seconds.to_string(), "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (out, stderr)
    }
}

/// The example robot on one slcan adapter, with the IMU and two depth sensors on the bridge.
fn robot() -> Robot {
    robot_at(&[])
}

/// `robot()` with some motors resting at other (motor-side) angles than zero.
fn robot_at(positions: &[(usize, f32)]) -> Robot {
    let serial = common::one_daemon_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (canable, bridge) = (dir.path().join("canable"), dir.path().join("bridge"));
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/biwheel.toml")).unwrap();
    let hardware =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/biwheel-hardware.toml")).unwrap();
    let section = |t: &str| t.find("\n[imu]\n").unwrap()..t.find("\n[controller]\n").unwrap();
    let sensors = &hardware[section(&hardware)];
    let text = base
        .replacen("kind = \"mem\"\n", &format!("kind = \"slcan\"\ndevice = \"{}\"\n", canable.display()), 1)
        .replace(&base[section(&base)], sensors)
        .replace("/dev/locod-bridge", bridge.to_str().unwrap())
        .replace("tcp/127.0.0.1:7447", "tcp/127.0.0.1:0")
        // A loaded test machine delays threads: this tests the path, not the timing.
        .replace("imu_timeout_ms = 20.0", "imu_timeout_ms = 300.0")
        .replace("motor_timeout_ms = 10.0", "motor_timeout_ms = 200.0");
    let config = dir.path().join("robot.toml");
    std::fs::write(&config, text).unwrap();
    let motors = SlcanMotors::start_at(&Config::load(&config).unwrap(), &canable, positions);
    Robot { _serial: serial, _dir: dir, config, bridge, _motors: motors }
}

#[test]
fn stands_up_on_the_hardware_path_and_stops_cleanly() {
    let r = robot();
    let _emu = Emu::spawn(&r.bridge, &[]);
    let (out, stderr) = r.stand_for(4);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["faults_raised"], 0, "{stderr}\n{summary}");
    assert!(stderr.contains("mode Passive -> StandUp (requested)"), "{stderr}");
    assert!(stderr.contains("mode StandUp -> Passive (shutdown)"), "{stderr}");
    assert!(!stderr.contains("did not answer"), "{stderr}");
}

#[test]
fn losing_the_imu_stream_damps_with_a_clear_report() {
    let r = robot();
    let emu = Emu::spawn(&r.bridge, &[]);
    let child = Command::new(LOCOD)
        .args(["run", "--goal", "stand", "--config"])
        .arg(&r.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    drop(emu); // the bridge goes away mid-stand
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fault: IMU stale"), "{stderr}");
    assert!(stderr.contains("mode StandUp -> Passive (fault: IMU stale"), "{stderr}");
    assert!(stderr.contains("(SIGTERM), final mode Passive"), "{stderr}");
}

#[test]
fn a_silent_motor_on_the_adapter_is_named() {
    let r = robot();
    let _emu = Emu::spawn(&r.bridge, &[]);
    r._motors.faults.silent_joint.store(1, std::sync::atomic::Ordering::Relaxed);
    let (_, stderr) = r.stand_for(4);
    assert!(stderr.contains("motor of joint left_knee (can0 id 0x2) did not answer"), "{stderr}");
    assert!(stderr.contains("fault: motor of joint left_knee: no reply received yet"), "{stderr}");
    assert!(stderr.contains("--goal Stand: waiting for a fault to clear before standing up"), "{stderr}");
    assert!(!stderr.contains("-> StandUp"), "{stderr}");
}

#[test]
fn a_knee_that_powers_up_beyond_its_limit_stands_up_within_every_limit() {
    // right_knee (joint 4, direction +1): pos_max_rad = 0, torque_max_nm = 18, stand kp 40, and
    // an action-rate limit of 10 rad/s at 500 Hz (0.02 rad per tick). Resting at +0.6 rad, a
    // target clamped straight to 0 would ask 24 N·m and jump 0.6 rad.
    let r = robot_at(&[(4, 0.6)]);
    let _emu = Emu::spawn(&r.bridge, &[]);
    let (_, stderr) = r.stand_for(4);
    assert!(stderr.contains("mode Passive -> StandUp (requested)"), "{stderr}");
    let seen = &r._motors.faults.observed;
    // The emulator judges each command at the rotor's state when it arrives, a reply later than
    // the daemon's measurement: a little slack, far below the 24 N·m of a jump.
    assert!(seen.max_demand_nm(4) <= 18.0 * 1.05, "torque demanded {} N·m > 18", seen.max_demand_nm(4));
    assert!(seen.max_target_step_rad(4) <= 0.02 + 1e-3, "target step {} rad > 0.02", seen.max_target_step_rad(4));
}

#[test]
fn garbage_on_the_adapter_is_counted_and_the_channel_is_closed_at_exit() {
    let r = robot();
    let _emu = Emu::spawn(&r.bridge, &[]);
    let seen = &r._motors.faults;
    seen.garbage.store(true, std::sync::atomic::Ordering::Relaxed);
    let text =
        std::fs::read_to_string(&r.config).unwrap().replace("status_interval_s = 5.0", "status_interval_s = 1.0");
    std::fs::write(&r.config, text).unwrap();
    let (out, stderr) = r.stand_for(3);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bus = &summary["buses"][0];
    assert_eq!(bus["bus"], "can0", "{summary}");
    // Every batch the daemon read is counted; batches answering its last frames may arrive after
    // it stopped reading.
    let batches = seen.observed.garbage_batches.load(std::sync::atomic::Ordering::Relaxed);
    let (bad, unknown) = (bus["decode_errors"].as_u64().unwrap(), bus["unknown"].as_u64().unwrap());
    assert!(batches > 100, "{batches}");
    assert!(bad > 0 && bad <= 2 * batches, "{bad} bad lines for {batches} batches");
    assert!(unknown > 0 && unknown <= batches, "{unknown} spoofed frames for {batches} batches");
    assert!(bad + 2 >= 2 * unknown && bad <= 2 * unknown + 2, "{bad} bad lines, {unknown} spoofed");
    assert!(stderr.contains("; bus can0: ") && stderr.contains(" undecodable, "), "status line: {stderr}");
    assert!(!seen.observed.channel_open.load(std::sync::atomic::Ordering::Relaxed), "the slcan channel was left open");
}
