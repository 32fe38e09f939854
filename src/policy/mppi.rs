//! The MPPI planner over a latent world model (contract kind "world_model"), TD-MPC2 style, as an
//! anytime computation inside a time budget.
//!
//! Every tick: encode the observation; roll the policy prior `pi` out for `prior_samples`
//! trajectories (the first exactly, the others with `min_std` noise); centre the mean on the last
//! plan shifted by one step (`centre = "last_plan"`, TD-MPC2) or on the prior's exact trajectory
//! (`centre = "prior"`: the planner refines the prior) and reset the std to `max_std`; then per
//! iteration sample the remaining trajectories around the mean, score all of them at once (the model's fused `rollout`
//! when it has one, else `reward`/`next` stepped from here, plus the terminal `value`), take the
//! elites, weight them by `exp(temperature * (V - Vmax))` and refit mean and std. The action is the
//! first step of the mean, clipped. The prior's trajectories are the same in every iteration, so
//! they are rolled out in the first only (TD-MPC2 rolls them out every time).
//!
//! Anytime: an iteration is started only when the last one's duration still fits in the budget; a
//! started iteration always finishes, and a plan that starts none lets that estimate age by 1/8 (so
//! that one slow iteration cannot keep the planner off for good). If not even the first fits, the
//! prior's action is returned as `ControllerLevel::Prior` (or an error without a prior, and the
//! control loop stands).
//!
//! Sampling, elite selection and the refit run here on a few kilobytes of floats; the model calls
//! read and write Rust-owned buffers in place. The next plan's random numbers are drawn in
//! `prepare_next`, after the action is out. Nothing is allocated per tick on the Rust side.
//!
//! Not for: what the model computes (that is TorchScript), or limits.

use super::action::ActionMap;
use super::contract::{check_planner, ContractError, PlannerDefaults};
use super::load::{prepare_thread, Opened};
use super::obs::ObsBuilder;
use super::rng::Rng;
use super::torch::{read_f32, Arg, HostBuf, InferenceMode, Module, TorchError};
use super::{Policy, PolicyError};
use crate::config::{Config, PlanCentre};
use crate::control::messages::{ControllerLevel, PlannerStats, PolicyAction, Snapshot};
use crate::rt::clock::monotonic_ns;
use crate::types::terrain::Perception;
use crate::types::MAX_JOINTS;
use std::cell::Cell;
use std::ffi::CStr;
use tch::Tensor;

/// Plans run before the planner is handed over (TorchScript specialises on the run-time shapes).
pub(crate) const WARMUP_PLANS: usize = 10;

/// The planner's settings: the contract's defaults with the configuration's overrides.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub planner: PlannerDefaults,
    pub(crate) budget_ns: u64,
    pub seed: u64,
}

impl Settings {
    pub(crate) fn resolve(defaults: &PlannerDefaults, config: &Config) -> Result<Settings, ContractError> {
        let m = &config.mppi;
        let mut p = defaults.clone();
        let u = |v: Option<u32>, d: usize| v.map_or(d, |x| x as usize);
        p.horizon = u(m.horizon, p.horizon);
        p.samples = u(m.samples, p.samples);
        p.elites = u(m.elites, p.elites);
        p.iterations = u(m.iterations, p.iterations);
        p.prior_samples = u(m.prior_samples, p.prior_samples);
        p.temperature = m.temperature.unwrap_or(p.temperature);
        p.min_std = m.min_std.unwrap_or(p.min_std);
        p.max_std = m.max_std.unwrap_or(p.max_std);
        p.gamma = m.gamma.unwrap_or(p.gamma);
        p.centre = m.centre.unwrap_or(p.centre);
        let overridden = m.horizon.is_some()
            || m.samples.is_some()
            || m.elites.is_some()
            || m.iterations.is_some()
            || m.prior_samples.is_some()
            || m.temperature.is_some()
            || m.min_std.is_some()
            || m.max_std.is_some()
            || m.gamma.is_some()
            || m.centre.is_some();
        check_planner(&p, if overridden { "planner (with [mppi] overrides)" } else { "planner" })?;
        let budget_ns = (m.budget_ms(&config.rate) * 1e6) as u64;
        Ok(Settings { planner: p, budget_ns, seed: m.seed })
    }
}

/// How the last plan went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PlanReport {
    pub iterations: usize,
    pub level: Option<ControllerLevel>,
    pub(crate) plan_ns: u64,
    /// Of `plan_ns`, the time spent inside the model's methods; the rest is the planner's own.
    pub(crate) model_ns: u64,
}

