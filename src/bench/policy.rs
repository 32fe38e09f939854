//! `locod bench policy` and `locod bench mppi`: the policy runtime's latency, with the same
//! TorchScript model driven from Python (models/bench_reference.py) measured in the same run as the
//! reference, and for MPPI the machine's one-thread fp32 matrix-product rate through libtorch as
//! the physical limit. Both sides run as the daemon's policy thread runs (its scheduling, memory
//! locked, one plan per policy period); MPPI's plans alternate with the reference's in blocks and
//! are split into time inside the model and the planner's own.
//!
//! Not for: pass/fail. Targets are printed next to the figures.

use super::reference::{Granted, Reference};
use super::Percentiles;
use crate::config::{Config, ControllerKind, LoopConfig};
use crate::control::messages::{LevelCounts, PolicyAction, Snapshot};
use crate::policy::contract::ModelKind;
use crate::policy::load::{self, prepare_thread};
use crate::policy::mppi::MppiPlanner;
use crate::policy::student::Student;
use crate::policy::{torch, Policy};
use crate::rt::clock::{monotonic_ns, MonotonicClock};
use crate::rt::hist::Histogram;
use crate::rt::sched::Periodic;
use crate::rt::thread;
use crate::rt::triple::{triple, Reader};
use crate::types::terrain::Perception;
use serde::Serialize;
use std::path::{Path, PathBuf};

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

