//! The model contract (docs/model-contract.md, version 1): the JSON a model returns from
//! `locod_spec()`, parsed into types, and the checks that need only the contract and the
//! configuration. Every failure is a `ContractError` naming the contract field (`joints[2].name`,
//! `obs[4].scale`, `planner.elites`), so a mismatch between training and deployment is found
//! before anything moves.
//!
//! Not for: calling the model (the probes that need it live in `load`) or building observations.

use crate::config::{Config, JointMode, PlanCentre};
use crate::control::messages::MAX_OBS;
use crate::types::MAX_JOINTS;
use serde_json::{Map, Value};
use std::fmt;

pub(crate) const CONTRACT_VERSION: u64 = 1;

/// A contract that does not fit: the field (a path into the spec JSON, or a method) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ContractError {
    pub field: String,
    pub message: String,
}

impl ContractError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model contract: {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ContractError {}

type R<T> = Result<T, ContractError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Policy,
    WorldModel,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Policy => "policy",
            ModelKind::WorldModel => "world_model",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JointSpec {
    pub name: String,
    pub(crate) default_pos_rad: f64,
    pub mode: JointMode,
    pub(crate) action_scale: f64,
    pub kp: f64,
    pub kd: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeightScan {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) resolution_m: f32,
    /// Centre of the grid in the body frame (x forward, y left), metres.
    pub(crate) center_m: [f32; 2],
    pub(crate) offset_m: f32,
    /// Raw value of cells without data.
    pub fill: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DepthTerm {
    /// Sensor names from the configuration's depth sensors, in this order.
    pub sensors: Vec<String>,
    /// Zones per sensor (16 for 4x4, 64 for 8x8).
    pub zones: usize,
    pub(crate) max_range_m: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    BaseAngVel,
    ProjectedGravity,
    Command,
    JointPos,
    JointVel,
    LastAction,
    HeightScan(HeightScan),
    Depth(DepthTerm),
}

impl Term {
    pub(crate) fn needs_perception(&self) -> bool {
        matches!(self, Term::HeightScan(_) | Term::Depth(_))
    }
}

/// One observation term: `clip(scale * raw)`, its last `history` values oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct ObsTerm {
    pub name: String,
    pub term: Term,
    /// Values of one frame.
    pub dim: usize,
    /// One scale per value of a frame.
    pub(crate) scale: Vec<f32>,
    pub(crate) clip: Option<(f32, f32)>,
    pub history: usize,
}

/// The planner defaults a world model carries (`planner`), each overridable by `[mppi]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerDefaults {
    pub(crate) horizon: usize,
    pub samples: usize,
    pub(crate) elites: usize,
    pub iterations: usize,
    pub temperature: f64,
    pub min_std: f64,
    pub max_std: f64,
    pub(crate) prior_samples: usize,
    pub(crate) gamma: f64,
    /// Where the samples are centred (`planner.centre`; "last_plan" when absent).
    pub centre: PlanCentre,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Contract {
    pub kind: ModelKind,
    pub robot: String,
    pub control_hz: f64,
    pub joints: Vec<JointSpec>,
    pub obs: Vec<ObsTerm>,
    pub action_dim: usize,
    pub(crate) action_clip: f32,
    /// Shape of the recurrent state (`recurrent.state`), for the recurrent policy form.
    pub recurrent_state: Option<Vec<i64>>,
    pub latent_dim: Option<usize>,
    pub planner: Option<PlannerDefaults>,
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str, path: &str) -> R<&'a Value> {
    obj.get(key).ok_or_else(|| ContractError::new(join(path, key), "missing"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn number(v: &Value, field: &str) -> R<f64> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(ContractError::new(field, format!("expected a finite number, got {v}"))),
    }
}

fn count(v: &Value, field: &str) -> R<usize> {
    match v.as_u64() {
        Some(x) if x >= 1 => Ok(x as usize),
        _ => Err(ContractError::new(field, format!("expected a whole number >= 1, got {v}"))),
    }
}

fn string<'a>(v: &'a Value, field: &str) -> R<&'a str> {
    v.as_str().ok_or_else(|| ContractError::new(field, format!("expected a string, got {v}")))
}

fn object<'a>(v: &'a Value, field: &str) -> R<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| ContractError::new(field, format!("expected an object, got {v}")))
}

