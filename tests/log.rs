//! Transition logs end to end: the daemon records, is killed, and the logs are recovered; logs
//! are read back by the Python `mcap` reader and exports by pyarrow (the project's venv), both
//! independent of locod; bad input gets a clear error.

use locod::config::LogConfig;
use locod::control::messages::{CommandSource, ControllerLevel, Mode, PolicyAction};
use locod::control::record::{flags, TickRecord};
use locod::estimate::RobotState;
use locod::log::read;
use locod::log::writer::Logger;
use locod::types::{MotorCommands, SensorFrame};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");
const MS: u64 = 1_000_000;

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// The example configuration with logging on into `dir`.
fn config_logging_to(dir: &Path, fsync_ms: u32) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))
        .unwrap()
        .replace("enabled = false ", "enabled = true  ")
        .replace("dir = \"logs\"", &format!("dir = {:?}", dir.display().to_string()))
        .replace("fsync_interval_ms = 500.0", &format!("fsync_interval_ms = {fsync_ms}.0"))
        // Teleop on an ephemeral port: daemons of parallel tests must not compete for 7447.
        .replace("tcp/127.0.0.1:7447", "tcp/127.0.0.1:0");
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn monotonic_ns() -> u64 {
    locod::rt::clock::monotonic_ns()
}

#[test]
fn sigkill_mid_recording_loses_at_most_the_sync_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_logging_to(dir.path(), 200);
    let mut child = Command::new(LOCOD)
        .args(["run", "--goal", "stand", "--config"])
        .arg(cfg.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    let killed_at_ns = monotonic_ns();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let parts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert_eq!(parts.len(), 1, "the open episode stays as a .part file");

    let stderr = ok(&Command::new(LOCOD).args(["log", "recover"]).arg(dir.path()).output().unwrap());
    assert!(stderr.contains("recovered"), "{stderr}");
    let files = read::log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let log = read::read_file(&files[0]).unwrap();
    let ticks: Vec<u64> = log.ticks.iter().map(|t| t.tick).collect();
    assert_eq!(ticks, (1..=ticks.len() as u64).collect::<Vec<_>>(), "every tick up to the last chunk, in order");
    let last_ns = log.ticks.last().unwrap().t_ns;
    // CLOCK_MONOTONIC is shared by the daemon and this test.
    let lost_ms = killed_at_ns.saturating_sub(last_ns) / MS;
    assert!(lost_ms <= 1000, "lost the last {lost_ms} ms; the bound is 1 s (fsync every 200 ms)");
    assert!(ticks.len() > 500, "only {} ticks recovered", ticks.len());
    // The recovered file is what the Python reader sees too.
    let out = Command::new(python()).arg(script("check_mcap.py")).arg(&files[0]).output().unwrap();
    ok(&out);
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["count"], ticks.len());
}

#[test]
fn the_python_mcap_reader_sees_named_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_logging_to(dir.path(), 500);
    let out = Command::new(LOCOD)
        .args(["run", "--goal", "stand", "--duration", "2.5", "--json", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ticks = summary["timing"]["ticks"].as_u64().unwrap();
    assert_eq!(summary["log"]["records_written"], ticks);
    assert_eq!(summary["log"]["records_dropped"], 0);
    let files = read::log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let out = Command::new(python()).arg(script("check_mcap.py")).arg(&files[0]).output().unwrap();
    ok(&out);
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["schema"], "locod_msgs/msg/Tick");
    assert_eq!(seen["encoding"], "ros2msg");
    assert_eq!(seen["count"], ticks);
    assert_eq!(seen["n_joint_q"], 6);
    for field in
        ["joint_q_rad", "cmd_kp", "est_quat_wxyz", "command_vel", "policy_obs", "planner_best_return", "mode", "flags"]
    {
        assert!(seen["fields"].as_array().unwrap().iter().any(|f| f == field), "{field} missing: {}", seen["fields"]);
    }
    assert_eq!(seen["modes"], serde_json::json!([0, 1])); // Passive, StandUp
    assert_eq!(seen["first_quat"], serde_json::json!([1.0, 0.0, 0.0, 0.0]));
    assert_eq!(seen["last_cmd_kp"], serde_json::json!(vec![0.0; 6])); // damped at shutdown
    let meta = &seen["metadata"]["locod"];
    assert_eq!(meta["robot"], "biwheel");
    assert_eq!(meta["joint_names"], "left_hip,left_knee,left_wheel,right_hip,right_knee,right_wheel");
    assert!(meta["software"].as_str().unwrap().starts_with("locod "));
    assert_eq!(seen["metadata"]["locod.episode_end"]["reason"], "stop");
}

