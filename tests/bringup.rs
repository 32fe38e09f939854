//! `locod motors` against emulated MIT-mode motors behind an emulated slcan adapter on a real
//! pseudo-terminal: the same binary, configuration path and serial code as on the robot.

use locod::config::Config;
use locod::io::doubles::motor_emulator::{EmulatorFaults, MotorEmulator};
use locod::io::transport::serial::Port;
use serialport::SerialPort as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod common;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");

struct Bench {
    dir: tempfile::TempDir,
    config: PathBuf,
    faults: Arc<EmulatorFaults>,
    thread: Option<std::thread::JoinHandle<()>>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Bench {
    /// The example robot with its bus on an slcan adapter at `<dir>/canable`.
    fn new() -> Self {
        let serial = common::one_daemon_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("canable");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))
            .unwrap()
            .replacen("kind = \"mem\"\n", &format!("kind = \"slcan\"\ndevice = \"{}\"\n", link.display()), 1)
            .replace("[imu]\nkind = \"mem\"", "[imu]\nkind = \"witmotion\"\nport = \"/dev/locod-imu-unused\"")
            .replace("name = \"biwheel\"\n", "name = \"biwheel\"\ncalibration = \"biwheel.calibration.toml\"\n");
        let config = dir.path().join("robot.toml");
        std::fs::write(&config, text).unwrap();
        let parsed = Config::load(&config).unwrap();
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave); // it holds serialport's exclusive flock, which locod must get
        std::os::unix::fs::symlink(&name, &link).unwrap();
        // A plain handle (no lock) keeps the pty's slave side open between locod's runs.
        std::mem::forget(std::fs::File::open(&name).unwrap());
        let (mut emu, faults) = MotorEmulator::new(&parsed, 0).unwrap();
        emu.set_position(0, 0.25); // left hip motor at 0.25 rad
        let thread = emu.serve_slcan(Port::from_tty(master).unwrap());
        Bench { dir, config, faults, thread: Some(thread), _serial: serial }
    }

    fn motors(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new(LOCOD)
            .args(["motors", "--config"])
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn calibration(&self) -> PathBuf {
        self.dir.path().join("biwheel.calibration.toml")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.faults.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn row<'a>(out: &'a str, joint: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(joint)).unwrap_or_else(|| panic!("no row for {joint} in:\n{out}"))
}

#[test]
fn scan_counts_garbage_on_the_adapter_and_closes_the_channel() {
    let bench = Bench::new();
    bench.faults.garbage.store(true, Ordering::Relaxed);
    let (ok, out, err) = bench.motors(&["scan"], "");
    assert!(ok, "{err}");
    assert!(out.contains("6 of 6 motors answered"), "{out}");
    let line = out.lines().find(|l| l.starts_with("bus can0: ")).unwrap_or_else(|| panic!("no bus line:\n{out}"));
    let count = |what: &str| -> u64 {
        let words: Vec<&str> = line.split([' ', ',', ':']).filter(|w| !w.is_empty()).collect();
        let i = words.iter().position(|w| *w == what).unwrap_or_else(|| panic!("{what} in {line}"));
        words[i - 1].parse().unwrap()
    };
    let batches = bench.faults.observed.garbage_batches.load(Ordering::Relaxed);
    assert!(count("undecodable") > 0 && count("undecodable") <= 2 * batches, "{line} ({batches} batches)");
    assert!(count("unknown") > 0 && count("unknown") <= batches, "{line} ({batches} batches)");
    assert!(!bench.faults.observed.channel_open.load(Ordering::Relaxed), "locod motors left the channel open");
}

#[test]
fn scan_lists_every_motor_and_names_a_silent_one() {
    let bench = Bench::new();
    let (ok, out, err) = bench.motors(&["scan"], "");
    assert!(ok, "{err}");
    assert!(out.contains("6 of 6 motors answered"), "{out}");
    let hip: Vec<&str> = row(&out, "left_hip").split_whitespace().collect();
    assert_eq!(&hip[..4], ["left_hip", "can0", "0x1", "ak80_9"]);
    assert!((hip[4].parse::<f64>().unwrap() - 0.25).abs() < 1e-3, "{out}");
    assert!(row(&out, "right_wheel").contains("41"), "Damiao temperature: {out}");

    bench.faults.silent_joint.store(4, Ordering::Relaxed);
    let (_, out, _) = bench.motors(&["scan"], "");
    assert!(row(&out, "right_knee").contains("no answer"), "{out}");
    assert!(out.contains("5 of 6 motors answered"), "{out}");
}

#[test]
fn jog_moves_the_joint_and_back_and_refuses_wheels_and_big_steps() {
    let bench = Bench::new();
    let (ok, out, err) = bench.motors(&["jog", "left_hip", "--step-rad", "0.1"], "");
    assert!(ok, "{err}");
    let reached: f64 =
        out.split("reached ").nth(1).unwrap().split(' ').next().unwrap().trim_end_matches(',').parse().unwrap();
    assert!((reached - 0.35).abs() < 0.03, "{out}");
    assert!(!out.contains("wrong way"), "{out}");
    let (ok, _, err) = bench.motors(&["jog", "left_wheel"], "");
    assert!(!ok && err.contains("velocity (wheel) joint"), "{err}");
    let (ok, _, err) = bench.motors(&["jog", "left_hip", "--step-rad", "2"], "");
    assert!(!ok && err.contains("within ±0.5 rad"), "{err}");
}

#[test]
fn zero_needs_confirmation_and_writes_the_calibration_file() {
    let bench = Bench::new();
    let (ok, _, err) = bench.motors(&["zero", "left_hip"], "right_hip\n");
    assert!(!ok && err.contains("not confirmed"), "{err}");
    assert!(!bench.calibration().exists());

    let (ok, out, err) = bench.motors(&["zero", "left_hip", "--pose-rad", "0.6"], "left_hip\n");
    assert!(ok, "{err}");
    assert!(out.contains("wrote offset_rad.left_hip"), "{out}");
    let written = std::fs::read_to_string(bench.calibration()).unwrap();
    assert!(written.contains("[offset_rad]") && written.contains("left_hip = 0.35"), "{written}");

    // The configuration now reads the hip at the calibration pose.
    let (_, out, _) = bench.motors(&["scan"], "");
    let q: f64 = row(&out, "left_hip").split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!((q - 0.6).abs() < 1e-3, "{out}");
    let c = Config::load(Path::new(&bench.config)).unwrap();
    assert!((c.joints[0].offset_rad - 0.35).abs() < 1e-3);
}

#[test]
fn a_bad_calibration_file_is_a_located_error() {
    let bench = Bench::new();
    std::fs::write(bench.calibration(), "[offset_rad]\nleft_hip = 0.1\nleft_hop = 0.2\n").unwrap();
    let e = Config::load(&bench.config).unwrap_err().to_string();
    assert!(e.contains("biwheel.calibration.toml:3:1: offset_rad.left_hop: no joint named \"left_hop\""), "{e}");
}
