//! `locod finetune`: SimDist's adaptation step on the robot's own computer. Trains a world
//! model's latent dynamics (`dynamics.*`) and nothing else on logged policy steps, with SimDist's
//! multi-step latent consistency loss `sum_t rho^t * mse(next(z_t, a_t), encode(o_{t+1}))`
//! (z_0 = encode(o_0), later z_t the model's own prediction; targets from the frozen encoder).
//!
//! Adam with linear warm-up and cosine decay, validation on held-out episodes every epoch, early
//! stopping on the validation loss (the best epoch's dynamics are kept). The finetuned model is
//! saved with its contract extended by a `provenance` object (base model hash, data hash,
//! settings, validation loss before and after), reloaded, checked like any model, and its
//! encoder, reward, value and prior compared bit for bit with the base model's.
//!
//! Not for: collecting data (`locod eval --log-dir`, the daemon's logs) or planning.

pub mod data;

use crate::config::Config;
use crate::log::read::ReadError;
use crate::policy::contract::ModelKind;
use crate::policy::load;
use crate::policy::torch::{Arg, Module, TorchError};
use crate::types::provenance::sha256_file;
use serde::Serialize;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The prefix of the parameters finetuning trains.
pub const DYNAMICS: &str = "dynamics.";

/// What `locod finetune` was asked.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    pub model: PathBuf,
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    /// Policy steps per window (the loss's horizon).
    pub horizon: usize,
    /// Discount of later steps' errors in the loss.
    pub rho: f64,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Epochs of linear warm-up before the cosine decay.
    pub warmup_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub seed: u64,
    pub progress: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: Vec::new(),
            out: PathBuf::new(),
            horizon: 5,
            rho: 0.9,
            epochs: 60,
            batch: 64,
            lr: 3e-4,
            warmup_epochs: 3,
            patience: 10,
            seed: 0,
            progress: true,
        }
    }
}

#[derive(Debug)]
pub enum FinetuneError {
    Options(String),
    Read(ReadError),
    Io(PathBuf, std::io::Error),
    NoData(String),
    Model(load::LoadError),
    /// The model is not a world model with `dynamics.*` parameters, or does not fit the data.
    Unfit(String),
    Torch(TorchError),
    /// A frozen parameter changed: the output is not written as a finetuned model.
    FrozenChanged(String),
}

impl fmt::Display for FinetuneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinetuneError::Options(m) | FinetuneError::NoData(m) | FinetuneError::Unfit(m) => f.write_str(m),
            FinetuneError::Read(e) => e.fmt(f),
            FinetuneError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            FinetuneError::Model(e) => e.fmt(f),
            FinetuneError::Torch(e) => write!(f, "libtorch: {e}"),
            FinetuneError::FrozenChanged(name) => write!(f, "frozen parameter {name} changed: refusing the result"),
        }
    }
}

impl std::error::Error for FinetuneError {}

impl From<TorchError> for FinetuneError {
    fn from(e: TorchError) -> Self {
        FinetuneError::Torch(e)
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, Serialize)]
pub struct EpochFigures {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub validation_loss: f64,
}

/// What `locod finetune` did.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneReport {
    pub model: PathBuf,
    pub out: PathBuf,
    pub base_sha256: String,
    pub out_sha256: String,
    pub data_sha256: String,
    pub logs: usize,
    pub episodes: usize,
    pub policy_steps: usize,
    pub valid_transitions: usize,
    pub train_windows: usize,
    pub validation_windows: usize,
    pub validation_episodes: usize,
    pub horizon: usize,
    pub trained_parameters: usize,
    pub trained_tensors: Vec<String>,
    pub frozen_parameters: usize,
    /// Frozen tensors compared bit for bit with the base model after reloading the output.
    pub frozen_tensors_identical: usize,
    pub validation_loss_before: f64,
    pub validation_loss_after: f64,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub epochs: Vec<EpochFigures>,
    pub seconds: f64,
    /// Said when the logs were recorded with a model whose contract differs from this one's.
    pub warnings: Vec<String>,
}

