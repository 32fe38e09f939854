//! `make run` (scripts/run-sim.sh): the simulator and the daemon as two processes. The daemon starts
//! only once the simulator has linked its ports, however long the simulator takes, and a Ctrl-C
//! stops the daemon first (it damps while the simulated motors still answer), then the simulator,
//! with no fault in between.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run-sim.sh");

/// The script on `config` with `locod` as its binary, in a process group of its own (as a
/// terminal's foreground job is), its stderr collected line by line.
fn start(locod: &Path, config: &Path, args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(SCRIPT)
        .arg(config)
        .args(args)
        .env("LOCOD", locod)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/run-sim.sh");
    let log = Arc::new(Mutex::new(String::new()));
    let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (child, log)
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn the_daemon_waits_for_a_slow_simulators_ports() {
    let _one = common::one_daemon_at_a_time();
    let rig = common::SimRig::new(0);
    // A simulator that needs 3 s before it links its ports (a cold MuJoCo start on a busy machine).
    let slow = rig.dir.path().join("slow-locod");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\n[ \"$1\" = sim ] && sleep 3\nexec {} \"$@\"\n", common::release_locod().display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, log) = start(&slow, &rig.config, &["--duration", "2", "--goal", "stand"]);
    let status = wait_for(&mut child, Duration::from_secs(60));
    let log = log.lock().unwrap().clone();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(log.contains("control loop running") && log.contains("Passive -> StandUp"), "{log}");
}

#[test]
fn ctrl_c_damps_the_robot_before_the_simulator_stops() {
    let _one = common::one_daemon_at_a_time();
    let rig = common::SimRig::new(0);
    let (mut child, log) = start(common::release_locod(), &rig.config, &["--goal", "stand"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.lock().unwrap().contains("Passive -> StandUp") {
        assert!(child.try_wait().unwrap().is_none(), "ended before standing up:\n{}", log.lock().unwrap());
        assert!(Instant::now() < deadline, "no StandUp within 60 s:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    // What a terminal does on Ctrl-C: SIGINT to its foreground process group.
    let sent_at = log.lock().unwrap().len();
    // SAFETY: kill has no memory-safety preconditions; the group is the script's own.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    let status = wait_for(&mut child, Duration::from_secs(60));
    let log = log.lock().unwrap().clone();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    let after = &log[sent_at..];
    // The daemon took the SIGINT and damped for shutdown_damp_ms with the simulator still there,
    // which stopped only after the daemon had: no port vanished under the daemon.
    let daemon_stopped = after.find("(SIGINT), final mode").unwrap_or_else(|| panic!("the daemon's summary:\n{log}"));
    let sim_stopped = after.find("sim: stopped").unwrap_or_else(|| panic!("the simulator's summary:\n{log}"));
    assert!(daemon_stopped < sim_stopped, "the simulator stopped before the daemon:\n{log}");
    assert!(!after.contains("disconnected"), "a port vanished under the daemon:\n{log}");
}