pub struct MppiPlanner {
    name: String,
    module: Module,
    obs: ObsBuilder,
    actions: ActionMap,
    observes_terrain: bool,
    s: PlannerDefaults,
    budget_ns: u64,
    seed: u64,
    has_pi: bool,
    use_rollout: bool,
    a: usize,
    n: usize,
    p: usize,
    h: usize,
    l: i64,
    obs_in: HostBuf,
    /// Rows P..N of `seqs` (a view, declared first so that it is dropped before the memory it
    /// views): the trajectories sampled around the mean.
    sampled: Tensor,
    /// Sampled trajectories [N, H, A]; rows 0..P are the prior's.
    seqs: HostBuf,
    /// One step of the prior's actions [P, A], as fed to `next`.
    prior_step: HostBuf,
    returns: Vec<f32>,
    step: Vec<f32>,
    pi_out: Vec<f32>,
    order: Vec<usize>,
    mean: Vec<f32>,
    std: Vec<f32>,
    prev_mean: Vec<f32>,
    rng: Rng,
    /// The next plan's standard normals, in the order they are used: the prior's ([H, P-1, A]),
    /// then each iteration's ([N-P, H, A]). Drawn by `prepare_next` after an action is published, off
    /// the observation-to-action path (or by `act` when nobody called `prepare_next`).
    noise: Vec<f32>,
    noise_ready: bool,
    /// The longest recent iteration, decaying slowly: what the next one is expected to take.
    iter_estimate_ns: u64,
    raw: [f32; MAX_JOINTS],
    threads: u32,
    /// Time inside model calls during the current plan.
    model_ns: Cell<u64>,
    last: PlanReport,
}

fn torch_err(_: TorchError) -> PolicyError {
    PolicyError("the world model failed")
}

/// Calls a model method, adding the time it takes to `spent_ns` (the plan's model time).
fn call_timed(module: &Module, spent_ns: &Cell<u64>, method: &CStr, args: &[Arg]) -> Result<Tensor, PolicyError> {
    let t0 = monotonic_ns();
    let r = module.call(method, args).map_err(torch_err);
    spent_ns.set(spent_ns.get() + (monotonic_ns() - t0));
    r
}