impl fmt::Display for FinetuneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "data: {} logs, {} episodes, {} policy steps ({} valid transitions): {} training windows, {} validation windows ({} held-out episodes) of {} steps",
            self.logs,
            self.episodes,
            self.policy_steps,
            self.valid_transitions,
            self.train_windows,
            self.validation_windows,
            self.validation_episodes,
            self.horizon
        )?;
        writeln!(
            f,
            "trained {} parameters ({}); {} frozen",
            self.trained_parameters,
            self.trained_tensors.join(", "),
            self.frozen_parameters
        )?;
        writeln!(
            f,
            "validation latent consistency: {:.5} before, {:.5} after (best epoch {}{}); {:.0}% of before",
            self.validation_loss_before,
            self.validation_loss_after,
            self.best_epoch,
            if self.stopped_early { ", stopped early" } else { "" },
            100.0 * self.validation_loss_after / self.validation_loss_before.max(f64::MIN_POSITIVE)
        )?;
        writeln!(
            f,
            "encoder, reward, value and prior: {} tensors bit-identical to the base model (checked on the saved file)",
            self.frozen_tensors_identical
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(f, "wrote {} (sha256:{}) in {:.0} s", self.out.display(), &self.out_sha256[..12], self.seconds)
    }
}

/// Adam's state for one trained tensor.
struct Trained {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    best: Tensor,
}

/// Learning rate at optimiser step `step` of `total`: linear warm-up over `warmup` steps, then a
/// cosine decay to a tenth.
fn schedule(lr: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let x = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * x.min(1.0)).cos()))
}

/// The world model's loss on windows `[b, h + 1, o]` / `[b, h, a]`.
fn consistency(m: &Module, obs: &Tensor, act: &Tensor, rho: f64) -> Result<Tensor, TorchError> {
    let (b, h1, o) = obs.size3().map_err(|e| TorchError(e.to_string()))?;
    let h = h1 - 1;
    let targets = tch::no_grad(|| m.call(c"encode", &[Arg::T(&obs.reshape([b * h1, o]))]))?;
    let targets = targets.reshape([b, h1, -1]);
    let mut z = targets.select(1, 0);
    let mut loss: Option<Tensor> = None;
    for t in 0..h {
        z = m.call(c"next", &[Arg::T(&z), Arg::T(&act.select(1, t))])?;
        let err = (&z - targets.select(1, t + 1)).square().mean(Kind::Float) * rho.powi(t as i32);
        loss = Some(match loss {
            Some(l) => l + err,
            None => err,
        });
    }
    loss.ok_or_else(|| TorchError("a window of no transitions".into()))
}

/// Mean loss over `windows` in batches, without gradients.
fn evaluate(m: &Module, w: &data::Windows, h: usize, dims: (usize, usize), rho: f64) -> Result<f64, TorchError> {
    let mut total = 0.0;
    let batch = 256;
    let mut start = 0;
    while start < w.count {
        let n = batch.min(w.count - start);
        let (obs, act) = batch_of(w, &(start..start + n).collect::<Vec<_>>(), h, dims);
        let l = tch::no_grad(|| consistency(m, &obs, &act, rho))?;
        total += l.double_value(&[]) * n as f64;
        start += n;
    }
    Ok(total / w.count.max(1) as f64)
}

fn batch_of(w: &data::Windows, idx: &[usize], h: usize, (o, a): (usize, usize)) -> (Tensor, Tensor) {
    let (so, sa) = ((h + 1) * o, h * a);
    let mut obs = Vec::with_capacity(idx.len() * so);
    let mut act = Vec::with_capacity(idx.len() * sa);
    for &i in idx {
        obs.extend_from_slice(&w.obs[i * so..(i + 1) * so]);
        act.extend_from_slice(&w.act[i * sa..(i + 1) * sa]);
    }
    let n = idx.len() as i64;
    (
        Tensor::from_slice(&obs).reshape([n, (h + 1) as i64, o as i64]),
        Tensor::from_slice(&act).reshape([n, h as i64, a as i64]),
    )
}

