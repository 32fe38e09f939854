//! `locod eval` and learned controllers in lock-step, end to end: the real binary, real MuJoCo, real
//! libtorch with the test models (random weights: they fall, which is fine, these tests are about
//! the machinery). Each configuration is config/sim.toml with its `[controller]` replaced, so the
//! robot, the sensors and the simulator are the ones `make run` uses.
//!
//! Behaviour only, never timing figures: every field is present, a seed reproduces a run exactly
//! (with a fixed `--policy-latency`; plan times are measured and left out of the comparison),
//! `--policy-latency` decides the tick at which each action takes effect (read back from the
//! MCAP logs `--log` writes), and a model with a `depth` term sees the simulated ToF sensors.
#![cfg(feature = "sim")]

use locod::log::read;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod test_models;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Control period of config/sim.toml (500 Hz).
const PERIOD_NS: u64 = 2_000_000;
/// Offset of the `depth` term in the depth student's observation (make_depth_student.py): the
/// proprioceptive terms, 3 + 3 + 3 + 6 + 6 + 6.
const DEPTH_OFFSET: usize = 27;

/// The documented figures of `locod eval --json`, in total and per episode.
const TOTALS: [&str; 3] = ["episodes", "falls", "success_rate"];
const FIGURES: [&str; 13] = [
    "tracking_rms_mps",
    "yaw_tracking_rms_radps",
    "jerk_mean",
    "jerk_max",
    "torque_rms_nm",
    "plan_p50_ms",
    "plan_p99_ms",
    "progress_m",
    "primary_share",
    "prior_share",
    "stand_share",
    "damp_share",
    "walk_s",
];
/// Figures measured on the wall clock.
const TIMING: [&str; 3] = ["plan_p50_ms", "plan_p99_ms", "wall_seconds"];

/// config/sim.toml with `[controller]` running `model` as `kind`, its paths made absolute.
fn config(kind: &str, model: &Path) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(Path::new(REPO).join("config/sim.toml")).unwrap();
    let text = text.replace("\"../models/", &format!("\"{REPO}/models/"));
    let old = "[controller]\nkind = \"balance\"";
    let at = text.find(old).expect("config/sim.toml's [controller] starts with kind = \"balance\"");
    let line_end = at + old.len() + text[at + old.len()..].find('\n').unwrap();
    let text =
        format!("{}[controller]\nkind = \"{kind}\"\nmodel = \"{}\"{}", &text[..at], model.display(), &text[line_end..]);
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn student() -> tempfile::NamedTempFile {
    config("student", &test_models::path("student.pt").unwrap())
}

fn mppi() -> tempfile::NamedTempFile {
    config("mppi", &test_models::path("world_model.pt").unwrap())
}

fn locod(args: &[&str]) -> Output {
    Command::new(LOCOD).args(args).output().unwrap()
}

/// `locod eval --json` with `args`; the parsed document.
fn eval(config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["eval", "--config", config.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = locod(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "locod {all:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {stderr}"))
}

/// `v` without the wall-clock figures, anywhere in it.
fn without_timing(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !TIMING.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), without_timing(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_timing).collect()),
        v => v.clone(),
    }
}

fn check_every_field(r: &Value, episodes: usize) {
    for k in TOTALS {
        assert!(r[k].is_number(), "{k} missing: {r:#}");
    }
    assert_eq!(r["episodes"], episodes);
    let per = r["per_episode"].as_array().expect("per_episode");
    assert_eq!(per.len(), episodes);
    for e in per {
        assert!(e["walk_began_s"].is_number(), "the controller took over in Walk: {e:#}");
        assert!(e["fell"].is_boolean() && e["success"].is_boolean());
        for k in FIGURES {
            assert!(e[k].is_number(), "episode's {k} missing: {e:#}");
        }
        assert!(e["policy_steps"].as_u64().unwrap() > 0 && e["policy_errors"] == 0, "{e:#}");
    }
    for k in FIGURES.iter().filter(|k| **k != "walk_s") {
        for s in ["mean", "min", "max"] {
            assert!(r[k][s].is_number(), "total {k}.{s} missing: {r:#}");
        }
    }
    let shares: f64 =
        ["primary_share", "prior_share", "stand_share", "damp_share"].iter().map(|k| per[0][k].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9, "the level shares add up to 1: {shares}");
}