fn array<'a>(v: &'a Value, field: &str) -> R<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| ContractError::new(field, format!("expected a list, got {v}")))
}

fn num_field(obj: &Map<String, Value>, key: &str, path: &str) -> R<f64> {
    number(get(obj, key, path)?, &join(path, key))
}

fn count_field(obj: &Map<String, Value>, key: &str, path: &str) -> R<usize> {
    count(get(obj, key, path)?, &join(path, key))
}

const KNOWN_TERMS: &str =
    "base_ang_vel, projected_gravity, command, joint_pos, joint_vel, last_action, height_scan, depth";

impl Contract {
    /// Parses and checks the spec JSON on its own (no configuration, no model).
    pub fn parse(json: &str) -> R<Contract> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| ContractError::new("locod_spec()", format!("not valid JSON: {e}")))?;
        let root = object(&root, "locod_spec()")?;

        let version = get(root, "contract", "")?;
        if version.as_u64() != Some(CONTRACT_VERSION) {
            return Err(ContractError::new(
                "contract",
                format!("this locod reads contract version {CONTRACT_VERSION}, the model has {version}"),
            ));
        }
        let kind = match string(get(root, "kind", "")?, "kind")? {
            "policy" => ModelKind::Policy,
            "world_model" => ModelKind::WorldModel,
            other => {
                return Err(ContractError::new(
                    "kind",
                    format!("expected \"policy\" or \"world_model\", got {other:?}"),
                ))
            }
        };
        let robot = string(get(root, "robot", "")?, "robot")?.to_string();
        let control_hz = num_field(root, "control_hz", "")?;
        if control_hz <= 0.0 {
            return Err(ContractError::new("control_hz", format!("expected a positive rate, got {control_hz}")));
        }

        let joints_v = array(get(root, "joints", "")?, "joints")?;
        if joints_v.is_empty() || joints_v.len() > MAX_JOINTS {
            return Err(ContractError::new(
                "joints",
                format!("expected 1..={MAX_JOINTS} joints, got {}", joints_v.len()),
            ));
        }
        let mut joints = Vec::with_capacity(joints_v.len());
        for (i, j) in joints_v.iter().enumerate() {
            let path = format!("joints[{i}]");
            let o = object(j, &path)?;
            let name = string(get(o, "name", &path)?, &join(&path, "name"))?.to_string();
            if joints.iter().any(|x: &JointSpec| x.name == name) {
                return Err(ContractError::new(join(&path, "name"), format!("joint {name:?} appears twice")));
            }
            let mode = match string(get(o, "mode", &path)?, &join(&path, "mode"))? {
                "position" => JointMode::Position,
                "velocity" => JointMode::Velocity,
                other => {
                    return Err(ContractError::new(
                        join(&path, "mode"),
                        format!("expected \"position\" or \"velocity\", got {other:?}"),
                    ))
                }
            };
            let spec = JointSpec {
                name,
                default_pos_rad: num_field(o, "default_pos", &path)?,
                mode,
                action_scale: num_field(o, "action_scale", &path)?,
                kp: num_field(o, "kp", &path)?,
                kd: num_field(o, "kd", &path)?,
            };
            for (key, v) in [("kp", spec.kp), ("kd", spec.kd)] {
                if v < 0.0 {
                    return Err(ContractError::new(join(&path, key), format!("expected a gain >= 0, got {v}")));
                }
            }
            joints.push(spec);
        }

        let action = object(get(root, "action", "")?, "action")?;
        let action_dim = count_field(action, "dim", "action")?;
        if action_dim != joints.len() {
            return Err(ContractError::new(
                "action.dim",
                format!("is {action_dim}, but `joints` lists {} joints (one action per joint)", joints.len()),
            ));
        }
        let action_clip = num_field(action, "clip", "action")?;
        if action_clip <= 0.0 {
            return Err(ContractError::new("action.clip", format!("expected a positive bound, got {action_clip}")));
        }

        let obs_v = array(get(root, "obs", "")?, "obs")?;
        if obs_v.is_empty() {
            return Err(ContractError::new("obs", "expected at least one observation term"));
        }
        let mut obs = Vec::with_capacity(obs_v.len());
        for (i, t) in obs_v.iter().enumerate() {
            obs.push(parse_term(t, &format!("obs[{i}]"), joints.len(), action_dim)?);
        }
        let total: usize = obs.iter().map(|t| t.dim * t.history).sum();
        if total > MAX_OBS {
            return Err(ContractError::new(
                "obs",
                format!("the observation has {total} values; locod records at most {MAX_OBS}"),
            ));
        }

        let recurrent_state = match root.get("recurrent") {
            None | Some(Value::Null) => None,
            Some(r) => {
                let r = object(r, "recurrent")?;
                let dims = array(get(r, "state", "recurrent")?, "recurrent.state")?;
                if dims.is_empty() {
                    return Err(ContractError::new("recurrent.state", "expected a non-empty shape"));
                }
                let mut shape = Vec::with_capacity(dims.len());
                for (k, d) in dims.iter().enumerate() {
                    shape.push(count(d, &format!("recurrent.state[{k}]"))? as i64);
                }
                Some(shape)
            }
        };

        let (latent_dim, planner) = match kind {
            ModelKind::Policy => (None, None),
            ModelKind::WorldModel => {
                let latent = count(get(root, "latent_dim", "")?, "latent_dim")?;
                let p = object(get(root, "planner", "")?, "planner")?;
                let planner = PlannerDefaults {
                    horizon: count_field(p, "horizon", "planner")?,
                    samples: count_field(p, "samples", "planner")?,
                    elites: count_field(p, "elites", "planner")?,
                    iterations: count_field(p, "iterations", "planner")?,
                    temperature: num_field(p, "temperature", "planner")?,
                    min_std: num_field(p, "min_std", "planner")?,
                    max_std: num_field(p, "max_std", "planner")?,
                    prior_samples: match p.get("prior_samples") {
                        None => 0,
                        Some(v) => v.as_u64().ok_or_else(|| {
                            ContractError::new("planner.prior_samples", format!("expected a whole number, got {v}"))
                        })? as usize,
                    },
                    gamma: num_field(p, "gamma", "planner")?,
                    centre: match p.get("centre") {
                        None => PlanCentre::LastPlan,
                        Some(v) => match v.as_str() {
                            Some("last_plan") => PlanCentre::LastPlan,
                            Some("prior") => PlanCentre::Prior,
                            _ => {
                                return Err(ContractError::new(
                                    "planner.centre",
                                    format!("expected \"last_plan\" or \"prior\", got {v}"),
                                ))
                            }
                        },
                    },
                };
                check_planner(&planner, "planner")?;
                (Some(latent), Some(planner))
            }
        };
        if kind == ModelKind::WorldModel && recurrent_state.is_some() {
            return Err(ContractError::new("recurrent", "only a policy has a recurrent form"));
        }

        Ok(Contract {
            kind,
            robot,
            control_hz,
            joints,
            obs,
            action_dim,
            action_clip: action_clip as f32,
            recurrent_state,
            latent_dim,
            planner,
        })
    }

    /// The observation dimension the terms add up to.
    pub fn obs_dim(&self) -> usize {
        self.obs.iter().map(|t| t.dim * t.history).sum()
    }

    pub(crate) fn needs_perception(&self) -> bool {
        self.obs.iter().any(|t| t.term.needs_perception())
    }

    /// Checks the contract against the configuration: kind, joints, rates, depth sensors.
    /// Returns warnings (a robot name mismatch); errors name the contract field.
    pub(crate) fn check_config(
        &self,
        config: &Config,
        expected: ModelKind,
        depth_sensors: &[String],
    ) -> R<Vec<String>> {
        let mut warnings = Vec::new();
        if self.kind != expected {
            return Err(ContractError::new(
                "kind",
                format!(
                    "the model is a {:?}, the configured controller needs a {:?}",
                    self.kind.as_str(),
                    expected.as_str()
                ),
            ));
        }
        if self.robot != config.robot.name {
            warnings.push(format!(
                "model contract: robot: the model was trained for {:?}, this configuration is {:?}",
                self.robot, config.robot.name
            ));
        }
        let policy_hz = config.rate.policy_hz as f64;
        if (self.control_hz - policy_hz).abs() > 1e-9 {
            return Err(ContractError::new(
                "control_hz",
                format!("the model was trained at {} Hz, [loop] policy_hz is {policy_hz}", self.control_hz),
            ));
        }
        for (i, j) in self.joints.iter().enumerate() {
            let Some(c) = config.joint_index(&j.name) else {
                let names: Vec<&str> = config.joints.iter().map(|j| j.name.as_str()).collect();
                return Err(ContractError::new(
                    format!("joints[{i}].name"),
                    format!("joint {:?} is not in the configuration; it has: {}", j.name, names.join(", ")),
                ));
            };
            let cj = &config.joints[c];
            let ranges = cj.ranges.unwrap_or_else(|| cj.motor.ranges());
            let n2 = cj.gear_ratio * cj.gear_ratio;
            for (key, gain, max) in [("kp", j.kp, ranges.kp_max), ("kd", j.kd, ranges.kd_max)] {
                if gain > max as f64 * n2 * (1.0 + 1e-9) {
                    return Err(ContractError::new(
                        format!("joints[{i}].{key}"),
                        format!(
                            "joint {:?}: {key} {gain} is beyond what its {} can be commanded (0..{max} at the motor, x{} gear)",
                            j.name, cj.motor, cj.gear_ratio
                        ),
                    ));
                }
            }
            if cj.mode != j.mode {
                return Err(ContractError::new(
                    format!("joints[{i}].mode"),
                    format!("joint {:?} is {:?} in the model but {:?} in the configuration", j.name, j.mode, cj.mode),
                ));
            }
        }
        for cj in &config.joints {
            if !self.joints.iter().any(|j| j.name == cj.name) {
                return Err(ContractError::new(
                    "joints",
                    format!("configured joint {:?} has no action in the model", cj.name),
                ));
            }
        }
        for (i, t) in self.obs.iter().enumerate() {
            let none = depth_sensors.is_empty();
            match &t.term {
                Term::HeightScan(_) if none => {
                    return Err(ContractError::new(
                        format!("obs[{i}].name"),
                        "height_scan needs an elevation map, but this configuration has no depth sensors, so \
                         nothing would produce one",
                    ))
                }
                Term::Depth(d) => {
                    for (k, s) in d.sensors.iter().enumerate() {
                        if !depth_sensors.contains(s) {
                            return Err(ContractError::new(
                                format!("obs[{i}].sensors[{k}]"),
                                if none {
                                    format!("depth sensor {s:?}: this configuration has no depth sensors")
                                } else {
                                    format!(
                                        "depth sensor {s:?} is not configured; configured: {}",
                                        depth_sensors.join(", ")
                                    )
                                },
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(warnings)
    }
}

/// Checks planner settings (from the contract, or after the configuration's overrides).
pub(crate) fn check_planner(p: &PlannerDefaults, path: &str) -> R<()> {
    let at = |k| join(path, k);
    if p.elites > p.samples {
        return Err(ContractError::new(at("elites"), format!("{} elites of {} samples", p.elites, p.samples)));
    }
    if p.prior_samples >= p.samples {
        return Err(ContractError::new(
            at("prior_samples"),
            format!("{} prior samples leave none of {} samples to sample", p.prior_samples, p.samples),
        ));
    }
    if p.temperature <= 0.0 {
        return Err(ContractError::new(at("temperature"), format!("expected > 0, got {}", p.temperature)));
    }
    if !(p.min_std > 0.0 && p.min_std <= p.max_std) {
        return Err(ContractError::new(
            at("min_std"),
            format!("expected 0 < min_std <= max_std, got {} and {}", p.min_std, p.max_std),
        ));
    }
    if p.centre == PlanCentre::Prior && p.prior_samples == 0 {
        return Err(ContractError::new(at("centre"), "centring on the prior needs prior_samples >= 1"));
    }
    if !(p.gamma > 0.0 && p.gamma <= 1.0) {
        return Err(ContractError::new(at("gamma"), format!("expected 0 < gamma <= 1, got {}", p.gamma)));
    }
    Ok(())
}

fn parse_term(v: &Value, path: &str, joints: usize, action_dim: usize) -> R<ObsTerm> {
    let o = object(v, path)?;
    let name = string(get(o, "name", path)?, &join(path, "name"))?.to_string();
    let common = ["name", "scale", "clip", "history"];
    let (term, dim, params): (Term, usize, &[&str]) = match name.as_str() {
        "base_ang_vel" => (Term::BaseAngVel, 3, &[]),
        "projected_gravity" => (Term::ProjectedGravity, 3, &[]),
        "command" => (Term::Command, 3, &[]),
        "joint_pos" => (Term::JointPos, joints, &[]),
        "joint_vel" => (Term::JointVel, joints, &[]),
        "last_action" => (Term::LastAction, action_dim, &[]),
        "height_scan" => {
            let center_v = array(get(o, "center", path)?, &join(path, "center"))?;
            if center_v.len() != 2 {
                return Err(ContractError::new(join(path, "center"), "expected [x, y] in metres"));
            }
            let h = HeightScan {
                rows: count_field(o, "rows", path)?,
                cols: count_field(o, "cols", path)?,
                resolution_m: num_field(o, "resolution", path)? as f32,
                center_m: [
                    number(&center_v[0], &format!("{path}.center[0]"))? as f32,
                    number(&center_v[1], &format!("{path}.center[1]"))? as f32,
                ],
                offset_m: num_field(o, "offset", path)? as f32,
                fill: num_field(o, "fill", path)? as f32,
            };
            if h.resolution_m <= 0.0 {
                return Err(ContractError::new(join(path, "resolution"), "expected a positive cell size in metres"));
            }
            let dim = h.rows * h.cols;
            (Term::HeightScan(h), dim, &["rows", "cols", "resolution", "center", "offset", "fill"])
        }
        "depth" => {
            let sensors_v = array(get(o, "sensors", path)?, &join(path, "sensors"))?;
            if sensors_v.is_empty() {
                return Err(ContractError::new(join(path, "sensors"), "expected at least one sensor name"));
            }
            let mut sensors = Vec::with_capacity(sensors_v.len());
            for (k, s) in sensors_v.iter().enumerate() {
                sensors.push(string(s, &format!("{path}.sensors[{k}]"))?.to_string());
            }
            let zones = count_field(o, "zones", path)?;
            if zones > crate::types::terrain::MAX_ZONES {
                return Err(ContractError::new(
                    join(path, "zones"),
                    format!("expected at most {} zones per sensor", crate::types::terrain::MAX_ZONES),
                ));
            }
            let max_range_m = num_field(o, "max_range", path)? as f32;
            if max_range_m <= 0.0 {
                return Err(ContractError::new(join(path, "max_range"), "expected a positive range in metres"));
            }
            let dim = sensors.len() * zones;
            (Term::Depth(DepthTerm { sensors, zones, max_range_m }), dim, &["sensors", "zones", "max_range"])
        }
        other => {
            return Err(ContractError::new(
                join(path, "name"),
                format!("unknown observation term {other:?}; contract {CONTRACT_VERSION} knows: {KNOWN_TERMS}"),
            ))
        }
    };
    for key in o.keys() {
        if !common.contains(&key.as_str()) && !params.contains(&key.as_str()) {
            return Err(ContractError::new(join(path, key), format!("not a parameter of the {name} term")));
        }
    }
    let scale = match get(o, "scale", path)? {
        Value::Array(list) => {
            if list.len() != dim {
                return Err(ContractError::new(
                    join(path, "scale"),
                    format!("a list of {} scales for a term of dimension {dim}", list.len()),
                ));
            }
            let mut s = Vec::with_capacity(dim);
            for (k, x) in list.iter().enumerate() {
                s.push(number(x, &format!("{path}.scale[{k}]"))? as f32);
            }
            s
        }
        x => vec![number(x, &join(path, "scale"))? as f32; dim],
    };
    let clip = match o.get("clip") {
        None | Some(Value::Null) => None,
        Some(c) => {
            let c = array(c, &join(path, "clip"))?;
            let bad = || ContractError::new(join(path, "clip"), "expected [lo, hi] with lo < hi");
            if c.len() != 2 {
                return Err(bad());
            }
            let (lo, hi) = (number(&c[0], &join(path, "clip"))?, number(&c[1], &join(path, "clip"))?);
            if lo >= hi {
                return Err(bad());
            }
            Some((lo as f32, hi as f32))
        }
    };
    let history = match o.get("history") {
        None => 1,
        Some(h) => count(h, &join(path, "history"))?,
    };
    Ok(ObsTerm { name, term, dim, scale, clip, history })
}

#[cfg(test)]
pub(crate) mod tests;
