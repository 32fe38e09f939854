//! Shadow mode end to end: the daemon (in-memory robot, the test student walking) runs a second
//! model beside the live one on the same observations; its steps land in the same log files on
//! their own channel, matched to the live steps by the snapshot both acted on; `locod report`
//! plots them; `locod check` and the configuration refuse a shadow that cannot run.

#[allow(dead_code)] // each test crate uses part of it
mod test_models;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");

/// Pairs each shadow step with the live action of the same snapshot, the k-th shadow step on a
/// snapshot with its k-th live action.
fn pair_by_snapshot<'a>(
    live: &'a BTreeMap<u64, Vec<Vec<f32>>>,
    shadow: &'a [locod::log::schema::Shadow],
) -> Vec<(&'a Vec<f32>, &'a locod::log::schema::Shadow)> {
    let mut seen = BTreeMap::<u64, usize>::new();
    shadow
        .iter()
        .filter_map(|s| {
            let k = seen.entry(s.policy_t_ns).or_default();
            *k += 1;
            live.get(&s.policy_t_ns).and_then(|a| a.get(*k - 1)).map(|a| (a, s))
        })
        .collect()
}

/// tests/data/student.toml logging into `dir/logs`, with `shadow` as its shadow model.
fn config(dir: &Path, shadow: &Path, log: bool) -> PathBuf {
    let model = test_models::path("student.pt").unwrap();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/student.toml")).unwrap().replace(
            "model = \"../../models/build/student.pt\"",
            &format!("model = {:?}\nshadow = {:?}", model.display().to_string(), shadow.display().to_string()),
        );
    let text = format!("{text}\n[log]\nenabled = {log}\ndir = {:?}\n", dir.join("logs").display().to_string());
    let path = dir.join("robot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Walks for a few seconds; returns (the live actions by snapshot time, shadow steps) from the
/// logs. A snapshot can carry more than one live action: when the control loop stalls for a
/// policy period, the policy acts on the same snapshot again (its history and `last_action` have
/// moved on, so the action differs), and so does the shadow. They are kept in the order applied.
#[allow(clippy::type_complexity)]
fn walk_and_read(dir: &Path, cfg: &Path) -> (BTreeMap<u64, Vec<Vec<f32>>>, Vec<locod::log::schema::Shadow>) {
    let out = Command::new(LOCOD)
        .args(["run", "--goal", "walk", "--duration", "4", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("runs beside the controller on the same observations, logged, never actuated"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["shadow_compute"]["count"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(summary["shadow_dropped"], 0, "{summary}");
    let (mut live, mut shadow) = (BTreeMap::new(), Vec::new());
    for f in locod::log::read::log_files(&dir.join("logs")).unwrap() {
        let f = locod::log::read::read_file(&f).unwrap();
        assert!(f.metadata.contains_key("model.shadow.sha256"), "the shadow's provenance is in every file");
        for t in f.ticks.iter().filter(|t| !t.policy_action.is_empty()) {
            let actions: &mut Vec<Vec<f32>> = live.entry(t.policy_t_ns).or_default();
            if actions.last() != Some(&t.policy_action) {
                actions.push(t.policy_action.clone());
            }
        }
        shadow.extend(f.shadow);
    }
    (live, shadow)
}

#[test]
fn a_shadow_acts_on_the_live_observations_is_logged_beside_them_and_is_plotted() {
    // The same model as shadow, on the same snapshots: the same actions. Not bit for bit: two
    // loaded copies of a TorchScript graph may run differently fused kernels, and each model's
    // observation feeds back its own last action, which carries that rounding on (a random test
    // network can amplify it). The first step after each reset has no such feedback.
    let dir = tempfile::tempdir().unwrap();
    let student = test_models::path("student.pt").unwrap();
    let cfg = config(dir.path(), &student, true);
    let (live, shadow) = walk_and_read(dir.path(), &cfg);
    assert!(shadow.len() > 100, "{} shadow steps", shadow.len());
    let matched = pair_by_snapshot(&live, &shadow);
    // A step whose live action no tick applied (the last ones at shutdown) has no match.
    assert!(matched.len() + 5 >= shadow.len(), "{} of {} shadow steps matched", matched.len(), shadow.len());
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    };
    for (i, (a, s)) in matched.iter().enumerate() {
        assert!(s.failed.is_empty(), "{}", s.failed);
        let d = max_diff(a, &s.policy_action);
        assert!(
            d < if i == 0 { 1e-6 } else { 1e-3 },
            "step {i} at t={}: {a:?} vs {:?}",
            s.policy_t_ns,
            s.policy_action
        );
    }

    // Another model: its own actions, on the same snapshots; the report plots both.
    let dir = tempfile::tempdir().unwrap();
    let gru = test_models::path("student_gru.pt").unwrap();
    let cfg = config(dir.path(), &gru, true);
    let (live, shadow) = walk_and_read(dir.path(), &cfg);
    let matched = pair_by_snapshot(&live, &shadow);
    assert!(matched.len() > 100);
    assert!(matched.iter().any(|(a, s)| **a != s.policy_action), "a different model acted the same");
    assert!(matched.iter().all(|(_, s)| s.policy_action.iter().all(|v| v.is_finite())));
    // The Python `mcap` reader and ros2 decoder read the shadow steps from the same file.
    let files = locod::log::read::log_files(&dir.path().join("logs")).unwrap();
    let file = files.iter().map(|f| locod::log::read::read_file(f).unwrap()).max_by_key(|f| f.shadow.len()).unwrap();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_mcap.py"))
        .arg(&file.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["shadow_schemas"], serde_json::json!(["locod_msgs/msg/ShadowStep"]));
    let py = seen["shadow"].as_array().unwrap();
    assert_eq!(py.len(), file.shadow.len());
    for (p, s) in py.iter().zip(&file.shadow) {
        assert_eq!(p["policy_t_ns"], s.policy_t_ns);
        let a: Vec<f32> = serde_json::from_value(p["policy_action"].clone()).unwrap();
        assert_eq!(a, s.policy_action);
    }

    let plots = dir.path().join("plots");
    let out = Command::new(LOCOD).arg("report").arg(dir.path().join("logs")).arg("--out").arg(&plots).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(plots.join("shadow.png")).unwrap().len() > 10_000);
}

#[test]
fn a_shadow_that_cannot_run_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    // A world model as the student's shadow: `check` names the shadow's file and the field.
    let wm = test_models::path("world_model.pt").unwrap();
    let cfg = config(dir.path(), &wm, true);
    let out = Command::new(LOCOD).args(["check", "-q", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&wm.display().to_string()), "{stderr}");
    let out = Command::new(LOCOD).args(["run", "--duration", "1", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());

    // Without logging, a shadow would record nothing: the configuration says so.
    let student = test_models::path("student.pt").unwrap();
    let cfg = config(dir.path(), &student, false);
    let out = Command::new(LOCOD).args(["check", "-q", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("controller.shadow") && stderr.contains("[log] enabled"), "{stderr}");
}