impl MppiPlanner {
    /// Builds the planner from an opened world model and warms it up with the run-time shapes.
    pub fn new(opened: Opened, config: &Config) -> Result<Self, String> {
        let Opened { path, module, contract, optional, .. } = opened;
        let settings = Settings::resolve(contract.planner.as_ref().ok_or("model contract: planner: missing")?, config)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let obs = ObsBuilder::new(&contract, config, &config.depth_sensor_names())?;
        let actions = ActionMap::new(&contract, &config.joints)?;
        let s = settings.planner.clone();
        let (a, n, h) = (contract.action_dim, s.samples, s.horizon);
        let p = if optional.pi { s.prior_samples } else { 0 };
        if s.centre == PlanCentre::Prior && p == 0 {
            return Err(format!("{}: the planner is centred on the prior, but the model has no `pi`", path.display()));
        }
        let d = module.device();
        let e = |e: TorchError| e.to_string();
        let mut planner = MppiPlanner {
            name: format!(
                "mppi {} ({} rollout)",
                path.file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned()),
                if optional.rollout { "fused" } else { "stepped" }
            ),
            obs_in: HostBuf::new(&[1, obs.dim() as i64], d).map_err(e)?,
            sampled: Tensor::new(),
            seqs: HostBuf::new(&[n as i64, h as i64, a as i64], d).map_err(e)?,
            prior_step: HostBuf::new(&[p.max(1) as i64, a as i64], d).map_err(e)?,
            module,
            obs,
            actions,
            observes_terrain: contract.needs_perception(),
            budget_ns: settings.budget_ns,
            seed: settings.seed,
            has_pi: optional.pi,
            use_rollout: optional.rollout,
            a,
            n,
            p,
            h,
            l: contract.latent_dim.unwrap_or(0) as i64,
            returns: vec![0.0; n],
            step: vec![0.0; n],
            pi_out: vec![0.0; p.max(1) * a],
            order: (0..n).collect(),
            mean: vec![0.0; h * a],
            std: vec![0.0; h * a],
            prev_mean: vec![0.0; h * a],
            rng: Rng::new(settings.seed),
            noise: vec![0.0; (h * p.saturating_sub(1) + s.iterations * (n - p) * h) * a],
            noise_ready: false,
            iter_estimate_ns: 0,
            raw: [0.0; MAX_JOINTS],
            threads: config.controller.threads,
            model_ns: Cell::new(0),
            last: PlanReport::default(),
            s,
        };
        planner.sampled = planner.seqs.tensor().narrow(0, p as i64, (n - p) as i64);
        planner.warm_up()?;
        Ok(planner)
    }

    /// Scores with `next`/`reward` stepped from Rust even when the model has a fused `rollout`
    /// (to compare the two, and to measure the difference).
    pub fn set_stepped(&mut self, stepped: bool) {
        if stepped {
            self.use_rollout = false;
        }
    }

    pub fn uses_fused_rollout(&self) -> bool {
        self.use_rollout
    }

    pub(crate) fn settings(&self) -> &PlannerDefaults {
        &self.s
    }

    pub fn set_budget_ns(&mut self, budget_ns: u64) {
        self.budget_ns = budget_ns;
    }

    /// Takes `ns` as the last iteration's duration, as after a burst of load: what the next plan
    /// uses to decide whether an iteration still fits (tests reproduce a slow iteration with it).
    pub fn assume_iteration_ns(&mut self, ns: u64) {
        self.iter_estimate_ns = ns;
    }

    pub(crate) fn last_plan(&self) -> PlanReport {
        self.last
    }

    /// Trajectories of the prior per plan: the configured `prior_samples`, or 0 without `pi`.
    pub(crate) fn prior_trajectories(&self) -> usize {
        self.p
    }

    /// Model steps (trajectory x horizon) one full plan evaluates: the prior's, all trajectories in
    /// the first iteration, the sampled ones in the others.
    pub(crate) fn steps_per_plan(&self) -> usize {
        let (n, p, h) = (self.n, self.p, self.h);
        p * h + n * h + (n - p) * h * self.s.iterations.saturating_sub(1)
    }

    fn call(&self, method: &CStr, args: &[Arg]) -> Result<Tensor, PolicyError> {
        call_timed(&self.module, &self.model_ns, method, args)
    }

    fn warm_up(&mut self) -> Result<(), String> {
        let budget = self.budget_ns;
        self.budget_ns = u64::MAX;
        let snapshot = Snapshot::default();
        let mut out = PolicyAction::default();
        let mut r = Ok(());
        for _ in 0..WARMUP_PLANS {
            if let Err(e) = self.act(&snapshot, None, &mut out) {
                r = Err(format!("warm-up: {e}"));
                break;
            }
        }
        // Exercise the fallback path too.
        if r.is_ok() && self.has_pi {
            self.budget_ns = 0;
            r = self.act(&snapshot, None, &mut out).map(|_| ()).map_err(|e| format!("warm-up: {e}"));
        }
        self.budget_ns = budget;
        self.reset();
        r
    }

    /// Returns of the trajectories in `seqs` ([N, H, A]) from the current latent, into
    /// `self.returns`. The prior's trajectories (rows 0..P) do not change between iterations, so
    /// after the first only the sampled rows are rolled out (`z` has as many rows as are rolled
    /// out) and the prior's returns are kept.
    fn evaluate(&mut self, first: bool, z: &Tensor) -> Result<(), PolicyError> {
        self.seqs.upload().map_err(torch_err)?;
        let gamma = self.s.gamma;
        let (seqs, from) = if first { (self.seqs.tensor(), 0) } else { (&self.sampled, self.p) };
        if self.use_rollout {
            let g = self.call(c"rollout", &[Arg::T(z), Arg::T(seqs), Arg::F(gamma)])?;
            return read_f32(&g, &mut self.returns[from..]).map_err(torch_err);
        }
        let (returns, step) = (&mut self.returns[from..], &mut self.step[from..]);
        returns.fill(0.0);
        let mut z = z.shallow_clone();
        let mut discount = 1.0f32;
        for t in 0..self.h {
            let a_t = seqs.select(1, t as i64);
            let r = call_timed(&self.module, &self.model_ns, c"reward", &[Arg::T(&z), Arg::T(&a_t)])?;
            read_f32(&r, step).map_err(torch_err)?;
            for (g, r) in returns.iter_mut().zip(step.iter()) {
                *g += discount * r;
            }
            z = call_timed(&self.module, &self.model_ns, c"next", &[Arg::T(&z), Arg::T(&a_t)])?;
            discount *= gamma as f32;
        }
        let v = call_timed(&self.module, &self.model_ns, c"value", &[Arg::T(&z)])?;
        read_f32(&v, step).map_err(torch_err)?;
        for (g, v) in returns.iter_mut().zip(step.iter()) {
            *g += discount * v;
        }
        Ok(())
    }

    /// Rolls the prior out into rows 0..P of `seqs`; leaves `pi(z)` in `pi_out[..A]`.
    fn prior(&mut self, z1: &Tensor) -> Result<(), PolicyError> {
        let (a, p) = (self.a, self.p);
        let clip = self.actions.clip_bound();
        let std = self.s.min_std as f32;
        let mut z = z1.expand([p as i64, self.l], false);
        for t in 0..self.h {
            let pa = self.call(c"pi", &[Arg::T(&z)])?;
            read_f32(&pa, &mut self.pi_out[..p * a]).map_err(torch_err)?;
            let seqs = self.seqs.as_mut_slice();
            let step = self.prior_step.as_mut_slice();
            let noise = &self.noise[t * (p - 1) * a..(t + 1) * (p - 1) * a];
            for k in 0..p {
                for j in 0..a {
                    let mut v = self.pi_out[k * a + j];
                    if k > 0 {
                        v += std * noise[(k - 1) * a + j];
                    }
                    let v = v.clamp(-clip, clip);
                    seqs[(k * self.h + t) * a + j] = v;
                    step[k * a + j] = v;
                }
            }
            if t + 1 < self.h {
                self.prior_step.upload().map_err(torch_err)?;
                z = self.call(c"next", &[Arg::T(&z), Arg::T(self.prior_step.tensor())])?;
            }
        }
        // Row 0, step 0 is pi(z) itself.
        let seqs = self.seqs.as_slice();
        self.pi_out[..a].copy_from_slice(&seqs[..a]);
        Ok(())
    }

    /// Draws the next plan's standard normals into `noise`.
    fn draw_noise(&mut self) {
        for x in self.noise.iter_mut() {
            *x = self.rng.normal();
        }
        self.noise_ready = true;
    }

    /// Samples rows P..N of `seqs` around the mean with iteration `i`'s normals.
    fn sample(&mut self, i: usize) {
        let (a, h, p) = (self.a, self.h, self.p);
        let clip = self.actions.clip_bound();
        let per_iteration = (self.n - p) * h * a;
        let start = h * p.saturating_sub(1) * a + i * per_iteration;
        let noise = &self.noise[start..start + per_iteration];
        let rows = &mut self.seqs.as_mut_slice()[p * h * a..];
        for (row, noise) in rows.chunks_exact_mut(h * a).zip(noise.chunks_exact(h * a)) {
            for (((x, e), m), s) in row.iter_mut().zip(noise).zip(&self.mean).zip(&self.std) {
                *x = (m + s * e).clamp(-clip, clip);
            }
        }
    }

    /// Refits mean and std to the elites; returns (best, mean elite return).
    fn refit(&mut self) -> Result<(f32, f32), PolicyError> {
        let k = self.s.elites;
        let returns = &mut self.returns;
        for g in returns.iter_mut() {
            if !g.is_finite() {
                *g = f32::NEG_INFINITY;
            }
        }
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i;
        }
        let returns = &self.returns;
        if k < self.n {
            self.order.select_nth_unstable_by(k - 1, |&x, &y| returns[y].total_cmp(&returns[x]));
        }
        let elites = &self.order[..k];
        let best = elites.iter().map(|&i| returns[i]).fold(f32::NEG_INFINITY, f32::max);
        if !best.is_finite() {
            return Err(PolicyError("the world model's returns are not finite"));
        }
        let temp = self.s.temperature as f32;
        let mut wsum = 0.0f32;
        let mut mean_return = 0.0f32;
        for &i in elites {
            wsum += (temp * (returns[i] - best)).exp();
            mean_return += returns[i];
        }
        let (a, h) = (self.a, self.h);
        let seqs = self.seqs.as_slice();
        self.mean.fill(0.0);
        for &i in elites {
            let w = (temp * (returns[i] - best)).exp() / wsum;
            for (m, x) in self.mean.iter_mut().zip(&seqs[i * h * a..(i + 1) * h * a]) {
                *m += w * x;
            }
        }
        self.std.fill(0.0);
        for &i in elites {
            let w = (temp * (returns[i] - best)).exp() / wsum;
            for ((s, x), m) in self.std.iter_mut().zip(&seqs[i * h * a..(i + 1) * h * a]).zip(&self.mean) {
                *s += w * (x - m) * (x - m);
            }
        }
        let (lo, hi) = (self.s.min_std as f32, self.s.max_std as f32);
        for s in self.std.iter_mut() {
            *s = s.sqrt().clamp(lo, hi);
        }
        Ok((best, mean_return / k as f32))
    }

    /// One plan: the action into `self.raw[..A]` (clipped), the level that produced it.
    fn plan(&mut self, start_ns: u64, stats: &mut PlannerStats) -> Result<ControllerLevel, PolicyError> {
        let (a, h) = (self.a, self.h);
        self.obs_in.upload().map_err(torch_err)?;
        let z1 = self.call(c"encode", &[Arg::T(self.obs_in.tensor())])?;
        if self.p > 0 {
            self.prior(&z1)?;
        }
        // The samples' centre: the prior's exact trajectory (row 0), or the last plan shifted by
        // one step; the std starts wide every tick.
        if self.s.centre == PlanCentre::Prior && self.p > 0 {
            self.mean.copy_from_slice(&self.seqs.as_slice()[..h * a]);
        } else {
            self.mean[..(h - 1) * a].copy_from_slice(&self.prev_mean[a..]);
            self.mean[(h - 1) * a..].fill(0.0);
        }
        self.std.fill(self.s.max_std as f32);
        let z_all = z1.expand([self.n as i64, self.l], false);
        let z_sampled = z1.expand([(self.n - self.p) as i64, self.l], false);
        let mut done = 0;
        for i in 0..self.s.iterations {
            let now = monotonic_ns();
            if now.saturating_sub(start_ns).saturating_add(self.iter_estimate_ns) > self.budget_ns {
                if i == 0 {
                    // Nothing ran, so nothing will update the estimate: let it age, or one slow
                    // iteration (the warm-up's first, a burst of load) keeps the planner on its
                    // prior for good. Once it fits again, an iteration is tried and measured.
                    self.iter_estimate_ns -= self.iter_estimate_ns / 8;
                }
                break;
            }
            self.sample(i);
            self.evaluate(i == 0, if i == 0 { &z_all } else { &z_sampled })?;
            let (best, mean_elite) = self.refit()?;
            let end = monotonic_ns();
            let took = end - now;
            self.iter_estimate_ns = took.max(self.iter_estimate_ns - self.iter_estimate_ns / 8);
            done += 1;
            stats.best_return = best;
            stats.mean_elite_return = mean_elite;
            if end.saturating_sub(start_ns) > self.budget_ns {
                if done == 1 {
                    done = 0; // the first iteration did not finish within the budget
                }
                break;
            }
        }
        stats.iterations = done as u16;
        stats.samples = self.n as u16;
        if done == 0 {
            self.prev_mean.copy_from_slice(&self.mean);
            if !self.has_pi {
                return Err(PolicyError("the planner missed its budget and the model has no prior"));
            }
            if self.p == 0 {
                let pa = self.call(c"pi", &[Arg::T(&z1)])?;
                read_f32(&pa, &mut self.pi_out[..a]).map_err(torch_err)?;
            }
            self.raw[..a].copy_from_slice(&self.pi_out[..a]);
            return Ok(ControllerLevel::Prior);
        }
        self.prev_mean.copy_from_slice(&self.mean);
        self.raw[..a].copy_from_slice(&self.mean[..a]);
        Ok(ControllerLevel::Primary)
    }
}

