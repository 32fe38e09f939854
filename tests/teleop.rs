//! Teleop end to end over real zenoh sessions on loopback: the daemon (in-memory robot) with its
//! teleop server, an operator's `Link` or raw zenoh publishers, and the Python `eclipse-zenoh`
//! package as an independent client.

mod teleop_rig;

use locod::control::messages::{CommandSource, Mode};
use locod::teleop::client::{Link, Outgoing};
use locod::teleop::wire::{self, RequestedMode};
use std::time::{Duration, Instant};
use teleop_rig::*;
use zenoh::Wait;

fn send_for(link: &Link, out: Outgoing, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        link.send(out).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(c: &locod::config::Config) -> Link {
    let link = Link::connect(c).unwrap();
    wait_for(&link, "first state", PATIENCE, |_| true);
    link
}

#[test]
fn a_command_moves_the_robot_and_silence_brings_it_to_zero_within_the_lease() {
    let c = loopback_config();
    let daemon = Daemon::start(&c);
    let link = connect(&c);
    let before = wait_for(&link, "passive", PATIENCE, |s| s.mode == Mode::Passive);

    link.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    let standing = wait_for(&link, "standing up", PATIENCE, |s| s.standing);
    assert_eq!(standing.mode, Mode::StandUp);
    let moved = before.q_rad.iter().zip(&standing.q_rad).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 0.1, "the joints moved to the standing pose: {:?} -> {:?}", before.q_rad, standing.q_rad);

    send_for(&link, Outgoing::Vel([0.4, 0.0, -0.3]), Duration::from_millis(500));
    let driven = wait_for(&link, "teleop command applied", PATIENCE, |s| s.source == CommandSource::Teleop);
    let last_send = Instant::now();
    assert!(driven.command.vx > 0.0 && driven.command.wz < 0.0, "{driven:?}");

    // Silence: the lease ends and the command goes to zero, not the last value.
    let stopped = wait_for(&link, "lease ended", PATIENCE, |s| s.source == CommandSource::None && s.command.vx == 0.0);
    let lease = Duration::from_secs_f64(c.command.lease_ms / 1e3);
    assert!(last_send.elapsed() >= lease, "the command outlived the last message by at least the lease");
    assert_eq!((stopped.command.vy, stopped.command.wz), (0.0, 0.0));
    link.close();
    let summary = daemon.stop();
    assert_eq!(summary.final_mode, Mode::Passive);
}

#[test]
fn estop_latches_survives_velocity_and_mode_requests_and_resets_only_explicitly() {
    let c = loopback_config();
    let daemon = Daemon::start(&c);
    let link = connect(&c);
    link.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    wait_for(&link, "standing up", PATIENCE, |s| s.mode == Mode::StandUp);

    link.send(Outgoing::EStop).unwrap();
    wait_for(&link, "e-stop", PATIENCE, |s| s.mode == Mode::EStop);
    send_for(&link, Outgoing::Vel([0.5, 0.0, 0.0]), Duration::from_millis(400));
    link.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    send_for(&link, Outgoing::Vel([0.5, 0.0, 0.0]), Duration::from_millis(400));
    let s = link.state().unwrap();
    assert_eq!((s.mode, s.command.vx), (Mode::EStop, 0.0), "{s:?}");
    let diag = link.diag().unwrap();
    assert!(diag.mode.accepted >= 1 && diag.vel.accepted >= 2, "the messages arrived and were refused: {diag:?}");

    link.send(Outgoing::Reset).unwrap();
    wait_for(&link, "reset to passive", PATIENCE, |s| s.mode == Mode::Passive);
    link.close();
    daemon.stop();
}