fn tick(tick: u64, mode: Mode, extra_ns: u64) -> TickRecord {
    let t_ns = 1_000 * MS + tick * 2 * MS + extra_ns;
    let mut r = TickRecord {
        tick,
        t_ns,
        deadline_ns: t_ns - 10_000,
        compute_ns: 4_000,
        skipped_cycles: 0,
        records_dropped: 0,
        n_joints: 2,
        sensors: SensorFrame::default(),
        estimate: (&RobotState::default()).into(),
        policy: PolicyAction::default(),
        commands: MotorCommands::default(),
        command_vel: [0.0; 3],
        source: CommandSource::None,
        mode,
        level: ControllerLevel::Primary,
        fault: None,
        flags: 0,
    };
    r.sensors.joints[0].q_rad = tick as f64;
    r.sensors.joints[1].qd_radps = -(tick as f64);
    r
}

/// 230 ticks: Passive, StandUp, Walk (with a skipped cycle at 151 and tick 171 missing from the
/// ring), Passive. Episodes: 1..=100, 101..=200 (99 records), 201..=230.
fn synthetic_logs(dir: &Path) {
    let cfg = LogConfig { enabled: true, dir: dir.into(), ..LogConfig::default() };
    let meta = BTreeMap::from([
        ("robot".to_string(), "synthetic".to_string()),
        ("joint_names".to_string(), "hip,knee".to_string()),
        ("control_hz".to_string(), "500".to_string()),
    ]);
    let mut logger = Logger::new(&cfg, meta);
    for t in 1..=230u64 {
        let mode = match t {
            1..=50 => Mode::Passive,
            51..=100 => Mode::StandUp,
            101..=200 => Mode::Walk,
            _ => Mode::Passive,
        };
        let late = if t > 150 { 2 * MS } else { 0 };
        let mut r = tick(t, mode, late);
        if t == 151 {
            r.skipped_cycles = 1;
            r.flags |= flags::DROPPED_TICK;
        }
        if t == 171 {
            continue; // refused by the ring
        }
        if t == 172 {
            r.flags |= flags::RECORDS_DROPPED;
            r.records_dropped = 1;
        }
        logger.record(&r, r.t_ns);
    }
    logger.close();
}

#[test]
fn export_pairs_next_observations_only_within_episodes_and_read_back_by_pyarrow() {
    let logs = tempfile::tempdir().unwrap();
    synthetic_logs(logs.path());
    assert_eq!(read::log_files(logs.path()).unwrap().len(), 3);
    // Frames 49 (mode change), 99, 149 (skipped cycle next), 169 (dropped record next), 198 and
    // 228 (episode ends) have no next.
    let want = serde_json::json!({
        "fps": 500, "frames": 229, "episodes": 3, "valid_pairs": 223, "state_dim": 16,
        "unpaired_frames": [49, 99, 149, 169, 198, 228],
    });
    for format in ["lerobot", "numpy"] {
        let out = tempfile::tempdir().unwrap();
        let stderr = ok(&Command::new(LOCOD)
            .arg("export")
            .arg(logs.path())
            .arg("--out")
            .arg(out.path())
            .args(["--format", format])
            .output()
            .unwrap());
        assert!(stderr.contains("exported 3 episodes, 229 frames (223 valid transitions) at 500 Hz"), "{stderr}");
        let check = Command::new(python())
            .arg(script("check_export.py"))
            .arg(out.path())
            .arg(want.to_string())
            .output()
            .unwrap();
        ok(&check);
    }
    let out = tempfile::tempdir().unwrap();
    let stderr = ok(&Command::new(LOCOD)
        .arg("export")
        .arg(logs.path())
        .arg("--out")
        .arg(out.path())
        .arg("--walk-only")
        .output()
        .unwrap());
    assert!(stderr.contains("exported 1 episodes, 99 frames (96 valid transitions)"), "{stderr}");
}

