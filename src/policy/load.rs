//! Opening a model: load the TorchScript file, read its contract, check it against the
//! configuration, and probe the model itself (observation dimension, output shapes, finiteness
//! at the zero observation and at ordinary robot states, the world model's methods). `locod check --model` runs exactly this; so does every controller
//! before it is built.
//!
//! Not for: running the model every tick (the controllers do that).

use super::contract::{Contract, ContractError, ModelKind};
use super::obs::ObsBuilder;
use super::torch::{has_shape, read_f32, Arg, Module, TorchError};
use crate::config::Config;
use crate::control::messages::{Mode, Snapshot};
use crate::types::provenance::{sha256_file, ModelProvenance};
use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Why a model cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadError {
    /// libtorch could not load the file (missing, not TorchScript, wrong device).
    Torch { path: PathBuf, error: TorchError },
    /// The contract does not fit the configuration or the model (names the field).
    Contract { path: PathBuf, error: ContractError },
}

impl LoadError {
    pub fn contract(&self) -> Option<&ContractError> {
        match self {
            LoadError::Contract { error, .. } => Some(error),
            LoadError::Torch { .. } => None,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Torch { path, error } => write!(f, "{}: cannot load the model: {error}", path.display()),
            LoadError::Contract { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a world model exports beyond the required methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Optional {
    pub pi: bool,
    pub rollout: bool,
}

/// A model whose contract fits the configuration and whose probes passed.
pub struct Opened {
    pub path: PathBuf,
    /// SHA-256 of the file as it was loaded, and the contract JSON it declared.
    pub sha256: String,
    pub spec: String,
    pub module: Module,
    pub contract: Contract,
    pub optional: Optional,
    /// Things worth saying that do not stop the model (a robot name mismatch).
    pub warnings: Vec<String>,
}

impl Opened {
    /// The model's provenance as the daemon's logs record it, for the model's `role`.
    pub fn provenance(&self, role: &'static str) -> ModelProvenance {
        ModelProvenance { role, path: self.path.clone(), sha256: self.sha256.clone(), contract: self.spec.clone() }
    }
}

/// Batch used to probe the world model's batched methods (not 1, so broadcasting bugs show).
const PROBE_BATCH: i64 = 3;

thread_local! {
    static PREPARED_THREADS: Cell<u32> = const { Cell::new(0) };
}

/// Makes the calling thread an inference thread: gradients off (libtorch's grad mode is
/// per-thread) and `threads` intra-op threads. Cheap after the first call on a thread.
pub(crate) fn prepare_thread(threads: u32) {
    if PREPARED_THREADS.with(|p| p.get()) == threads {
        return;
    }
    // SAFETY: plain setter of the calling thread's grad mode.
    unsafe { torch_sys::at_grad_set_enabled(0) };
    tch::set_num_threads(threads.max(1) as i32);
    PREPARED_THREADS.with(|p| p.set(threads));
}

/// Opens `path` for a controller that needs a model of kind `kind` (`None`: whichever kind the
/// contract declares, as `locod check --model` does without a configured controller).
pub fn open(
    path: &Path,
    config: &Config,
    kind: Option<ModelKind>,
    depth_sensors: &[String],
    device: Device,
) -> Result<Opened, LoadError> {
    let torch = |error| LoadError::Torch { path: path.to_path_buf(), error };
    let contract_err = |error| LoadError::Contract { path: path.to_path_buf(), error };
    if !path.is_file() {
        return Err(torch(TorchError("no such file".into())));
    }
    prepare_thread(config.controller.threads);
    let sha256 = sha256_file(path).map_err(|e| torch(TorchError(format!("cannot read: {e}"))))?;
    let module = Module::load(path, device).map_err(torch)?;
    let spec = module.call_str(c"locod_spec").map_err(|e| {
        contract_err(ContractError::new(
            "locod_spec()",
            if e.is_missing_method() {
                "the model exports no locod_spec(): it carries no contract".to_string()
            } else {
                format!("failed: {e}")
            },
        ))
    })?;
    let contract = Contract::parse(&spec).map_err(contract_err)?;
    let warnings = contract.check_config(config, kind.unwrap_or(contract.kind), depth_sensors).map_err(contract_err)?;
    let optional = probe(&contract, &module).map_err(contract_err)?;
    probe_ordinary(&contract, &module, config, depth_sensors, optional).map_err(contract_err)?;
    Ok(Opened { path: path.to_path_buf(), sha256, spec, module, contract, optional, warnings })
}

/// The checks that need the model: a zero observation of the contract's dimension goes through,
/// outputs have the documented shapes and are finite, a world model has its required methods.
pub fn probe(contract: &Contract, module: &Module) -> Result<Optional, ContractError> {
    match contract.kind {
        ModelKind::Policy => probe_policy(contract, module).map(|_| Optional::default()),
        ModelKind::WorldModel => probe_world_model(contract, module),
    }
}

fn zeros(shape: &[i64], device: Device) -> Tensor {
    Tensor::zeros(shape, (Kind::Float, device))
}

fn shape_str(t: &Tensor) -> String {
    format!("{:?}", t.size())
}

fn finite(t: &Tensor) -> bool {
    let n = t.numel();
    let mut v = vec![0.0f32; n];
    read_f32(t, &mut v).is_ok() && v.iter().all(|x| x.is_finite())
}

/// Whether libtorch's message is about the shape of an input (as opposed to the model failing
/// for its own reasons).
fn is_shape_error(e: &TorchError) -> bool {
    let m = e.0.to_lowercase();
    ["shape", "size mismatch", "must match the size", "dimension", "mat1 and mat2", "expected input"]
        .iter()
        .any(|k| m.contains(k))
}

/// A failure while probing with a zero observation: a missing method, an observation of the
/// wrong dimension, or the model's own error (its message, under the method's name).
fn obs_error(contract: &Contract, method: &str, e: TorchError) -> ContractError {
    if e.is_missing_method() {
        return ContractError::new(method, format!("the model has no `{method}` method"));
    }
    if !is_shape_error(&e) {
        return ContractError::new(method, format!("raised an error on a zero observation: {e}"));
    }
    ContractError::new(
        "obs",
        format!(
            "`{method}` rejected a zero observation of dimension {} (the sum of the `obs` terms): {e}",
            contract.obs_dim()
        ),
    )
}

/// Robot states the model meets in ordinary use, built from the configuration: standing in the
/// default pose, walking at the command limits, at the joints' limits and tilted, and seeded
/// random states within the limits. A model that is finite at the zero observation can still
/// divide by or take the logarithm of one of these.
fn ordinary_snapshots(config: &Config) -> Vec<(String, Snapshot)> {
    let mut out = Vec::new();
    let joints = &config.joints;
    let base = |t: u64| {
        let mut s = Snapshot { tick: t + 1, mode: Mode::Walk, standing: true, ..Default::default() };
        s.state.t_ns = (t + 1) * 20_000_000;
        for (i, j) in joints.iter().enumerate() {
            s.state.joints[i].q_rad = j.default_pos_rad;
        }
        s
    };
    let gravity = |roll: f64, pitch: f64| [pitch.sin(), -roll.sin() * pitch.cos(), -roll.cos() * pitch.cos()];
    out.push(("standing in the default pose".to_string(), base(0)));
    let max = config.command.max_vel;
    for (k, sign) in [(1u64, 1.0), (2, -1.0)] {
        let mut s = base(k);
        s.command = [sign * max[0], sign * max[1], sign * max[2]];
        s.state.ang_vel_body_radps = [0.3 * sign, -0.2, 0.5 * sign];
        for (i, j) in joints.iter().enumerate() {
            s.state.joints[i].qd_radps = sign * 0.5 * j.vel_max_radps;
        }
        out.push((format!("walking at {} the command limits", if sign > 0.0 { "+" } else { "-" }), s));
    }
    for (k, low) in [(3u64, true), (4, false)] {
        let mut s = base(k);
        for (i, j) in joints.iter().enumerate() {
            let limit = if low { j.pos_min_rad } else { j.pos_max_rad };
            s.state.joints[i].q_rad = limit.unwrap_or(j.default_pos_rad);
            s.state.joints[i].qd_radps = if low { -j.vel_max_radps } else { j.vel_max_radps };
        }
        s.state.projected_gravity_body = if low { gravity(0.0, 0.35) } else { gravity(-0.35, 0.0) };
        out.push((format!("at the joints' {} limits, tilted 20 degrees", if low { "lower" } else { "upper" }), s));
    }
    let mut rng = super::rng::Rng::new(0x6c6f_636f_6421);
    for k in 0..4u64 {
        let mut s = base(5 + k);
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
        for (i, j) in joints.iter().enumerate() {
            let (lo, hi) = (j.pos_min_rad.unwrap_or(-3.0), j.pos_max_rad.unwrap_or(3.0));
            s.state.joints[i].q_rad = u(lo, hi);
            s.state.joints[i].qd_radps = u(-j.vel_max_radps, j.vel_max_radps);
        }
        s.command = [u(-max[0], max[0]), u(-max[1], max[1]), u(-max[2], max[2])];
        s.state.ang_vel_body_radps = [u(-2.0, 2.0), u(-2.0, 2.0), u(-2.0, 2.0)];
        s.state.projected_gravity_body = gravity(u(-0.5, 0.5), u(-0.5, 0.5));
        out.push((format!("a random state within the limits (#{k})"), s));
    }
    out
}

/// Runs the model on the observations of `ordinary_snapshots` (built as the controller builds
/// them, history and last action included) and refuses an error or a non-finite output.
fn probe_ordinary(
    contract: &Contract,
    m: &Module,
    config: &Config,
    depth_sensors: &[String],
    optional: Optional,
) -> Result<(), ContractError> {
    let mut builder = ObsBuilder::new(contract, config, depth_sensors).map_err(|e| ContractError::new("obs", e))?;
    let d = m.device();
    let n = builder.dim() as i64;
    let a = contract.action_dim;
    for (what, snapshot) in ordinary_snapshots(config) {
        builder.reset();
        let obs = Tensor::from_slice(builder.build(&snapshot, None)).reshape([1, n]).to_device(d);
        let fail = |method: &str, e: TorchError| {
            ContractError::new(method, format!("raised an error on an ordinary observation ({what}): {e}"))
        };
        let non_finite = |method: &str| {
            ContractError::new(method, format!("returned non-finite values for an ordinary observation ({what})"))
        };
        match contract.kind {
            ModelKind::Policy => {
                let action = match &contract.recurrent_state {
                    None => m.call(c"forward", &[Arg::T(&obs)]).map_err(|e| fail("forward", e))?,
                    Some(shape) => {
                        let state = zeros(shape, d);
                        m.call2(c"forward", &[Arg::T(&obs), Arg::T(&state)]).map_err(|e| fail("forward", e))?.0
                    }
                };
                if !has_shape(&action, &[1, a as i64]) || !finite(&action) {
                    return Err(non_finite("forward"));
                }
            }
            ModelKind::WorldModel => {
                let z = m.call(c"encode", &[Arg::T(&obs)]).map_err(|e| fail("encode", e))?;
                if !finite(&z) {
                    return Err(non_finite("encode"));
                }
                if optional.pi {
                    let p = m.call(c"pi", &[Arg::T(&z)]).map_err(|e| fail("pi", e))?;
                    if !finite(&p) {
                        return Err(non_finite("pi"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn probe_policy(contract: &Contract, m: &Module) -> Result<(), ContractError> {
    let d = m.device();
    let obs = zeros(&[1, contract.obs_dim() as i64], d);
    let a = contract.action_dim as i64;
    let action = match &contract.recurrent_state {
        None => m.call(c"forward", &[Arg::T(&obs)]).map_err(|e| obs_error(contract, "forward", e))?,
        Some(state_shape) => {
            let state = zeros(state_shape, d);
            let (action, next) =
                m.call2(c"forward", &[Arg::T(&obs), Arg::T(&state)]).map_err(|e| obs_error(contract, "forward", e))?;
            if !has_shape(&next, state_shape) {
                return Err(ContractError::new(
                    "recurrent.state",
                    format!(
                        "the model returned a state of shape {}, the contract says {state_shape:?}",
                        shape_str(&next)
                    ),
                ));
            }
            action
        }
    };
    if !has_shape(&action, &[1, a]) {
        return Err(ContractError::new(
            "action.dim",
            format!("forward returned shape {}, expected [1, {a}]", shape_str(&action)),
        ));
    }
    if !finite(&action) {
        return Err(ContractError::new("forward", "returned non-finite values for a zero observation"));
    }
    Ok(())
}

fn probe_world_model(contract: &Contract, m: &Module) -> Result<Optional, ContractError> {
    let d = m.device();
    let (n, a) = (PROBE_BATCH, contract.action_dim as i64);
    let l = contract.latent_dim.unwrap_or(0) as i64;
    let horizon = contract.planner.as_ref().map_or(1, |p| p.horizon) as i64;
    let obs = zeros(&[1, contract.obs_dim() as i64], d);
    let z1 = m.call(c"encode", &[Arg::T(&obs)]).map_err(|e| obs_error(contract, "encode", e))?;
    if !has_shape(&z1, &[1, l]) {
        return Err(ContractError::new(
            "latent_dim",
            format!("encode returned shape {}, expected [1, {l}] (latent_dim {l})", shape_str(&z1)),
        ));
    }
    let z = z1.expand([n, l], false).contiguous();
    let act = zeros(&[n, a], d);
    let required = |name: &str, e: TorchError| {
        if e.is_missing_method() {
            ContractError::new(name, format!("the model has no `{name}` method (required of a world model)"))
        } else {
            ContractError::new(name, format!("failed on a batch of {n}: {e}"))
        }
    };
    let check = |name: &str, t: &Tensor, want: &[i64]| {
        if !has_shape(t, want) {
            Err(ContractError::new(name, format!("returned shape {}, expected {want:?}", shape_str(t))))
        } else if !finite(t) {
            Err(ContractError::new(name, "returned non-finite values"))
        } else {
            Ok(())
        }
    };
    check("encode", &z1, &[1, l])?;
    let next = m.call(c"next", &[Arg::T(&z), Arg::T(&act)]).map_err(|e| required("next", e))?;
    check("next", &next, &[n, l])?;
    let reward = m.call(c"reward", &[Arg::T(&z), Arg::T(&act)]).map_err(|e| required("reward", e))?;
    check("reward", &reward, &[n])?;
    let value = m.call(c"value", &[Arg::T(&z)]).map_err(|e| required("value", e))?;
    check("value", &value, &[n])?;
    let mut optional = Optional::default();
    match m.call(c"pi", &[Arg::T(&z)]) {
        Ok(p) => {
            check("pi", &p, &[n, a])?;
            optional.pi = true;
        }
        Err(e) if e.is_missing_method() => {}
        Err(e) => return Err(ContractError::new("pi", format!("failed on a batch of {n}: {e}"))),
    }
    let seq = zeros(&[n, horizon, a], d);
    match m.call(c"rollout", &[Arg::T(&z), Arg::T(&seq), Arg::F(0.99)]) {
        Ok(r) => {
            check("rollout", &r, &[n])?;
            optional.rollout = true;
        }
        Err(e) if e.is_missing_method() => {}
        Err(e) => return Err(ContractError::new("rollout", format!("failed on a batch of {n}: {e}"))),
    }
    Ok(optional)
}
