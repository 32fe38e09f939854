//! The policy runtime against real TorchScript models (models/make_test_models.py): contract
//! probes, the student (plain and recurrent), the MPPI planner, and replay.

use locod::config::Config;
use locod::control::messages::{ControllerLevel, PolicyAction, Snapshot};
use locod::policy::contract::{Contract, ModelKind};
use locod::policy::load::{self, Opened};
use locod::policy::mppi::MppiPlanner;
use locod::policy::replay::{self, ReplayStep};
use locod::policy::student::Student;
use locod::policy::torch::Module;
use locod::policy::Policy;
use std::path::PathBuf;
use tch::{Device, Tensor};
#[allow(dead_code)] // each test crate uses part of it
mod test_models;

fn config(name: &str) -> Config {
    Config::load(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)).unwrap()
}

fn model(name: &str) -> PathBuf {
    test_models::path(name).unwrap()
}

fn open(cfg: &Config, name: &str) -> Result<Opened, load::LoadError> {
    load::open(&model(name), cfg, None, &[], Device::Cpu)
}

fn refusal(cfg: &Config, name: &str) -> (String, String) {
    let e = open(cfg, name).err().expect("the model should be refused");
    let c = e.contract().expect("a contract error").clone();
    (c.field, e.to_string())
}

/// A robot state that changes from tick to tick.
fn snapshot(i: u64) -> Snapshot {
    let mut s = Snapshot { tick: i + 1, ..Default::default() };
    let t = i as f64 * 0.1;
    s.state.t_ns = 1_000_000 * (i + 1);
    s.state.ang_vel_body_radps = [0.3 * t.sin(), -0.2 * t.cos(), 0.1];
    s.state.projected_gravity_body = [0.05 * t.sin(), 0.0, -1.0];
    s.command = [0.5, 0.0, 0.2];
    for (j, q) in [0.6, -1.2, 0.0, 0.6, -1.2, 0.0].iter().enumerate() {
        s.state.joints[j].q_rad = q + 0.05 * (t + j as f64).sin();
        s.state.joints[j].qd_radps = (t * (j + 1) as f64).cos();
    }
    s
}

#[test]
fn models_that_break_the_contract_are_refused_naming_the_field() {
    let student = config("student.toml");
    let (field, msg) = refusal(&student, "student_nan.pt");
    assert_eq!(field, "forward", "{msg}");
    assert!(msg.contains("non-finite"), "{msg}");
    let mppi = config("mppi.toml");
    let (field, msg) = refusal(&mppi, "wm_no_value.pt");
    assert_eq!(field, "value", "{msg}");
    assert!(msg.contains("has no `value` method"), "{msg}");
    let (field, msg) = refusal(&mppi, "wm_bad_reward.pt");
    assert_eq!(field, "reward", "{msg}");
    assert!(msg.contains("returned shape [3, 1], expected [3]"), "{msg}");
    let e = load::open(&model("student.pt"), &mppi, Some(ModelKind::WorldModel), &[], Device::Cpu).err().unwrap();
    assert_eq!(e.contract().unwrap().field, "kind");
    let e = load::open(&PathBuf::from("/nonexistent/m.pt"), &mppi, None, &[], Device::Cpu).err().unwrap();
    assert!(e.contract().is_none() && e.to_string().contains("no such file"), "{e}");
}

#[test]
fn an_observation_layout_the_model_does_not_take_is_refused() {
    let m = Module::load(&model("student.pt"), Device::Cpu).unwrap();
    let spec = m.call_str(c"locod_spec").unwrap();
    let c = Contract::parse(&spec.replace("\"history\": 3", "\"history\": 2")).unwrap();
    assert_eq!(c.obs_dim(), 33);
    let e = load::probe(&c, &m).unwrap_err();
    assert_eq!(e.field, "obs");
    assert!(e.message.contains("rejected a zero observation of dimension 33"), "{e}");
}

#[test]
fn the_student_runs_the_model_on_the_built_observation() {
    let cfg = config("student.toml");
    let mut student = Student::new(open(&cfg, "student.pt").unwrap(), &cfg).unwrap();
    let reference = tch::CModule::load(model("student.pt")).unwrap();
    let mut out = PolicyAction::default();
    for i in 0..5 {
        assert_eq!(student.act(&snapshot(i), None, &mut out).unwrap(), ControllerLevel::Primary);
        assert_eq!((out.obs_len, out.action_len), (39, 6));
        let obs = Tensor::from_slice(&out.obs[..39]).reshape([1, 39]);
        let want = tch::no_grad(|| reference.forward_ts(&[obs]).unwrap()).clamp(-1.0, 1.0);
        let want: Vec<f32> = Vec::try_from(want.reshape([6])).unwrap();
        assert_eq!(&out.action[..6], want.as_slice());
        // left_hip: default 0.6 + 0.25 a; right_wheel: velocity 10 a.
        assert!((out.targets[0].q_rad - (0.6 + 0.25 * want[0] as f64)).abs() < 1e-6);
        assert!((out.targets[5].qd_radps - 10.0 * want[5] as f64).abs() < 1e-5);
        // The last action is observed on the next tick.
        let again = student.act(&snapshot(i), None, &mut PolicyAction::default());
        assert!(again.is_ok());
    }
}