/// 300 ticks of Walk at 500 Hz with a 50 Hz policy (a new action every 10 ticks, computed from a
/// snapshot 1 ms before the tick that takes it). The balance fallback holds the robot on ticks
/// 101..=110, the policy skips the step due at tick 151, tick 201 is missing from the ring.
fn synthetic_policy_logs(dir: &Path) {
    let cfg = LogConfig { enabled: true, dir: dir.into(), ..LogConfig::default() };
    let meta = BTreeMap::from([
        ("robot".to_string(), "synthetic".to_string()),
        ("joint_names".to_string(), "hip,knee".to_string()),
        ("control_hz".to_string(), "500".to_string()),
        ("policy_hz".to_string(), "50".to_string()),
        ("model_files".to_string(), "wm.pt sha256:abc".to_string()),
    ]);
    let mut logger = Logger::new(&cfg, meta);
    let mut action = PolicyAction::default();
    for t in 1..=300u64 {
        let mut r = tick(t, Mode::Walk, 0);
        let step = t % 10 == 1 && t != 151;
        if step {
            let k = (t / 10) as f32;
            action.t_ns = r.t_ns - MS;
            action.obs_len = 2;
            action.obs[..2].copy_from_slice(&[k, 2.0 * k]);
            action.action_len = 2;
            action.action[..2].copy_from_slice(&[0.1 * k, -0.1 * k]);
            action.planner.best_return = k;
            r.flags |= flags::POLICY_STEP;
        }
        r.policy = action;
        if (101..=110).contains(&t) {
            r.level = ControllerLevel::Stand;
        } else {
            r.flags |= flags::POLICY_FRESH;
        }
        if t == 201 {
            continue; // refused by the ring
        }
        if t == 202 {
            r.flags |= flags::RECORDS_DROPPED;
            r.records_dropped = 1;
        }
        logger.record(&r, r.t_ns);
    }
    logger.close();
}