/// Runs `f` on a thread with the policy thread's scheduling ([loop] policy_priority, policy_cpu)
/// and, with [loop] lock_memory, the process's memory locked, as the daemon runs a policy; returns
/// its result and what was granted.
fn on_policy_thread<T: Send>(
    rate: &LoopConfig,
    f: impl FnOnce(&Granted) -> Result<T, String> + Send,
) -> Result<(T, Granted), String> {
    let locked = rate.lock_memory.then(thread::lock_memory);
    std::thread::scope(|s| {
        s.spawn(|| {
            let granted = Granted { rt: thread::apply(rate.policy_rt()), locked };
            f(&granted).map(|t| (t, granted))
        })
        .join()
        .map_err(|_| "the benchmark thread panicked".to_string())?
    })
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
    /// What the scheduler granted the benchmark thread (the policy thread's settings); the Python
    /// reference runs under the same.
    pub scheduling: String,
    pub iterations: usize,
    /// The model call: observation in, clipped action out.
    pub(crate) forward_us: Percentiles,
    /// A whole policy tick: observation building, forward, action mapping, records, called back
    /// to back on one thread.
    pub(crate) tick_us: Percentiles,
    /// A whole policy tick as the daemon runs it and reports it (`policy compute`): the controller
    /// built on the calling thread, run by the daemon's policy runner on its own thread at
    /// `[loop] policy_hz` with the policy thread's scheduling (warming the model before each
    /// deadline), reading snapshots that a control thread publishes at `control_hz`, handing each
    /// action back through the same triple buffer. From the thread's wake-up to the action.
    pub(crate) daemon_tick_us: Percentiles,
    /// The same ticks from the deadline to the action (`policy latency`): the tick plus the
    /// thread's wake-up latency and any lateness of the warm-up.
    pub(crate) daemon_latency_us: Percentiles,
    pub reference: PythonReference,
    /// locod's back-to-back forward p50 over Python's: the two runtimes on the same model call.
    pub forward_ratio: f64,
    /// The daemon's latency p50 over Python's, each called once per policy period (target: at
    /// most 0.8): what a deployment sees.
    pub ratio: f64,
    pub(crate) target_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct PythonReference {
    pub what: String,
    /// Back to back (policy) or one plan per period (MPPI).
    pub latency_us: Percentiles,
    /// The policy's forward once per policy period: its own time, and from the period's deadline
    /// to the action (as in a Python deployment loop at the policy rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periodic_us: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periodic_latency_us: Option<Percentiles>,
    /// Of each plan, the time inside the model's methods (MPPI only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_us: Option<Percentiles>,
    /// Of each plan, the planner's own time (MPPI only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planner_us: Option<Percentiles>,
}

/// What the sensors perceive, for a model with `depth` or `height_scan` terms: nothing yet (every
/// zone reads its `max_range`, every cell its `fill`). The observation costs what it costs with a
/// real map and the model's work does not depend on the values, so the benchmark measures the
/// daemon's step without sensors.
fn no_terrain() -> Option<Reader<Perception>> {
    let (_writer, reader) = triple(Perception::default());
    Some(reader)
}

pub fn policy(config: &Config, model: Option<&Path>, iterations: usize) -> Result<PolicyReport, String> {
    let path = model_path(config, model)?;
    let threads = config.controller.threads;
    torch::set_threads(threads, config.controller.interop_threads);
    let device = torch::parse_device(&config.controller.device)?;
    let ((forward, tick), granted) = on_policy_thread(&config.rate, |_| {
        let opened = load::open(&path, config, Some(ModelKind::Policy), &config.depth_sensor_names(), device)
            .map_err(|e| e.to_string())?;
        let mut student = Student::new(opened, config)?;
        prepare_thread(threads);
        let mut out = PolicyAction::default();
        let (mut forward, mut tick) = (Histogram::new(), Histogram::new());
        let mut action = vec![0.0f32; student.action_dim()];
        for i in 0..iterations as u64 + 50 {
            let t0 = monotonic_ns();
            student.act(&snapshot(i), Some(&Perception::default()), &mut out).map_err(|e| e.to_string())?;
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
        Ok((forward, tick))
    })?;
    // Built and warmed up on this thread, as `policy::build` does on the daemon's main thread.
    let opened = load::open(&path, config, Some(ModelKind::Policy), &config.depth_sensor_names(), device)
        .map_err(|e| e.to_string())?;
    let student = Box::new(Student::new(opened, config)?);
    let ticks = DAEMON_TICKS.min(iterations.max(1));
    let daemon = daemon_path(&config.rate, student, ticks)?;
    let r = Reference::locate().run(
        &granted,
        &[
            "policy".into(),
            "--model".into(),
            path.display().to_string(),
            "--threads".into(),
            threads.to_string(),
            "--iters".into(),
            iterations.to_string(),
            "--period-ms".into(),
            (config.rate.policy_period_ns() as f64 * 1e-6).to_string(),
            "--periodic".into(),
            ticks.to_string(),
        ],
    )?;
    let py = py_percentiles(&r["forward_us"]);
    let py_periodic_latency = py_percentiles(&r["periodic_latency_us"]);
    let forward_us = us(&forward);
    let daemon_latency_us = us(&daemon.latency);
    Ok(PolicyReport {
        bench: "policy",
        model: path.display().to_string(),
        threads,
        scheduling: granted.to_string(),
        iterations,
        forward_ratio: forward_us.p50 / py.p50,
        ratio: daemon_latency_us.p50 / py_periodic_latency.p50,
        forward_us,
        tick_us: us(&tick),
        daemon_tick_us: us(&daemon.compute),
        daemon_latency_us,
        reference: PythonReference {
            what:
                "torch.jit.load + torch.no_grad(), same model, same threads; back to back, then once per policy period"
                    .into(),
            latency_us: py,
            periodic_us: Some(py_percentiles(&r["periodic_us"])),
            periodic_latency_us: Some(py_periodic_latency),
            model_us: None,
            planner_us: None,
        },
        target_ratio: 0.8,
    })
}

/// Policy ticks measured on the daemon's path (at 50 Hz, 5 s).
const DAEMON_TICKS: usize = 250;

/// `ticks` policy ticks of `policy` as the daemon runs them (see `PolicyReport::daemon_tick_us`):
/// what `policy::run` records (`compute`, and the level of each action).
fn daemon_path(rate: &LoopConfig, policy: Box<dyn Policy>, ticks: usize) -> Result<crate::policy::PolicyStats, String> {
    use crate::policy::PolicyStats;
    use crate::rt::sched::run_periodic;
    use crate::rt::thread::Setup;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (mut snapshots_w, mut snapshots) = triple(Snapshot::default());
    let (mut actions, mut actions_r) = triple(PolicyAction::default());
    let stop = Arc::new(AtomicBool::new(false));
    let control_period_ns = rate.control_period_ns();
    let control = {
        let stop = stop.clone();
        thread::spawn("locod-control", "control", Setup::RtPrefaulted(rate.control_rt()), move |_| {
            let mut i = 0;
            run_periodic(&MonotonicClock, control_period_ns, |_| {
                i += 1;
                snapshots_w.write(snapshot(i));
                let _ = actions_r.latest();
                !stop.load(Ordering::Relaxed)
            });
        })
        .map_err(|e| e.to_string())?
    };
    let period_ns = rate.policy_period_ns();
    let runner = {
        let stop = stop.clone();
        thread::spawn("locod-policy", "policy", Setup::RtPrefaulted(rate.policy_rt()), move |_| {
            crate::policy::run(
                policy,
                crate::policy::Cycle::new(no_terrain(), None),
                &mut snapshots,
                &mut actions,
                &MonotonicClock,
                period_ns,
                &stop,
            )
        })
        .map_err(|e| e.to_string())?
    };
    std::thread::sleep(std::time::Duration::from_nanos(period_ns * (ticks as u64 + 1)));
    stop.store(true, Ordering::Relaxed);
    let stats: PolicyStats = runner.join().map_err(|_| "the policy thread panicked".to_string())?;
    control.join().map_err(|_| "the control thread panicked".to_string())?;
    if let Some(e) = stats.last_error {
        return Err(format!("{} policy ticks failed: {e}", stats.errors));
    }
    Ok(stats)
}

#[derive(Debug, Serialize)]
pub(crate) struct MatmulRate {
    pub m: i64,
    pub k: i64,
    pub n: i64,
    pub(crate) gflops: f64,
}

/// One-thread fp32 matrix products through libtorch at a few sizes; the best is the limit.
pub(crate) fn matmul_rates() -> Vec<MatmulRate> {
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
    /// What the scheduler granted the benchmark thread (the policy thread's settings); the Python
    /// reference runs under the same.
    pub scheduling: String,
    pub plans: usize,
    pub(crate) horizon: usize,
    pub samples: usize,
    pub(crate) elites: usize,
    pub iterations: usize,
    pub(crate) prior_samples: usize,
    /// The planner's route: "fused" (the model's `rollout`) or "stepped" (`next`/`reward` from Rust).
    pub rollout: &'static str,
    /// Whole policy ticks (observation to action), every iteration run (no deadline).
    pub plan_us: Percentiles,
    /// Of each plan, the time inside the model's methods (encode, pi, next, rollout or
    /// reward/value): the part no planner can take away.
    pub model_us: Percentiles,
    /// Of each plan, the planner's own time: sampling, elite selection, refit, copies, calls.
    pub planner_us: Percentiles,
    pub(crate) model_steps_per_plan: usize,
    pub(crate) model_steps_per_s: f64,
    /// Matrix-product FLOPs of one of locod's plans: the reference's count scaled by the model
    /// steps each evaluates (a prior step costs within 1% of a rollout step in the test models).
    pub flops_per_plan: f64,
    /// Matrix-product FLOPs of one of the reference's plans, counted by torch.profiler (TD-MPC2
    /// rolls the prior's trajectories out again in every iteration).
    pub reference_flops_per_plan: f64,
    pub(crate) achieved_gflops: f64,
    pub matmul_limit_gflops: f64,
    pub(crate) matmul_rates: Vec<MatmulRate>,
    /// Time the matrix products alone need at the limit rate.
    pub(crate) matmul_floor_us: f64,
    /// matmul floor over locod's plan p50 (1.0 = at the physical limit).
    pub(crate) fraction_of_floor: f64,
    /// The other route on the same model, when it has a fused `rollout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stepped_plan_us: Option<Percentiles>,
    pub reference: PythonReference,
    /// locod's plan p50 over the Python reference's (target: at most 0.8).
    pub ratio: f64,
    /// locod's model time p50 over the Python reference's plan p50: the ratio a planner that took
    /// no time of its own would reach with this model on this machine.
    pub ratio_bound: f64,
    /// locod's planner time p50 over the Python reference's: the part a planner can win.
    pub(crate) planner_ratio: f64,
    /// The configured plan budget (`[mppi] budget_ms`, else half the policy period).
    pub(crate) budget_us: f64,
    /// Plans as the daemon runs them (`policy::run` on its own thread at `policy_hz`, a control
    /// thread publishing snapshots) at the configured budget, where a plan that misses it is
    /// replaced by the prior's action.
    pub(crate) daemon_plan_us: Percentiles,
    /// Of those plans, the shares the planner and the prior produced.
    pub(crate) daemon_levels: LevelShares,
    pub(crate) target_ratio: f64,
    pub(crate) target_p99_us: f64,
}

/// Shares of the actions by the level that produced them.
#[derive(Debug, Serialize)]
pub(crate) struct LevelShares {
    pub actions: u64,
    pub primary: f64,
    pub prior: f64,
}

impl LevelShares {
    fn of(c: &LevelCounts) -> Self {
        let s = c.shares();
        LevelShares { actions: c.total(), primary: s[0], prior: s[1] }
    }
}

/// Plan latencies, split into model time and the planner's own.
struct PlanTimes {
    plan: Histogram,
    model: Histogram,
    own: Histogram,
}

impl PlanTimes {
    fn new() -> Self {
        PlanTimes { plan: Histogram::new(), model: Histogram::new(), own: Histogram::new() }
    }

    fn record(&mut self, plan_ns: u64, model_ns: u64) {
        self.plan.record(plan_ns);
        self.model.record(model_ns);
        self.own.record(plan_ns.saturating_sub(model_ns));
    }

    /// Adds a block of the Python reference's plans (`plan_us`, `model_us` lists).
    fn record_reference(&mut self, block: &serde_json::Value) -> Result<(), String> {
        let list = |k: &str| block[k].as_array().cloned().ok_or(format!("the Python reference sent no {k}"));
        let ns = |v: &serde_json::Value| (v.as_f64().unwrap_or(f64::NAN) * 1e3).max(0.0) as u64;
        for (p, m) in list("plan_us")?.iter().zip(&list("model_us")?) {
            self.record(ns(p), ns(m));
        }
        Ok(())
    }
}

/// Plans `plans` times, once per policy period as the daemon does (back to back, a SCHED_FIFO
/// thread would also be stopped by the kernel's real-time throttling for 50 ms every second).
fn time_plans(p: &mut MppiPlanner, plans: usize, period_ns: u64, into: &mut PlanTimes) -> Result<(), String> {
    let mut out = PolicyAction::default();
    let mut schedule = Periodic::new(monotonic_ns(), period_ns);
    for i in 0..plans as u64 {
        schedule.wait(&MonotonicClock);
        let t0 = monotonic_ns();
        p.act(&snapshot(i), Some(&Perception::default()), &mut out).map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        into.record(t1 - t0, p.last_plan().model_ns);
        p.prepare_next(); // after the action is out, as the policy thread does
    }
    Ok(())
}

/// locod's and the Python reference's plans alternate in blocks of this many, so that a change
/// in the machine's load (it is shared) affects both sides alike.
const BLOCK_PLANS: usize = 25;
const WARMUP_PLANS: usize = 20;

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
    let period_ns = config.rate.policy_period_ns();
    let mut planner = MppiPlanner::new(open()?, config)?;
    let s = planner.settings().clone();
    let mut args = vec![
        "mppi".to_string(),
        "--model".into(),
        path.display().to_string(),
        "--threads".into(),
        threads.to_string(),
        "--warmup".into(),
        WARMUP_PLANS.to_string(),
        "--period-ms".into(),
        (period_ns as f64 * 1e-6).to_string(),
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
    let fused = planner.uses_fused_rollout();
    let ((ours, theirs, stepped, flops, py_fused, rates), granted) = on_policy_thread(&config.rate, |granted| {
        let (mut python, ready) = Reference::locate().serve(granted, &args)?;
        prepare_thread(threads);
        planner.set_budget_ns(u64::MAX);
        time_plans(&mut planner, WARMUP_PLANS, period_ns, &mut PlanTimes::new())?;
        let (mut ours, mut theirs) = (PlanTimes::new(), PlanTimes::new());
        let mut done = 0;
        while done < plans {
            let n = BLOCK_PLANS.min(plans - done);
            time_plans(&mut planner, n, period_ns, &mut ours)?;
            theirs.record_reference(&python.ask(&format!("plan {n}"))?)?;
            done += n;
        }
        let flops = python.ask("flops")?["flops_per_plan"].as_f64().unwrap_or(f64::NAN);
        drop(python);
        let stepped = if fused {
            let mut stepped = MppiPlanner::new(open()?, config)?;
            stepped.set_stepped(true);
            stepped.set_budget_ns(u64::MAX);
            let mut t = PlanTimes::new();
            time_plans(&mut stepped, plans, period_ns, &mut t)?;
            Some(us(&t.plan))
        } else {
            None
        };
        Ok((ours, theirs, stepped, flops, ready["fused_rollout"].as_bool() == Some(true), matmul_rates()))
    })?;
    // The daemon's path at the configured budget: how often the plan fits, and the prior acts when not.
    let budget_ns = (config.mppi.budget_ms(&config.rate) * 1e6) as u64;
    let daemon = daemon_path(&config.rate, Box::new(MppiPlanner::new(open()?, config)?), plans)?;
    let steps = planner.steps_per_plan();
    let prior = planner.prior_trajectories();
    let reference_steps = prior * s.horizon + s.samples * s.horizon * s.iterations;
    let reference_flops = flops;
    let flops = reference_flops * steps as f64 / reference_steps as f64;
    let limit = rates.iter().map(|r| r.gflops).fold(0.0, f64::max);
    let floor_us = flops / (limit * 1e9) * 1e6;
    let (plan, model_us, planner_us) = (us(&ours.plan), us(&ours.model), us(&ours.own));
    let (py, py_model, py_planner) = (us(&theirs.plan), us(&theirs.model), us(&theirs.own));
    Ok(MppiReport {
        bench: "mppi",
        model: path.display().to_string(),
        threads,
        scheduling: granted.to_string(),
        plans,
        horizon: s.horizon,
        samples: s.samples,
        elites: s.elites,
        iterations: s.iterations,
        prior_samples: prior,
        rollout: if fused { "fused" } else { "stepped" },
        model_steps_per_plan: steps,
        model_steps_per_s: steps as f64 / (plan.p50 * 1e-6),
        flops_per_plan: flops,
        reference_flops_per_plan: reference_flops,
        achieved_gflops: flops / (plan.p50 * 1e3),
        matmul_limit_gflops: limit,
        matmul_rates: rates,
        matmul_floor_us: floor_us,
        fraction_of_floor: floor_us / plan.p50,
        stepped_plan_us: stepped,
        ratio: plan.p50 / py.p50,
        ratio_bound: model_us.p50 / py.p50,
        planner_ratio: planner_us.p50 / py_planner.p50,
        reference: PythonReference {
            what: format!(
                "TD-MPC2 _plan in PyTorch, same TorchScript model and settings, {} rollout, \
                 its blocks of {BLOCK_PLANS} plans alternating with locod's",
                if py_fused { "fused" } else { "stepped" }
            ),
            latency_us: py,
            periodic_us: None,
            periodic_latency_us: None,
            model_us: Some(py_model),
            planner_us: Some(py_planner),
        },
        plan_us: plan,
        model_us,
        planner_us,
        budget_us: budget_ns as f64 * 1e-3,
        daemon_plan_us: us(&daemon.compute),
        daemon_levels: LevelShares::of(&daemon.levels),
        target_ratio: 0.8,
        target_p99_us: 10_000.0,
    })
}

impl std::fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "student {} ({} thread(s)):", self.model, self.threads)?;
        let pct = |p: &Percentiles| format!("p50 {:.1} us  p99 {:.1} us", p.p50, p.p99);
        let r = &self.reference;
        writeln!(f, "  back to back:")?;
        writeln!(f, "    locod forward   {}", pct(&self.forward_us))?;
        writeln!(f, "    locod tick      {}", pct(&self.tick_us))?;
        writeln!(f, "    python forward  {}", pct(&r.latency_us))?;
        writeln!(f, "    ratio (p50)     {:.2}", self.forward_ratio)?;
        writeln!(f, "  once per policy period, as deployed:")?;
        writeln!(
            f,
            "    daemon tick     {}  (wake-up to action: `locod run`'s policy compute)",
            pct(&self.daemon_tick_us)
        )?;
        writeln!(
            f,
            "    daemon latency  {}  (deadline to action: `locod run`'s policy latency)",
            pct(&self.daemon_latency_us)
        )?;
        if let (Some(fwd), Some(lat)) = (&r.periodic_us, &r.periodic_latency_us) {
            writeln!(f, "    python forward  {}", pct(fwd))?;
            writeln!(f, "    python latency  {}  (deadline to action)", pct(lat))?;
        }
        writeln!(f, "    ratio (p50)     {:.2} (latency; target <= {})", self.ratio, self.target_ratio)
    }
}