#[test]
fn teleop_overrides_autonomy_and_autonomy_resumes_after_the_teleop_lease() {
    let c = loopback_config();
    let daemon = Daemon::start(&c);
    let link = connect(&c);
    let auto_key = link.keys().auto_vel.clone();
    let auto = locod::teleop::session::open_blocking(
        locod::teleop::session::zenoh_config(&c, locod::teleop::session::Role::Operator).unwrap(),
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let autonomy = {
        let (auto, stop) = (auto.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                auto.put(auto_key.as_str(), r#"{"vx":0.2}"#).wait().unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    wait_for(&link, "autonomy in charge", PATIENCE, |s| s.source == CommandSource::Autonomy);
    send_for(&link, Outgoing::Vel([-0.3, 0.0, 0.0]), Duration::from_millis(600));
    let s = wait_for(&link, "teleop overrides", PATIENCE, |s| s.source == CommandSource::Teleop);
    assert!(s.command.vx < 0.2, "{s:?}");
    let s =
        wait_for(&link, "autonomy resumes", PATIENCE, |s| s.source == CommandSource::Autonomy && s.command.vx > 0.1);
    assert!(s.command.vx <= 0.2, "{s:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    autonomy.join().unwrap();
    auto.close().wait().unwrap();
    link.close();
    daemon.stop();
}

#[test]
fn bad_payloads_are_rejected_counted_reported_and_never_applied_and_ros_twist_drives() {
    let c = loopback_config();
    let daemon = Daemon::start(&c);
    let link = connect(&c);
    let keys = link.keys().clone();
    let raw = locod::teleop::session::open_blocking(
        locod::teleop::session::zenoh_config(&c, locod::teleop::session::Role::Operator).unwrap(),
    )
    .unwrap();
    // Publishers that know the daemon subscribes, so that every message below is delivered.
    let ros_key = keys.ros_cmd_vel.clone().unwrap();
    let publishers: std::collections::HashMap<String, zenoh::pubsub::Publisher<'static>> =
        [&keys.vel, &keys.auto_vel, &keys.mode, &keys.estop, &ros_key]
            .into_iter()
            .map(|k| {
                let p = raw.declare_publisher(k.clone()).wait().unwrap();
                let end = Instant::now() + PATIENCE;
                while !p.matching_status().wait().unwrap().matching() {
                    assert!(Instant::now() < end, "nobody subscribes to {k}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                (k.clone(), p)
            })
            .collect();
    let put = |key: &str, payload: Vec<u8>| publishers[key].put(payload).wait().unwrap();
    let oversized = format!(r#"{{"vx":0.1,"pad":"{}"}}"#, "x".repeat(2000)).into_bytes();
    for _ in 0..3 {
        put(&keys.vel, br#"{"vx":"#.to_vec()); // malformed
        put(&keys.vel, oversized.clone());
        put(&keys.vel, br#"{"vx":7.0}"#.to_vec()); // beyond max_vel
        put(&keys.auto_vel, br#"{"vx":NaN}"#.to_vec());
        put(&keys.mode, br#"{"mode":"fly"}"#.to_vec());
        put(&keys.estop, br#"{"action":"reset","really":true}"#.to_vec());
        put(&ros_key, wire::encode_twist([0.1, 0.0, 0.0], [f64::NAN, 0.0, 0.0]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = Instant::now() + PATIENCE;
    let d = loop {
        let d = link.diag();
        if let Some(d) = d.filter(|d| d.ros_cmd_vel.non_finite >= 3 && d.estop.malformed >= 3) {
            break d;
        }
        assert!(Instant::now() < end, "rejections not reported: {:?}", link.diag());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((d.vel.malformed, d.vel.oversized, d.vel.out_of_range, d.vel.accepted), (3, 3, 3, 0), "{d:?}");
    assert_eq!((d.auto_vel.malformed, d.mode.malformed, d.mode.accepted), (3, 3, 0), "{d:?}");
    let s = link.state().unwrap();
    assert_eq!((s.source, s.command.vx, s.mode), (CommandSource::None, 0.0, Mode::Passive), "{s:?}");

    // A ROS 2 Twist (teleop_twist_keyboard through zenoh-bridge-ros2dds) drives.
    link.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    let end = Instant::now() + Duration::from_millis(600);
    while Instant::now() < end {
        put(&ros_key, wire::encode_twist([0.3, 0.0, 0.0], [0.0, 0.0, 0.5]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wait_for(&link, "twist applied", PATIENCE, |s| s.source == CommandSource::Teleop);
    assert!(s.command.vx > 0.0 && s.command.wz > 0.0, "{s:?}");
    drop(publishers);
    raw.close().wait().unwrap();
    link.close();
    daemon.stop();
}

#[test]
fn python_eclipse_zenoh_drives_and_reads_state() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/teleop_client.py");
    let c = loopback_config();
    let daemon = Daemon::start(&c);
    let endpoint = c.teleop.as_ref().unwrap().listen[0].clone();
    let out = std::process::Command::new(python)
        .args([script, &endpoint, &c.teleop_prefix()])
        .output()
        .expect("the project's Python environment (scripts/setup-python.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["mode"], "stand_up", "{last}");
    assert_eq!(last["source"], "teleop", "{last}");
    assert!(last["command"]["vx"].as_f64().unwrap() > 0.0, "{last}");
    daemon.stop();
}
