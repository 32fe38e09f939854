//! `locod finetune` end to end: logs of policy steps (written by locod's logger) finetune the test
//! world model's dynamics; the result loads and passes `locod check`, and an independent reader
//! (PyTorch in the project's venv) finds every parameter outside `dynamics.*` and every buffer
//! identical to the base model's, and the provenance in its contract. Bad input gets a clear error.

use locod::config::LogConfig;
use locod::control::messages::{CommandSource, ControllerLevel, Mode, PolicyAction};
use locod::control::record::{flags, TickRecord};
use locod::estimate::RobotState;
use locod::log::writer::Logger;
use locod::types::{MotorCommands, SensorFrame};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(dead_code)] // each test crate uses part of it
mod test_models;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");
const MS: u64 = 1_000_000;
/// The test world model's observation (make_test_models.py: ang vel, gravity, command, and
/// position, velocity and last action of 6 joints) and action.
const OBS: usize = 27;
const ACT: usize = 6;

fn config() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mppi.toml"))
}

fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {stderr}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    stderr
}

/// Deterministic numbers in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `episodes` episodes of Walk, each `steps` policy steps at 50 Hz (one tick per step: the
/// metadata's control and policy rates are both 50 Hz), separated by a Passive tick so that the
/// logger starts a file per episode. The observation follows `o' = 0.9 o + 0.3 a` (the action's
/// element i % 6): dynamics a model can learn.
fn policy_logs(dir: &Path, episodes: usize, steps: usize) {
    let cfg = LogConfig { enabled: true, dir: dir.into(), ..LogConfig::default() };
    let meta = BTreeMap::from([
        ("robot".to_string(), "biwheel".to_string()),
        ("joint_names".to_string(), "a,b,c,d,e,f".to_string()),
        ("control_hz".to_string(), "50".to_string()),
        ("policy_hz".to_string(), "50".to_string()),
    ]);
    let mut logger = Logger::new(&cfg, meta);
    let mut rng = Lcg(7);
    let mut tick = 0u64;
    for _ in 0..episodes {
        let mut obs: Vec<f32> = (0..OBS).map(|_| rng.next()).collect();
        for k in 0..=steps {
            tick += 1;
            let t_ns = 1_000 * MS + tick * 20 * MS;
            let walking = k < steps;
            let mut policy = PolicyAction::default();
            let act: Vec<f32> = (0..ACT).map(|_| rng.next()).collect();
            if walking {
                policy.t_ns = t_ns - MS;
                policy.obs_len = OBS as u16;
                policy.obs[..OBS].copy_from_slice(&obs);
                policy.action_len = ACT as u16;
                policy.action[..ACT].copy_from_slice(&act);
            }
            let r = TickRecord {
                tick,
                t_ns,
                deadline_ns: t_ns,
                compute_ns: 1_000,
                skipped_cycles: 0,
                records_dropped: 0,
                n_joints: 6,
                sensors: SensorFrame::default(),
                estimate: (&RobotState::default()).into(),
                policy,
                commands: MotorCommands::default(),
                command_vel: [0.0; 3],
                source: CommandSource::None,
                mode: if walking { Mode::Walk } else { Mode::Passive },
                level: ControllerLevel::Primary,
                fault: None,
                flags: if walking { flags::POLICY_FRESH | flags::POLICY_STEP } else { 0 },
            };
            logger.record(&r, t_ns);
            for (i, o) in obs.iter_mut().enumerate() {
                *o = 0.9 * *o + 0.3 * act[i % ACT];
            }
        }
    }
    logger.close();
}

fn finetune(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(LOCOD)
        .arg("finetune")
        .arg("--config")
        .arg(config())
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn finetuning_trains_the_dynamics_only_and_the_result_is_a_checked_model() {
    let logs = tempfile::tempdir().unwrap();
    policy_logs(logs.path(), 6, 120);
    let base = test_models::path("world_model.pt").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wm_ft.pt");
    let o = finetune(&base, logs.path(), &out, &["--epochs", "12", "--lr", "1e-3", "--json"]);
    ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["episodes"], 6, "{r}");
    assert_eq!(r["policy_steps"], 6 * 120);
    // Each episode's last step has no next: 119 transitions, 115 windows of 5.
    assert_eq!(r["valid_transitions"], 6 * 119);
    assert_eq!(r["validation_episodes"], 1);
    assert_eq!(r["train_windows"].as_u64().unwrap() + r["validation_windows"].as_u64().unwrap(), 6 * 115);
    for name in r["trained_tensors"].as_array().unwrap() {
        assert!(name.as_str().unwrap().starts_with("dynamics."), "{name}");
    }
    assert!(r["frozen_tensors_identical"].as_u64().unwrap() > 0);
    let (before, after) = (r["validation_loss_before"].as_f64().unwrap(), r["validation_loss_after"].as_f64().unwrap());
    assert!(after < 0.9 * before, "the dynamics did not learn: {before} -> {after}");

    // The result is a model like any other.
    ok(&Command::new(LOCOD).arg("check").arg("--config").arg(config()).arg("--model").arg(&out).output().unwrap());
    // An independent reader: only dynamics.* differs, buffers are equal, the contract carries the
    // provenance.
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = r#"
import json, sys, torch
base, ft = torch.jit.load(sys.argv[1]), torch.jit.load(sys.argv[2])
pb, pf = dict(base.named_parameters()), dict(ft.named_parameters())
assert pb.keys() == pf.keys()
changed = sorted(n for n in pb if not torch.equal(pb[n], pf[n]))
assert changed and all(n.startswith("dynamics.") for n in changed), changed
assert all(torch.equal(a, b) for (_, a), (_, b) in zip(base.named_buffers(), ft.named_buffers()))
p = json.loads(ft.locod_spec())["provenance"]
print(json.dumps({"changed": changed, "base": p["base_model_sha256"], "after": p["validation_loss_after"]}))
"#;
    let o = Command::new(python).arg("-c").arg(script).arg(&base).arg(&out).output().unwrap();
    ok(&o);
    let seen: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(seen["base"], r["base_sha256"]);
    assert_eq!(seen["after"].as_f64().unwrap(), after);
}

#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let logs = tempfile::tempdir().unwrap();
    policy_logs(logs.path(), 2, 30);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pt");
    let wm = test_models::path("world_model.pt").unwrap();
    let cases: Vec<(PathBuf, PathBuf, PathBuf, &str)> = vec![
        // A policy is not a world model.
        (test_models::path("student.pt").unwrap(), logs.path().into(), out.clone(), "world_model"),
        (wm.clone(), dir.path().into(), out.clone(), "no .mcap logs"),
        (wm.clone(), logs.path().into(), wm.clone(), "--out must differ from --model"),
    ];
    for (model, data, out_path, want) in cases {
        let o = finetune(&model, &data, &out_path, &[]);
        assert!(!o.status.success(), "{want}: {o:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(want), "expected {want:?} in: {stderr}");
    }
    assert!(!out.exists() && !dir.path().join("out.pt.partial").exists());
    // Too short a horizon run for the data: said in numbers.
    let o = finetune(&wm, logs.path(), &out, &["--horizon", "40"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run of 40 consecutive"), "{o:?}");
}