impl std::fmt::Display for MppiReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "mppi {} ({} rollout, {} samples, horizon {}, {} iterations, {} prior):",
            self.model, self.rollout, self.samples, self.horizon, self.iterations, self.prior_samples
        )?;
        writeln!(f, "  locod plan     p50 {:.0} us  p99 {:.0} us", self.plan_us.p50, self.plan_us.p99)?;
        let p = &self.reference.latency_us;
        writeln!(f, "  python plan    p50 {:.0} us  p99 {:.0} us", p.p50, p.p99)?;
        writeln!(
            f,
            "  {:.0} model steps/s, {:.1} GFLOP/s of {:.1} (matmul floor {:.0} us, {:.0}% of it)",
            self.model_steps_per_s,
            self.achieved_gflops,
            self.matmul_limit_gflops,
            self.matmul_floor_us,
            100.0 * self.fraction_of_floor
        )?;
        writeln!(f, "  ratio (p50)    {:.2} (target <= {})", self.ratio, self.target_ratio)?;
        let l = &self.daemon_levels;
        writeln!(
            f,
            "  daemon plan    p50 {:.0} us  p99 {:.0} us  budget {:.0} us: planner {:.1}%, prior {:.1}% of {} actions",
            self.daemon_plan_us.p50,
            self.daemon_plan_us.p99,
            self.budget_us,
            100.0 * l.primary,
            100.0 * l.prior,
            l.actions
        )
    }
}
