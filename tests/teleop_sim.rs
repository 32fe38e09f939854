//! Teleop end to end against the MuJoCo simulator: `locod sim` and `locod run` as two processes
//! on config/sim.toml (teleop on a free loopback port), driven over zenoh by the operator's
//! `Link`. A teleop command reaches the loop and rolls the balancing robot on its wheels; silence
//! brings the command to zero within the lease; the e-stop latches through further commands. And
//! `locod teleop --drive`, the field check's drive, keeps the robot walking in real time.
#![cfg(feature = "sim")]

mod common;
mod teleop_rig;

use locod::config::Config;
use locod::control::messages::{CommandSource, Mode};
use locod::teleop::client::{Link, Outgoing};
use locod::teleop::wire::RequestedMode;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use teleop_rig::{free_port, wait_for, PATIENCE};

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill takes a pid and a signal number; the pid is our own child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Real-time runs take turns: two simulators and two daemons on a 2-core machine would measure
/// the machine, not locod.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn teleop_drives_the_simulated_robot_stops_on_silence_and_estop_latches() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rig = common::SimRig::new(free_port()).patient_motors();
    let path = &rig.config;
    let config = Config::load(path).unwrap();
    let _sim = Killed(rig.start_sim(&[], Stdio::null()));
    let _daemon = Killed(
        Command::new(LOCOD)
            .args(["run", "--duration", "60", "--config"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let link = Link::connect(&config).unwrap();
    wait_for(&link, "first state", PATIENCE, |s| s.mode == Mode::Passive);
    link.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    wait_for(&link, "standing", PATIENCE, |s| s.standing);
    link.send(Outgoing::Mode(RequestedMode::Walk)).unwrap();
    let still = wait_for(&link, "walking", PATIENCE, |s| s.mode == Mode::Walk);

    // Drive. On a loaded 2-core machine the real-time physics can tip the robot (tests/sim.rs
    // leaves staying upright to the lock-step test); what is checked here is teleop's part: the
    // loop applies the command and the wheels roll, and a fall, if any, is a named fault.
    let wheels = [config.joint_index("left_wheel").unwrap(), config.joint_index("right_wheel").unwrap()];
    let (mut applied, mut rolled) = (false, [0.0f64; 2]);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        link.send(Outgoing::Vel([0.2, 0.0, 0.0])).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let s = link.state().unwrap();
        applied |= s.mode == Mode::Walk && s.source == CommandSource::Teleop && s.command.vx > 0.0;
        for (r, w) in rolled.iter_mut().zip(wheels) {
            *r = r.max((s.q_rad[w] - still.q_rad[w]).abs());
        }
    }
    let events = link.diag_lines();
    assert!(applied, "no teleop command applied while walking: {:?}\n{events:#?}", link.state());
    // 0.2 m/s for 3 s on 0.09 m wheels is about 6 rad; a robot that tipped early still rolled some.
    assert!(rolled.iter().all(|r| *r > 1.0), "the wheels did not roll: {rolled:?}\n{events:#?}");
    let driven = link.state().unwrap();
    if driven.mode != Mode::Walk {
        assert!(events.iter().any(|e| e.starts_with("fault: ")), "left Walk without a named fault: {events:#?}");
    }

    // Silence: the lease ends, the command goes to zero.
    wait_for(&link, "lease ended", PATIENCE, |s| s.source == CommandSource::None && s.command.vx == 0.0);

    link.send(Outgoing::EStop).unwrap();
    wait_for(&link, "e-stop", PATIENCE, |s| s.mode == Mode::EStop);
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        link.send(Outgoing::Vel([0.3, 0.0, 0.0])).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = link.state().unwrap();
    assert_eq!((s.mode, s.command.vx), (Mode::EStop, 0.0), "{s:?}");
    link.close();
}

#[test]
fn a_scripted_drive_over_zenoh_keeps_the_real_time_robot_walking() {
    // `make run`'s set-up (the simulator and the daemon as two processes over the ports) driven by
    // the field check's client: stand up, walk, 0.3 m/s forward, a turn, then zero command. The
    // robot must stay walking throughout: the graded fault response and the
    // balance fallback exist so that a loaded machine's timing gaps do not drop it (a degraded
    // fault, held by that fallback, is allowed).
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rig = common::SimRig::new(free_port());
    let _sim = Killed(rig.start_sim(&[], Stdio::null()));
    let _daemon = Killed(
        Command::new(LOCOD)
            .args(["run", "--duration", "90", "--config"])
            .arg(&rig.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let drive = concat!(env!("CARGO_MANIFEST_DIR"), "/config/drives/field.txt");
    let out = Command::new(LOCOD)
        .args(["teleop", "--drive", drive, "--seconds", "30", "--json", "--config"])
        .arg(&rig.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(out.status.success() && report["stayed_walking"] == true, "{report:#}\n{stderr}");
    assert!(report["walked_s"].as_f64().unwrap() >= 30.0, "{report:#}");
    assert!(report["levels"].as_str().unwrap().starts_with("primary"), "{report:#}");
}