/// A small deterministic generator for the epoch's shuffle (SplitMix64).
fn shuffle(v: &mut [usize], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

fn check_options(o: &FinetuneOptions) -> Result<(), FinetuneError> {
    let bad = |m: &str| Err(FinetuneError::Options(m.into()));
    if o.data.is_empty() {
        return bad("--data: at least one log directory");
    }
    if o.horizon == 0 || o.epochs == 0 || o.batch == 0 {
        return bad("--horizon, --epochs and --batch must be positive");
    }
    if !(o.rho > 0.0 && o.rho <= 1.0) {
        return bad("--rho must be in (0, 1]");
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return bad("--lr must be a positive number");
    }
    if o.out == o.model {
        return bad("--out must differ from --model: the base model is kept");
    }
    Ok(())
}

/// Runs the finetuning; `config` is the robot's configuration (the model's contract is checked
/// against it, as the daemon will).
pub fn run(config: &Config, o: &FinetuneOptions) -> Result<FinetuneReport, FinetuneError> {
    let started = std::time::Instant::now();
    check_options(o)?;
    let open = |p: &Path| {
        load::open(p, config, Some(ModelKind::WorldModel), &config.depth_sensor_names(), Device::Cpu)
            .map_err(FinetuneError::Model)
    };
    let base = open(&o.model)?;
    let data = data::load(&o.data, o.horizon)?;
    let mut warnings = Vec::new();
    let spec: serde_json::Value =
        serde_json::from_str(&base.spec).map_err(|e| FinetuneError::Unfit(format!("locod_spec(): {e}")))?;
    for c in &data.recorded_contracts {
        let recorded: serde_json::Value = serde_json::from_str(c).unwrap_or_default();
        if recorded.get("obs") != spec.get("obs") || recorded.get("action") != spec.get("action") {
            warnings.push(
                "some logs were recorded with a model whose observation or action differs from this model's contract"
                    .into(),
            );
            break;
        }
    }
    crate::policy::load::prepare_thread(config.controller.threads.max(1));
    // SAFETY: plain setter of the calling thread's grad mode (prepare_thread turned it off).
    unsafe { torch_sys::at_grad_set_enabled(1) };
    let mut module = base.module;
    let params = module.named_parameters()?;
    let (mut trained, mut frozen) = (Vec::new(), Vec::new());
    for (name, p) in params {
        if name.starts_with(DYNAMICS) {
            let p = p.set_requires_grad(true);
            trained.push(Trained { name, m: p.zeros_like(), v: p.zeros_like(), best: p.detach().copy(), param: p });
        } else {
            frozen.push((name, p.set_requires_grad(false)));
        }
    }
    if trained.is_empty() {
        return Err(FinetuneError::Unfit(format!(
            "{}: no parameter is named {DYNAMICS}*: locod finetunes a world model's latent dynamics only",
            o.model.display()
        )));
    }
    let dims = (data.obs_dim, data.act_dim);
    let probe = batch_of(&data.validation, &[0], o.horizon, dims);
    let _probe = tch::no_grad(|| consistency(&module, &probe.0, &probe.1, o.rho)).map_err(|e| {
        FinetuneError::Unfit(format!(
            "the logs' observations ({} values) and actions ({}) do not fit the model: {e}",
            dims.0, dims.1
        ))
    })?;
    let before = evaluate(&module, &data.validation, o.horizon, dims, o.rho)?;
    let steps_per_epoch = data.train.count.div_ceil(o.batch);
    let total = steps_per_epoch * o.epochs;
    let warmup = steps_per_epoch * o.warmup_epochs;
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut order: Vec<usize> = (0..data.train.count).collect();
    let mut seed = o.seed;
    let mut step = 0usize;
    let (mut best, mut best_epoch, mut since_best) = (before, 0, 0);
    let mut epochs = Vec::new();
    let tty = std::io::stderr().is_terminal();
    for epoch in 1..=o.epochs {
        shuffle(&mut order, &mut seed);
        let mut sum = 0.0;
        let mut lr = o.lr;
        for chunk in order.chunks(o.batch) {
            let (obs, act) = batch_of(&data.train, chunk, o.horizon, dims);
            let loss = consistency(&module, &obs, &act, o.rho)?;
            sum += loss.double_value(&[]) * chunk.len() as f64;
            loss.backward();
            lr = schedule(o.lr, step, warmup, total);
            step += 1;
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            tch::no_grad(|| {
                for t in &mut trained {
                    let g = t.param.grad();
                    if !g.defined() {
                        continue;
                    }
                    t.m = &t.m * b1 + &g * (1.0 - b1);
                    t.v = &t.v * b2 + g.square() * (1.0 - b2);
                    let update = (&t.m / c1) / ((&t.v / c2).sqrt() + eps) * lr;
                    let _ = t.param.f_sub_(&update);
                    let _ = t.param.grad().f_zero_();
                }
            });
        }
        let train_loss = sum / data.train.count as f64;
        let validation_loss = evaluate(&module, &data.validation, o.horizon, dims, o.rho)?;
        if validation_loss < best {
            best = validation_loss;
            best_epoch = epoch;
            since_best = 0;
            tch::no_grad(|| trained.iter_mut().for_each(|t| t.best.copy_(&t.param)));
        } else {
            since_best += 1;
        }
        if o.progress {
            let line = format!(
                "finetune: epoch {epoch}/{}  train {train_loss:.5}  validation {validation_loss:.5}  (before {before:.5}, best {best:.5})  lr {lr:.1e}",
                o.epochs
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
        epochs.push(EpochFigures { epoch, lr, train_loss, validation_loss });
        if since_best >= o.patience {
            break;
        }
    }
    if o.progress && tty {
        eprintln!();
    }
    let stopped_early = epochs.len() < o.epochs;
    // The best epoch's dynamics (the base model's when no epoch improved on it).
    tch::no_grad(|| trained.iter_mut().for_each(|t| t.param.copy_(&t.best)));
    let after = evaluate(&module, &data.validation, o.horizon, dims, o.rho)?;

    let base_sha256 = base.sha256.clone();
    let trained_tensors: Vec<String> = trained.iter().map(|t| t.name.clone()).collect();
    let trained_parameters: usize = trained.iter().map(|t| t.param.numel()).sum();
    let frozen_parameters: usize = frozen.iter().map(|(_, p)| p.numel()).sum();
    let mut spec = spec;
    spec["provenance"] = serde_json::json!({
        "finetuned_by": format!("locod {} finetune", env!("CARGO_PKG_VERSION")),
        "base_model_sha256": base_sha256,
        "data_sha256": data.sha256,
        "data": { "logs": data.logs, "episodes": data.episodes, "policy_steps": data.steps,
                  "train_windows": data.train.count, "validation_windows": data.validation.count },
        "trained": format!("{DYNAMICS}*"),
        "settings": { "horizon": o.horizon, "rho": o.rho, "epochs": o.epochs, "batch": o.batch, "lr": o.lr,
                      "warmup_epochs": o.warmup_epochs, "patience": o.patience, "seed": o.seed },
        "validation_loss_before": before,
        "validation_loss_after": after,
        "best_epoch": best_epoch,
    });
    module.set_str_attr("spec_json", &spec.to_string()).map_err(|e| {
        FinetuneError::Unfit(format!(
            "cannot record the provenance in the contract ({e}): locod_spec() must return the module's spec_json attribute"
        ))
    })?;
    // Written beside the output, checked, then moved into place: a failed check leaves no model.
    let tmp = o.out.with_extension("pt.partial");
    module.save(&tmp)?;
    drop(frozen);
    drop(trained);
    drop(module);
    let identical = match compare_frozen(&o.model, &tmp) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // SAFETY: plain setter; back to inference for the checks `open` runs.
    unsafe { torch_sys::at_grad_set_enabled(0) };
    if let Err(e) = open(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &o.out).map_err(|e| FinetuneError::Io(o.out.clone(), e))?;
    let out_sha256 = sha256_file(&o.out).map_err(|e| FinetuneError::Io(o.out.clone(), e))?;
    Ok(FinetuneReport {
        model: o.model.clone(),
        out: o.out.clone(),
        base_sha256,
        out_sha256,
        data_sha256: data.sha256,
        logs: data.logs,
        episodes: data.episodes,
        policy_steps: data.steps,
        valid_transitions: data.valid_transitions,
        train_windows: data.train.count,
        validation_windows: data.validation.count,
        validation_episodes: data.validation_episodes,
        horizon: o.horizon,
        trained_parameters,
        trained_tensors,
        frozen_parameters,
        frozen_tensors_identical: identical,
        validation_loss_before: before,
        validation_loss_after: after,
        best_epoch,
        stopped_early,
        epochs,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The tensor's values as bits (every parameter locod trains is float32).
fn bits(t: &Tensor) -> Option<Vec<u32>> {
    let v: Vec<f32> = Vec::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).ok()?;
    Some(v.into_iter().map(f32::to_bits).collect())
}

/// Compares every parameter outside `dynamics.*` of the two files bit for bit; the number of
/// tensors compared.
pub fn compare_frozen(base: &Path, finetuned: &Path) -> Result<usize, FinetuneError> {
    let a = Module::load(base, Device::Cpu)?.named_parameters()?;
    let b = Module::load(finetuned, Device::Cpu)?.named_parameters()?;
    let frozen = |v: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
        v.into_iter().filter(|(n, _)| !n.starts_with(DYNAMICS)).collect()
    };
    let (a, b) = (frozen(a), frozen(b));
    if a.len() != b.len() {
        return Err(FinetuneError::FrozenChanged(format!(
            "(the models have {} and {} frozen tensors)",
            a.len(),
            b.len()
        )));
    }
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        if na != nb || ta.kind() != tb.kind() || ta.size() != tb.size() || bits(ta).is_none() || bits(ta) != bits(tb) {
            return Err(FinetuneError::FrozenChanged(na.clone()));
        }
    }
    Ok(a.len())
}