impl Policy for MppiPlanner {
    fn name(&self) -> &str {
        &self.name
    }

    fn observes_terrain(&self) -> bool {
        self.observes_terrain
    }

    fn reset(&mut self) {
        self.obs.reset();
        self.prev_mean.fill(0.0);
        self.rng.reseed(self.seed);
        self.noise_ready = false;
    }

    fn prepare_next(&mut self) {
        if !self.noise_ready {
            self.draw_noise();
        }
    }

    fn act(
        &mut self,
        snapshot: &Snapshot,
        perception: Option<&Perception>,
        out: &mut PolicyAction,
    ) -> Result<ControllerLevel, PolicyError> {
        let start = monotonic_ns();
        self.model_ns.set(0);
        prepare_thread(self.threads);
        let _inference = InferenceMode::enter();
        let obs = self.obs.build(snapshot, perception);
        self.obs_in.as_mut_slice().copy_from_slice(obs);
        let mut stats = PlannerStats::default();
        if !self.noise_ready {
            self.draw_noise();
        }
        let level = self.plan(start, &mut stats);
        self.noise_ready = false;
        let end = monotonic_ns();
        self.last = PlanReport {
            iterations: stats.iterations as usize,
            level: level.ok(),
            plan_ns: end - start,
            model_ns: self.model_ns.get(),
        };
        let level = level?;
        super::emit(&self.actions, &mut self.obs, &mut self.raw[..self.a], out)?;
        stats.compute_us = (end - start) as f32 * 1e-3;
        out.planner = stats;
        Ok(level)
    }
}