#[test]
fn the_recurrent_student_carries_its_state_and_resets_it() {
    let cfg = config("student.toml");
    let mut gru = Student::new(open(&cfg, "student_gru.pt").unwrap(), &cfg).unwrap();
    let zero = |t: &Tensor| t.abs().sum(tch::Kind::Float).double_value(&[]) == 0.0;
    assert!(zero(gru.state().unwrap()), "the state starts at zeros");
    let mut out = PolicyAction::default();
    let s = snapshot(3);
    gru.act(&s, None, &mut out).unwrap();
    let first = out.action;
    assert!(!zero(gru.state().unwrap()));
    gru.act(&s, None, &mut out).unwrap();
    assert_ne!(out.action, first, "the second tick sees a different state");
    gru.reset();
    assert!(zero(gru.state().unwrap()));
    gru.act(&s, None, &mut out).unwrap();
    assert_eq!(out.action, first, "after a reset the same input gives the first action again");
}

fn planner(cfg: &Config, name: &str) -> MppiPlanner {
    MppiPlanner::new(open(cfg, name).unwrap(), cfg).unwrap()
}

fn plan_actions(p: &mut MppiPlanner, ticks: u64) -> Vec<[f32; 32]> {
    let mut out = PolicyAction::default();
    (0..ticks)
        .map(|i| {
            assert_eq!(p.act(&snapshot(i), None, &mut out).unwrap(), ControllerLevel::Primary);
            assert_eq!(out.planner.iterations, 3);
            assert_eq!(out.planner.samples, 256);
            out.action
        })
        .collect()
}

#[test]
fn mppi_is_deterministic_for_a_seed() {
    let mut cfg = config("mppi.toml");
    cfg.mppi.budget_ms = Some(1e6); // no deadline: every iteration runs, however slow the build
    let mut a = planner(&cfg, "world_model.pt");
    let mut b = planner(&cfg, "world_model.pt");
    let (x, y) = (plan_actions(&mut a, 4), plan_actions(&mut b, 4));
    assert_eq!(x, y);
    // Drawing the next plan's random numbers after each action (as the policy thread does) plans
    // the same as drawing them inside `act`.
    let mut c = planner(&cfg, "world_model.pt");
    let mut out = PolicyAction::default();
    for (i, want) in x.iter().enumerate() {
        c.prepare_next();
        c.act(&snapshot(i as u64), None, &mut out).unwrap();
        assert_eq!(&out.action, want, "tick {i}");
    }
    assert!(x.windows(2).any(|w| w[0] != w[1]), "plans change with the state");
    // The same seed after a reset replays the same plans; another seed plans differently.
    a.reset();
    assert_eq!(plan_actions(&mut a, 4), x);
    cfg.mppi.seed = 99;
    let mut c = planner(&cfg, "world_model.pt");
    assert_ne!(plan_actions(&mut c, 4), x);
}

#[test]
fn fused_and_stepped_rollouts_agree() {
    let mut cfg = config("mppi.toml");
    cfg.mppi.budget_ms = Some(1e6);
    let mut fused = planner(&cfg, "world_model.pt");
    let mut stepped = planner(&cfg, "world_model_stepped.pt");
    let mut forced = planner(&cfg, "world_model.pt");
    forced.set_stepped(true);
    assert!(fused.uses_fused_rollout() && !stepped.uses_fused_rollout() && !forced.uses_fused_rollout());
    let mut out = [PolicyAction::default(), PolicyAction::default(), PolicyAction::default()];
    for i in 0..4 {
        fused.act(&snapshot(i), None, &mut out[0]).unwrap();
        stepped.act(&snapshot(i), None, &mut out[1]).unwrap();
        forced.act(&snapshot(i), None, &mut out[2]).unwrap();
        for o in &out[1..] {
            let diff = (0..6).map(|j| (o.action[j] - out[0].action[j]).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-3, "tick {i}: actions differ by {diff}");
            let r = (o.planner.best_return - out[0].planner.best_return).abs();
            assert!(r < 1e-4 * out[0].planner.best_return.abs().max(1.0), "tick {i}: best returns differ by {r}");
        }
    }
}

