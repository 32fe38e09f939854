//! `locod bench policy` and `locod bench mppi`: the policy runtime's latency, with the same
//! TorchScript model driven from Python (models/bench_reference.py) measured in the same run as the
//! reference, and for MPPI the machine's one-thread fp32 matrix-product rate through libtorch as
//! the physical limit.
//!
//! Not for: pass/fail. Targets are printed next to the figures.

use super::Percentiles;
use crate::config::{Config, ControllerKind};
use crate::control::messages::{PolicyAction, Snapshot};
use crate::policy::contract::ModelKind;
use crate::policy::load::{self, prepare_thread};
use crate::policy::mppi::Mppi;
use crate::policy::student::Student;
use crate::policy::{torch, Policy};
use crate::rt::clock::monotonic_ns;
use crate::rt::hist::Histogram;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where to find the Python reference.
#[derive(Clone, Debug)]
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Reference {
    /// `$LOCOD_PYTHON`, else the project's `.venv` (from the working directory or the source
    /// tree), else `python3`; the script from `models/` likewise.
    pub fn locate() -> Reference {
        let roots = [PathBuf::from("."), PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
        let python = std::env::var_os("LOCOD_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            roots.iter().map(|r| r.join(".venv/bin/python")).find(|p| p.is_file()).unwrap_or("python3".into())
        });
        let script = roots
            .iter()
            .map(|r| r.join("models/bench_reference.py"))
            .find(|p| p.is_file())
            .unwrap_or("models/bench_reference.py".into());
        Reference { python, script }
    }

    fn run(&self, args: &[String]) -> Result<serde_json::Value, String> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run the Python reference {}: {e}", self.python.display()))?;
        if !out.status.success() {
            return Err(format!("the Python reference failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or("the Python reference printed no JSON")?;
        serde_json::from_str(line).map_err(|e| format!("the Python reference's JSON: {e}"))
    }
}

fn us(h: &Histogram) -> Percentiles {
    h.summary().into()
}

fn py_percentiles(v: &serde_json::Value) -> Percentiles {
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Percentiles { count: v["count"].as_u64().unwrap_or(0), p50: f("p50"), p99: f("p99"), p999: f64::NAN, max: f("max") }
}

fn model_path(config: &Config, model: Option<&Path>) -> Result<PathBuf, String> {
    model.map(Path::to_path_buf).or_else(|| config.model_path()).ok_or_else(|| "no model: pass --model".to_string())
}

/// A robot state that changes from tick to tick (so no layer of caching flatters the numbers).
fn snapshot(i: u64) -> Snapshot {
    let mut s = Snapshot { tick: i + 1, ..Default::default() };
    let t = i as f64 * 0.01;
    s.state.ang_vel_body_radps = [0.2 * t.sin(), 0.1 * t.cos(), 0.0];
    for (j, joint) in s.state.joints.iter_mut().enumerate().take(8) {
        joint.q_rad = 0.1 * (t + j as f64).sin();
        joint.qd_radps = (t * j as f64).cos();
    }
    s
}

#[derive(Debug, Serialize)]
pub struct PolicyReport {
    pub bench: &'static str,
    pub model: String,
    pub threads: u32,
    pub iterations: usize,
    /// The model call: observation in, clipped action out.
    pub forward_us: Percentiles,
    /// A whole policy tick: observation building, forward, action mapping, records.
    pub tick_us: Percentiles,
    pub reference: PythonReference,
    /// locod's forward p50 over Python's (target: at most 0.8).
    pub ratio: f64,
    pub target_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct PythonReference {
    pub what: String,
    pub latency_us: Percentiles,
}

pub fn policy(config: &Config, model: Option<&Path>, iterations: usize) -> Result<PolicyReport, String> {
    let path = model_path(config, model)?;
    let threads = config.controller.threads;
    torch::set_threads(threads, config.controller.interop_threads);
    let device = torch::parse_device(&config.controller.device)?;
    let opened = load::open(&path, config, Some(ModelKind::Policy), &config.depth_sensor_names(), device)
        .map_err(|e| e.to_string())?;
    let mut student = Student::new(opened, config, None)?;
    prepare_thread(threads);

    let mut out = PolicyAction::default();
    let (mut forward, mut tick) = (Histogram::new(), Histogram::new());
    let mut action = vec![0.0f32; student.action_dim()];
    for i in 0..iterations as u64 + 50 {
        let t0 = monotonic_ns();
        student.act(&snapshot(i), &mut out).map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        let obs = out.obs;
        let t2 = monotonic_ns();
        student.action_for(&obs[..out.obs_len as usize], &mut action).map_err(|e| e.to_string())?;
        let t3 = monotonic_ns();
        if i >= 50 {
            tick.record(t1 - t0);
            forward.record(t3 - t2);
        }
    }
    let r = Reference::locate().run(&[
        "policy".into(),
        "--model".into(),
        path.display().to_string(),
        "--threads".into(),
        threads.to_string(),
        "--iters".into(),
        iterations.to_string(),
    ])?;
    let py = py_percentiles(&r["forward_us"]);
    let forward_us = us(&forward);
    Ok(PolicyReport {
        bench: "policy",
        model: path.display().to_string(),
        threads,
        iterations,
        ratio: forward_us.p50 / py.p50,
        forward_us,
        tick_us: us(&tick),
        reference: PythonReference {
            what: "torch.jit.load + torch.no_grad(), same model, same threads".into(),
            latency_us: py,
        },
        target_ratio: 0.8,
    })
}

#[derive(Debug, Serialize)]
pub struct MatmulRate {
    pub m: i64,
    pub k: i64,
    pub n: i64,
    pub gflops: f64,
}

/// One-thread fp32 matrix products through libtorch at a few sizes; the best is the limit.
pub fn matmul_rates() -> Vec<MatmulRate> {
    use tch::{Kind, Tensor};
    let _no_grad = tch::no_grad_guard();
    let mut rates = Vec::new();
    for (m, k, n) in [(256, 70, 384), (256, 192, 64), (256, 192, 192), (512, 512, 512), (1024, 1024, 1024)] {
        let a = Tensor::rand([m, k], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::rand([k, n], (Kind::Float, tch::Device::Cpu));
        let c = Tensor::zeros([m, n], (Kind::Float, tch::Device::Cpu));
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flops) as usize).clamp(3, 20_000);
        for _ in 0..reps / 4 + 1 {
            let _ = a.mm_out(&c, &b);
        }
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = monotonic_ns();
            for _ in 0..reps {
                let _ = a.mm_out(&c, &b);
            }
            best = best.min((monotonic_ns() - t0) as f64 / reps as f64);
        }
        rates.push(MatmulRate { m, k, n, gflops: flops / best });
    }
    rates
}

#[derive(Debug, Serialize)]
pub struct MppiReport {
    pub bench: &'static str,
    pub model: String,
    pub threads: u32,
    pub plans: usize,
    pub horizon: usize,
    pub samples: usize,
    pub elites: usize,
    pub iterations: usize,
    pub prior_samples: usize,
    /// The planner's route: "fused" (the model's `rollout`) or "stepped" (`next`/`reward` from Rust).
    pub rollout: &'static str,
    /// Whole policy ticks (observation to action), every iteration run (no deadline).
    pub plan_us: Percentiles,
    pub model_steps_per_plan: usize,
    pub model_steps_per_s: f64,
    /// Matrix-product FLOPs of one plan (counted by torch.profiler in the reference run).
    pub flops_per_plan: f64,
    pub achieved_gflops: f64,
    pub matmul_limit_gflops: f64,
    pub matmul_rates: Vec<MatmulRate>,
    /// Time the matrix products alone need at the limit rate.
    pub matmul_floor_us: f64,
    /// matmul floor over locod's plan p50 (1.0 = at the physical limit).
    pub fraction_of_floor: f64,
    /// The other route on the same model, when it has a fused `rollout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stepped_plan_us: Option<Percentiles>,
    pub reference: PythonReference,
    /// locod's plan p50 over the Python reference's (target: at most 0.8).
    pub ratio: f64,
    pub target_ratio: f64,
    pub target_p99_us: f64,
}

fn time_plans(p: &mut Mppi, plans: usize) -> Result<Histogram, String> {
    let mut h = Histogram::new();
    let mut out = PolicyAction::default();
    for i in 0..plans as u64 + 20 {
        if i % 100 == 0 {
            p.reset();
        }
        let t0 = monotonic_ns();
        p.act(&snapshot(i), &mut out).map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        if i >= 20 {
            h.record(t1 - t0);
        }
    }
    Ok(h)
}

pub fn mppi(config: &Config, model: Option<&Path>, plans: usize) -> Result<MppiReport, String> {
    let path = model_path(config, model)?;
    let threads = config.controller.threads;
    torch::set_threads(threads, config.controller.interop_threads);
    let device = torch::parse_device(&config.controller.device)?;
    let open = || {
        load::open(&path, config, Some(ModelKind::WorldModel), &config.depth_sensor_names(), device)
            .map_err(|e| e.to_string())
    };
    if config.controller.kind == ControllerKind::Student {
        return Err("the configuration's controller is a student; use `bench policy`".into());
    }
    let mut planner = Mppi::new(open()?, config, None)?;
    prepare_thread(threads);
    planner.set_budget_ns(u64::MAX);
    let fused = planner.uses_fused_rollout();
    let plan = us(&time_plans(&mut planner, plans)?);
    let stepped_plan_us = if fused {
        let mut stepped = Mppi::new(open()?, config, None)?;
        stepped.set_stepped(true);
        stepped.set_budget_ns(u64::MAX);
        Some(us(&time_plans(&mut stepped, plans)?))
    } else {
        None
    };
    let s = planner.settings().clone();
    let mut args = vec![
        "mppi".to_string(),
        "--model".into(),
        path.display().to_string(),
        "--threads".into(),
        threads.to_string(),
        "--plans".into(),
        plans.to_string(),
    ];
    for (k, v) in [
        ("--horizon", s.horizon.to_string()),
        ("--samples", s.samples.to_string()),
        ("--elites", s.elites.to_string()),
        ("--iterations", s.iterations.to_string()),
        ("--prior-samples", s.prior_samples.to_string()),
        ("--temperature", s.temperature.to_string()),
        ("--min-std", s.min_std.to_string()),
        ("--max-std", s.max_std.to_string()),
        ("--gamma", s.gamma.to_string()),
    ] {
        args.push(k.into());
        args.push(v);
    }
    let r = Reference::locate().run(&args)?;
    let py = py_percentiles(&r["plan_us"]);
    let flops = r["flops_per_plan"].as_f64().unwrap_or(f64::NAN);
    let rates = matmul_rates();
    let limit = rates.iter().map(|r| r.gflops).fold(0.0, f64::max);
    let floor_us = flops / (limit * 1e9) * 1e6;
    let steps = planner.steps_per_plan();
    Ok(MppiReport {
        bench: "mppi",
        model: path.display().to_string(),
        threads,
        plans,
        horizon: s.horizon,
        samples: s.samples,
        elites: s.elites,
        iterations: s.iterations,
        prior_samples: s.prior_samples,
        rollout: if fused { "fused" } else { "stepped" },
        model_steps_per_plan: steps,
        model_steps_per_s: steps as f64 / (plan.p50 * 1e-6),
        flops_per_plan: flops,
        achieved_gflops: flops / (plan.p50 * 1e3),
        matmul_limit_gflops: limit,
        matmul_rates: rates,
        matmul_floor_us: floor_us,
        fraction_of_floor: floor_us / plan.p50,
        stepped_plan_us,
        reference: PythonReference {
            what: format!(
                "TD-MPC2 _plan in PyTorch, same TorchScript model and settings, {} rollout",
                if r["fused_rollout"].as_bool() == Some(true) { "fused" } else { "stepped" }
            ),
            latency_us: py,
        },
        ratio: plan.p50 / py.p50,
        plan_us: plan,
        target_ratio: 0.8,
        target_p99_us: 10_000.0,
    })
}