#[test]
fn eval_runs_a_student_and_an_mppi_planner_and_prints_every_documented_field() {
    // The student's actions wait for their measured compute time; the planner's for a fixed 10 ms,
    // so that a loaded machine cannot make its actions stale (that is what the figures would show).
    for (name, cfg, latency) in [("student", student(), None), ("mppi", mppi(), Some("10"))] {
        let mut args = vec!["--episodes", "2", "--seconds", "2", "--seed", "3"];
        if let Some(ms) = latency {
            args.extend(["--policy-latency", ms]);
        }
        let r = eval(cfg.path(), &args);
        check_every_field(&r, 2);
        assert!(r["controller"].as_str().unwrap().starts_with(name), "{}", r["controller"]);
        assert_eq!(r["scene"], "flat");
        assert_eq!(r["commands"], "random");
        // Without --json: the same figures as a table.
        let out = locod(&["eval", "--config", cfg.path().to_str().unwrap(), "--episodes", "1", "--seconds", "1"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for k in FIGURES.iter().filter(|k| **k != "walk_s") {
            assert!(text.contains(k), "{k} in the table: {text}");
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("eval: episode 1/1"), "a progress line per episode");
    }
}

#[test]
fn lockstep_walks_with_a_learned_controller() {
    let cfg = student();
    let out = locod(&["sim", "--lockstep", "--config", cfg.path().to_str().unwrap(), "--duration", "3", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["walk_began_s"].is_number(), "Walk is granted to the student: {r:#}");
    let events = r["events"].to_string();
    assert!(!events.contains("no walking controller"), "{events}");
    assert!(r["controller"]["name"].as_str().unwrap().starts_with("student"));
    assert!(r["controller"]["actions"].as_u64().unwrap() >= 140, "50 Hz for 3 s: {r:#}");
}

#[test]
fn a_seed_reproduces_an_evaluation_and_another_seed_differs() {
    for cfg in [student(), mppi()] {
        let args =
            |seed: &'static str| ["--episodes", "2", "--seconds", "1.5", "--policy-latency", "10", "--seed", seed];
        let a = without_timing(&eval(cfg.path(), &args("7")));
        let b = without_timing(&eval(cfg.path(), &args("7")));
        assert_eq!(a, b, "same seed, same evaluation");
        let c = without_timing(&eval(cfg.path(), &args("8")));
        assert_ne!(a["per_episode"], c["per_episode"], "another seed, another evaluation");
        assert_eq!(a["per_episode"][0]["seed"], 7);
        assert_eq!(c["per_episode"][1]["seed"], 9);
    }
}

/// For every action in the logs at `dir`: control ticks from its snapshot to the first tick that
/// used it.
fn action_delays(dir: &Path) -> BTreeMap<u64, u64> {
    let mut first_use = BTreeMap::new();
    for f in read::log_files(dir).unwrap() {
        for t in read::read_file(&f).unwrap().ticks {
            if t.policy_t_ns != 0 {
                first_use.entry(t.policy_t_ns).or_insert(t.t_ns);
            }
        }
    }
    first_use.iter().map(|(p, t)| (*p, (t - p) / PERIOD_NS)).collect()
}

#[test]
fn policy_latency_decides_when_an_action_takes_effect() {
    let cfg = student();
    for (latency_ms, ticks) in [("0", 1), ("7", 4), ("25", 13)] {
        let dir = tempfile::tempdir().unwrap();
        let r = eval(
            cfg.path(),
            &[
                "--episodes",
                "1",
                "--seconds",
                "1",
                "--policy-latency",
                latency_ms,
                "--log",
                dir.path().to_str().unwrap(),
            ],
        );
        assert_eq!(r["per_episode"][0]["action_delay_ticks_max"], ticks);
        let delays = action_delays(dir.path());
        assert!(delays.len() > 50, "{} actions in the logs", delays.len());
        assert!(
            delays.values().all(|d| *d == ticks),
            "--policy-latency {latency_ms}: every action used {ticks} ticks after its snapshot: {delays:?}"
        );
    }
}

/// A student with a `depth` term over config/sim.toml's ToF sensors.
fn depth_student(dir: &Path) -> PathBuf {
    let out = dir.join("depth_student.pt");
    let python = Path::new(REPO).join(".venv/bin/python");
    let script = Path::new(REPO).join("tests/python/make_depth_student.py");
    let r = Command::new(python).arg(script).arg(&out).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    out
}

#[test]
fn a_depth_model_sees_the_simulated_tof_sensors_in_lockstep() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("student", &depth_student(dir.path()));
    let logs = dir.path().join("logs");
    let r = eval(cfg.path(), &["--episodes", "1", "--seconds", "1", "--log", logs.to_str().unwrap()]);
    check_every_field(&r, 1);
    let (mut observed, mut near) = (0, 0);
    for f in read::log_files(&logs).unwrap() {
        for t in read::read_file(&f).unwrap().ticks.iter().filter(|t| t.policy_obs.len() == DEPTH_OFFSET + 128) {
            let depth = &t.policy_obs[DEPTH_OFFSET..];
            assert!(depth.iter().all(|d| d.is_finite() && (0.0..=4.0).contains(d)), "{depth:?}");
            observed += 1;
            // The floor in front of the robot: well inside the sensors' 4 m.
            if depth.iter().any(|d| *d < 2.0) {
                near += 1;
            }
        }
    }
    assert!(observed > 100, "{observed} observations with depth in the logs");
    assert!(near * 10 >= observed * 9, "{near} of {observed} observations see the floor closer than 2 m");
}

#[test]
fn scenes_command_files_and_mistakes() {
    let cfg = student();
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands.csv");
    std::fs::write(&commands, "# t_s, vx, yaw_rate\n0, 0.2, 0\n0.5, 0.3, 0.1\n").unwrap();
    let r = eval(cfg.path(), &["--scene", "step", "--episodes", "1", "--seconds", "1"]);
    assert_eq!(r["scene"], "step");
    assert_eq!(r["commands"], "forward", "obstacle scenes drive at them by default");
    assert!(r["scene_file"].as_str().unwrap().ends_with("scene_step.xml"));
    assert_eq!(r["success_rate"], 0.0, "1 s never reaches the top of the step");
    let r = eval(cfg.path(), &["--commands", commands.to_str().unwrap(), "--episodes", "1", "--seconds", "1"]);
    assert_eq!(r["commands"], commands.to_str().unwrap());
    // The real world's extra IMU latency: StandUp waits for the first sample instead of being refused.
    let r = eval(cfg.path(), &["--real-world", "--episodes", "1", "--seconds", "1"]);
    assert_eq!(r["scene"], "soft", "[sim.real_world] model");
    assert!(r["per_episode"][0]["walk_began_s"].is_number(), "{r:#}");

    std::fs::write(&commands, "0, 0.2\n").unwrap();
    let out = locod(&["eval", "--config", cfg.path().to_str().unwrap(), "--commands", commands.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("commands.csv:1: expected `t_s, vx, yaw_rate`"));
    let out = locod(&["eval", "--config", cfg.path().to_str().unwrap(), "--scene", "moon"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown scene");
}

#[test]
fn the_slope_is_a_ramp_ahead_that_the_balance_controller_climbs() {
    // scene_slope.xml: the robot stands up on the level floor, then drives up a slippery 8 degree
    // ramp to its level top (x = 3.48 m). The built-in balance controller climbs it; until the
    // scene had a floor before the ramp, StandUp rolled down the slope and every controller "fell".
    let cfg = Path::new(REPO).join("config/sim.toml");
    let r = eval(&cfg, &["--scene", "slope", "--episodes", "1", "--seconds", "20", "--seed", "7301"]);
    assert!(r["scene_file"].as_str().unwrap().ends_with("scene_slope.xml"));
    let e = &r["per_episode"][0];
    assert!(e["walk_began_s"].is_number(), "stood up before the ramp: {e:#}");
    assert_eq!(e["fell"], false, "{e:#}");
    assert!(e["progress_m"].as_f64().unwrap() > 3.48 && e["success"] == true, "reached the top: {e:#}");
    let r = eval(&cfg, &["--scene", "slope", "--episodes", "1", "--seconds", "3", "--seed", "7301"]);
    assert_eq!(r["per_episode"][0]["success"], false, "3 s of Walk stay below the top: {r:#}");
}

/// `base` with `shadow` as its shadow model (`[controller] shadow`, which needs `[log]` on).
fn with_shadow(base: &tempfile::NamedTempFile, shadow: &Path, logs: &Path) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(base.path()).unwrap();
    let at = text.find("[controller]").unwrap();
    let model_end = at + text[at..].find("\nmodel = ").unwrap() + 1;
    let line_end = model_end + text[model_end..].find('\n').unwrap();
    let text = format!(
        "{}\nshadow = \"{}\"{}\n[log]\nenabled = true\ndir = \"{}\"\n",
        &text[..line_end],
        shadow.display(),
        &text[line_end..],
        logs.display()
    );
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Per logged episode (a mode segment): the live actions by the snapshot they were computed on,
/// and the shadow's steps; every file names the shadow model.
#[allow(clippy::type_complexity)]
fn live_and_shadow(dir: &Path) -> Vec<(BTreeMap<u64, Vec<f32>>, Vec<locod::log::schema::Shadow>)> {
    let mut episodes: BTreeMap<u64, (BTreeMap<u64, Vec<f32>>, Vec<locod::log::schema::Shadow>)> = BTreeMap::new();
    for f in read::log_files(dir).unwrap() {
        let f = read::read_file(&f).unwrap();
        assert!(f.metadata.contains_key("model.shadow.sha256"), "{:?}: {:?}", f.path, f.metadata.keys());
        for t in f.ticks.iter().filter(|t| t.policy_t_ns != 0) {
            episodes.entry(t.episode).or_default().0.entry(t.policy_t_ns).or_insert_with(|| t.policy_action.clone());
        }
        for s in f.shadow {
            episodes.entry(s.episode).or_default().1.push(s);
        }
    }
    episodes.into_values().collect()
}

#[test]
fn eval_runs_and_logs_a_shadow_model_beside_a_learned_controller() {
    let student_pt = test_models::path("student.pt").unwrap();
    let args = |dir: &Path| {
        ["--episodes", "2", "--seconds", "2", "--seed", "3", "--policy-latency", "10", "--log", dir.to_str().unwrap()]
            .map(String::from)
    };
    // The same model as shadow acts on the same snapshots as the live one, in turn, so it acts
    // the same (within the rounding of two loaded copies: tests/shadow.rs).
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_shadow(&student(), &student_pt, &dir.path().join("unused"));
    let a = args(dir.path());
    let r = eval(cfg.path(), &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["episodes"], 2);
    // The logs' episodes are mode segments: StandUp (where the controller already acts, its
    // actions unused until Walk), then Walk until the time limit or a fall (the test student's
    // random weights fall within a second).
    let episodes = live_and_shadow(dir.path());
    let counts: Vec<_> = episodes.iter().map(|(l, s)| (l.len(), s.len())).collect();
    assert_eq!(episodes.len(), 4, "{counts:?}");
    assert!(episodes.iter().map(|(_, s)| s.len()).sum::<usize>() >= 200, "{counts:?}");
    for (live, shadow) in &episodes {
        // The last step or two may have no tick that applied them before the episode ended.
        let matched: Vec<_> = shadow.iter().filter_map(|s| live.get(&s.policy_t_ns).map(|a| (a, s))).collect();
        assert!(matched.len() + 2 >= shadow.len(), "{} of {} shadow steps matched", matched.len(), shadow.len());
        for (i, (a, s)) in matched.iter().enumerate() {
            assert!(s.failed.is_empty(), "{}", s.failed);
            let d = a.iter().zip(&s.policy_action).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(d < if i == 0 { 1e-6 } else { 1e-3 }, "step {i}: {a:?} vs {:?}", s.policy_action);
        }
    }
    // Another model logs its own actions on the same snapshots; the live actions do not change.
    let other = tempfile::tempdir().unwrap();
    let cfg = with_shadow(&student(), &test_models::path("student_gru.pt").unwrap(), &other.path().join("unused"));
    let a = args(other.path());
    let r2 = eval(cfg.path(), &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(without_timing(&r2["per_episode"]), without_timing(&r["per_episode"]), "a shadow moved the robot");
    let gru = live_and_shadow(other.path());
    let pairs: Vec<_> = gru
        .iter()
        .flat_map(|(live, shadow)| shadow.iter().filter_map(|s| live.get(&s.policy_t_ns).map(|a| (a, s))))
        .collect();
    assert!(pairs.len() >= 200);
    assert!(pairs.iter().any(|(a, s)| **a != s.policy_action), "a different model acted the same");
}