/// The test world model's prior on the observation `out` was planned from: pi(encode(obs)), clipped.
fn prior_action(out: &PolicyAction) -> Vec<f32> {
    let m = tch::CModule::load(model("world_model.pt")).unwrap();
    let obs = Tensor::from_slice(&out.obs[..out.obs_len as usize]).reshape([1, out.obs_len as i64]);
    let want = tch::no_grad(|| {
        let z = m.method_ts("encode", &[obs]).unwrap();
        m.method_ts("pi", &[z]).unwrap().clamp(-1.0, 1.0)
    });
    Vec::try_from(want.reshape([6])).unwrap()
}

#[test]
fn a_planner_centred_on_the_prior_refines_the_prior() {
    // With a vanishing spread every sample is the prior's own trajectory, so the plan's action is
    // the prior's; centred on the (zero) last plan instead, it is not.
    let mut cfg = config("mppi.toml");
    cfg.mppi.budget_ms = Some(1e6);
    cfg.mppi.min_std = Some(1e-7);
    cfg.mppi.max_std = Some(1e-7);
    cfg.mppi.centre = Some(locod::config::PlanCentre::Prior);
    let mut p = planner(&cfg, "world_model.pt");
    let mut out = PolicyAction::default();
    assert_eq!(p.act(&snapshot(2), None, &mut out).unwrap(), ControllerLevel::Primary);
    let want = prior_action(&out);
    let diff = |a: &[f32]| (0..6).map(|j| (a[j] - want[j]).abs()).fold(0.0, f32::max);
    assert!(diff(&out.action) < 1e-4, "centred on the prior: {:?} vs {want:?}", &out.action[..6]);
    cfg.mppi.centre = Some(locod::config::PlanCentre::LastPlan);
    let mut q = planner(&cfg, "world_model.pt");
    q.act(&snapshot(2), None, &mut out).unwrap();
    assert!(diff(&out.action) > 1e-3, "centred on the last plan the action is not the prior's");
}

#[test]
fn mppi_falls_back_to_the_prior_when_no_iteration_fits() {
    let cfg = config("mppi.toml");
    let mut p = planner(&cfg, "world_model.pt");
    p.set_budget_ns(1);
    let mut out = PolicyAction::default();
    assert_eq!(p.act(&snapshot(2), None, &mut out).unwrap(), ControllerLevel::Prior);
    assert_eq!(out.planner.iterations, 0);
    // The action is the prior's: pi(encode(obs)), clipped.
    let want = prior_action(&out);
    for (j, w) in want.iter().enumerate() {
        assert!((out.action[j] - w).abs() < 1e-6, "joint {j}: {} vs {w}", out.action[j]);
    }
    // With a budget again, the planner is primary.
    p.set_budget_ns(1_000_000_000);
    assert_eq!(p.act(&snapshot(3), None, &mut out).unwrap(), ControllerLevel::Primary);

    // Without a prior there is nothing to fall back to: an error, and the control loop stands.
    let mut no_pi = planner(&cfg, "wm_no_pi.pt");
    no_pi.set_budget_ns(1);
    let e = no_pi.act(&snapshot(2), None, &mut out).unwrap_err();
    assert!(e.to_string().contains("missed its budget and the model has no prior"), "{e}");
}

#[test]
fn one_slow_iteration_does_not_keep_the_planner_on_its_prior() {
    // An iteration that once took five budgets (a burst of load, the warm-up's first) makes the
    // next plans fall back to the prior; then the estimate ages and the planner is back. Before,
    // nothing updated the estimate once no iteration ran, and the prior acted for good. (A budget
    // of 100 ms: the test model's iteration fits it however loaded the machine.)
    let mut cfg = config("mppi.toml");
    cfg.mppi.budget_ms = Some(100.0);
    let mut p = planner(&cfg, "world_model.pt");
    let mut out = PolicyAction::default();
    p.assume_iteration_ns(500_000_000);
    assert_eq!(p.act(&snapshot(2), None, &mut out).unwrap(), ControllerLevel::Prior);
    // The estimate has to age from 500 ms to under the budget (less the encode): ~13 plans at 1/8.
    let back = (3..60).find(|&i| p.act(&snapshot(i), None, &mut out).unwrap() == ControllerLevel::Primary);
    assert!(back.is_some_and(|i| i < 30), "the planner came back after plan {back:?}");
}