#[test]
fn policy_rate_export_pairs_steps_only_where_the_action_was_applied_throughout() {
    let logs = tempfile::tempdir().unwrap();
    synthetic_policy_logs(logs.path());
    // 29 steps (151's was skipped; 201's is found at 202, the first record carrying it). Steps
    // 101 (the fallback held the robot), 141 (the next step is 20 ms late), 191 (a record is
    // missing) and 291 (the episode ends) have no next.
    let want = serde_json::json!({
        "fps": 50, "frames": 29, "episodes": 1, "valid_pairs": 25, "state_dim": 2,
        "unpaired_frames": [10, 14, 18, 28],
    });
    for format in ["lerobot", "numpy"] {
        let out = tempfile::tempdir().unwrap();
        let stderr = ok(&Command::new(LOCOD)
            .arg("export")
            .arg(logs.path())
            .arg("--out")
            .arg(out.path())
            .args(["--format", format, "--rate", "policy"])
            .output()
            .unwrap());
        assert!(stderr.contains("exported 1 episodes, 29 policy steps (25 valid transitions) at 50 Hz"), "{stderr}");
        let check = Command::new(python())
            .arg(script("check_export.py"))
            .arg(out.path())
            .arg(want.to_string())
            .output()
            .unwrap();
        ok(&check);
        if format == "lerobot" {
            let info: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.path().join("meta/info.json")).unwrap()).unwrap();
            assert_eq!(info["locod"]["rate"], "policy");
            assert_eq!(info["locod"]["provenance"][0]["model_files"], "wm.pt sha256:abc");
            for name in ["action", "observation.robot_state", "plan.value", "plan.compute_us", "next.valid"] {
                assert!(info["features"].get(name).is_some(), "{name} missing: {}", info["features"]);
            }
        }
    }
    // Logs in which no learned controller ran have no policy steps: a clear error.
    let control_only = tempfile::tempdir().unwrap();
    synthetic_logs(control_only.path());
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(LOCOD)
        .arg("export")
        .arg(control_only.path())
        .arg("--out")
        .arg(out.path())
        .args(["--rate", "policy"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no policy steps to export"), "{o:?}");
}

#[test]
fn report_writes_the_plots() {
    let logs = tempfile::tempdir().unwrap();
    synthetic_logs(logs.path());
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(LOCOD).arg("report").arg(logs.path()).arg("--out").arg(out.path()).output().unwrap();
    ok(&o);
    for name in ["timing.png", "velocity.png", "attitude.png", "torques.png", "modes.png", "planner.png"] {
        let bytes = std::fs::read(out.path().join(name)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{name}: {} bytes", bytes.len());
    }
}

#[test]
fn damaged_logs_get_a_clear_error_from_export_report_and_recover() {
    let logs = tempfile::tempdir().unwrap();
    synthetic_logs(logs.path());
    let files = read::log_files(logs.path()).unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
    let out = tempfile::tempdir().unwrap();
    for args in [vec!["export"], vec!["report"]] {
        let o = Command::new(LOCOD).args(&args).arg(logs.path()).arg("--out").arg(out.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{}: damaged or incomplete", files[1].display())), "{stderr}");
        assert!(stderr.contains("locod log recover"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Recover keeps what is intact of the cut file.
    let o = Command::new(LOCOD).args(["log", "recover"]).arg(&files[1]).output().unwrap();
    let stderr = ok(&o);
    assert!(stderr.contains(".recovered.mcap"), "{stderr}");
    // Garbage is refused with the reason.
    let junk = logs.path().join("junk.mcap.part");
    std::fs::write(&junk, b"\x89MCAP0\r\n but then nonsense").unwrap();
    let o = Command::new(LOCOD).args(["log", "recover"]).arg(&junk).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("junk.mcap.part") && !stderr.contains("panicked"), "{stderr}");
    std::fs::write(&junk, b"hello").unwrap();
    let o = Command::new(LOCOD).args(["log", "recover"]).arg(&junk).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an MCAP file"));
}

#[test]
fn an_unwritable_log_directory_does_not_stop_the_robot() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("logs");
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    let cfg = config_logging_to(&dir, 500);
    let out = Command::new(LOCOD)
        .args(["run", "--goal", "stand", "--duration", "1.5", "--json", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let stderr = ok(&out);
    assert!(stderr.contains("log: recording stopped") && stderr.contains("The robot keeps running"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["final_mode"], "passive");
    assert_eq!(summary["faults_raised"], 0, "{stderr}");
    assert_eq!(summary["log"]["records_written"], 0);
    assert_eq!(summary["log"]["records_lost"], summary["timing"]["ticks"]);
}

/// A small tmpfs mounted on a fresh directory (a disk that fills up), unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `Err` says why mounting is impossible here (not root, no CAP_SYS_ADMIN, no `mount`).
    fn mount(size_kb: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kb}k"), "locod-test"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size_kb: u32) {
        let out =
            Command::new("mount").args(["-o", &format!("remount,size={size_kb}k")]).arg(self.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_named_counted_honestly_and_recovered_once_there_is_space() {
    let disk = match Tmpfs::mount(32) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs to fill ({why}); this test needs root (CAP_SYS_ADMIN)");
            return;
        }
    };
    let dir = disk.path().join("logs");
    let cfg = config_logging_to(&dir, 200);
    let out = Command::new(LOCOD)
        .args(["run", "--goal", "stand", "--duration", "3", "--json", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let stderr = ok(&out);
    assert!(stderr.contains("log: recording stopped") && stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("I/O error from writing"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written = summary["log"]["records_written"].as_u64().unwrap();
    let ticks = summary["timing"]["ticks"].as_u64().unwrap();
    assert!(written > 0 && written < ticks, "{written} of {ticks} ticks: the disk should have filled during the run");
    let files = || -> Vec<(String, u64)> {
        let mut f: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        f.sort();
        f
    };
    assert!(files().iter().all(|(_, len)| *len > 0), "no empty file stays behind: {:?}", files());
    assert!(files().iter().any(|(n, _)| n.ends_with(".mcap.part")), "{:?}", files());

    // Recovery on the still full disk fails, says why, names the .part file and leaves nothing.
    let before = files();
    let o = Command::new(LOCOD).args(["log", "recover"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(".mcap.part: cannot write the recovered copy") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(!err.contains("nothing to recover") && !err.contains(".recovering"), "{err}");
    assert_eq!(files(), before, "a failed recovery changes nothing");

    // With space, every record the summary counted as written is recovered.
    disk.resize(1024);
    ok(&Command::new(LOCOD).args(["log", "recover"]).arg(&dir).output().unwrap());
    let recovered: usize = read::log_files(&dir).unwrap().iter().map(|f| read::read_file(f).unwrap().ticks.len()).sum();
    assert_eq!(recovered as u64, written, "the summary counts exactly what is on disk");
}