#[test]
fn replay_reproduces_logged_actions_and_finds_a_difference() {
    for name in ["student.pt", "student_gru.pt"] {
        let cfg = config("student.toml");
        let mut live = Student::new(open(&cfg, name).unwrap(), &cfg).unwrap();
        let mut log: Vec<(Vec<f32>, Vec<f32>, bool)> = Vec::new();
        let mut out = PolicyAction::default();
        for i in 0..30 {
            if i == 15 {
                live.reset(); // a mode change in the middle of the log
            }
            live.act(&snapshot(i), None, &mut out).unwrap();
            log.push((out.obs[..out.obs_len as usize].to_vec(), out.action[..6].to_vec(), i == 15));
        }
        fn steps(log: &[(Vec<f32>, Vec<f32>, bool)]) -> impl Iterator<Item = ReplayStep<'_>> {
            log.iter().map(|(o, a, r)| ReplayStep { obs: o, action: a, reset: *r })
        }
        let report = replay::replay(&model(name), &cfg, steps(&log)).unwrap();
        assert_eq!(report.steps, 30);
        assert_eq!(report.max_abs_diff, 0.0, "{name}: {report:?}");

        log[21].1[4] += 0.125;
        let report = replay::replay(&model(name), &cfg, steps(&log)).unwrap();
        assert_eq!((report.at_step, report.at_action), (21, 4), "{name}: {report:?}");
        assert!((report.max_abs_diff - 0.125).abs() < 1e-6, "{name}: {report:?}");
    }
    let cfg = config("mppi.toml");
    let e = replay::replay(&model("world_model.pt"), &cfg, std::iter::empty()).unwrap_err();
    assert!(e.contains("replay compares student policies"), "{e}");
}

/// Students with `forward` bodies of their own, built in one Python run (the project's venv) with
/// the contract of `student.pt`: `cases` are (file name, body of `forward(self, obs)`).
fn students_with_forward(dir: &std::path::Path, cases: &[(&str, &str)]) {
    let mut src = String::from(
        "import sys, torch\nfrom torch import Tensor, nn\nspec = torch.jit.load(sys.argv[1]).locod_spec()\n",
    );
    for (i, (name, body)) in cases.iter().enumerate() {
        let body: String = body.lines().map(|l| format!("        {l}\n")).collect();
        src.push_str(&format!(
            "class M{i}(nn.Module):\n    def __init__(self, spec: str):\n        super().__init__()\n        self.spec_json = spec\n    def forward(self, obs: Tensor) -> Tensor:\n{body}    @torch.jit.export\n    def locod_spec(self) -> str:\n        return self.spec_json\ntorch.jit.save(torch.jit.script(M{i}(spec)), sys.argv[2] + '/{name}')\n"
        ));
    }
    // A file, not `-c`: TorchScript reads the classes' source back.
    let script = dir.join("make_models.py");
    std::fs::write(&script, &src).unwrap();
    let python = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"));
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(model("student.pt"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(out.status.success(), "{}\n{src}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_models_are_refused_naming_the_method_and_what_went_wrong() {
    // (file, forward body, contract field refused, what the error must say)
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "raises.pt",
            "if obs.size(0) > 0:\n    raise RuntimeError(\"weights not loaded: call load_weights() first\")\nreturn obs[:, :6]",
            "forward",
            "raised an error on a zero observation: RuntimeError: weights not loaded: call load_weights() first",
        ),
        (
            "raises_on_large_inputs.pt",
            "if bool(obs.abs().max() > 1.5):\n    raise ValueError(\"input outside the training range\")\nreturn obs[:, :6] * 0.1",
            "forward",
            "raised an error on an ordinary observation (walking at + the command limits): ValueError: input outside the training range",
        ),
        (
            "nan_when_upright.pt",
            "return obs[:, :6] / (1.0 - obs[:, 3:6].abs().sum(dim=1, keepdim=True))",
            "forward",
            "returned non-finite values for an ordinary observation (standing in the default pose)",
        ),
        (
            "nan_for_negative_inputs.pt",
            "return torch.sqrt(obs[:, :6] - obs[:, :6].abs())",
            "forward",
            "returned non-finite values for an ordinary observation",
        ),
        ("nan_everywhere.pt", "return obs[:, :6] * float(\"nan\")", "forward", "non-finite values for a zero observation"),
        ("five_actions.pt", "return obs[:, :5]", "action.dim", "forward returned shape [1, 5], expected [1, 6]"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<(&str, &str)> = cases.iter().map(|(n, b, _, _)| (*n, *b)).collect();
    students_with_forward(dir.path(), &bodies);
    let cfg = config("student.toml");
    for (name, _, field, says) in cases {
        let e = load::open(&dir.path().join(name), &cfg, None, &[], Device::Cpu).err();
        let e = e.unwrap_or_else(|| panic!("{name} was accepted"));
        let shown = e.to_string();
        assert_eq!(e.contract().map(|c| c.field.as_str()), Some(field), "{name}: {shown}");
        assert!(shown.contains(says), "{name}:\n  said: {shown}\n  want: {says}");
        assert!(!shown.contains("The following operation failed"), "{name}: {shown}");
        if field == "forward" {
            assert!(!shown.contains("dimension"), "{name}: not an observation-dimension problem: {shown}");
        }
    }
}
