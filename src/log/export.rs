//! `locod export`: logs into a training dataset of transitions.
//!
//! Two layouts. `lerobot`: the LeRobot v3 layout (`data/chunk-000/file-000.parquet`,
//! `meta/info.json` with features and fps, `meta/episodes/chunk-000/file-000.parquet`,
//! `meta/tasks.parquet`, `meta/stats.json`). `numpy`: one `.npy` per column and `meta.json`.
//! Two rates. `control`: a frame per tick (the robot's state, the commands written). `policy`: a
//! frame per policy step (the observation as the model received it, the action it returned
//! before scaling, the plan's value and compute time), what a world model is finetuned on.
//! Every frame carries `next.observation.state` and `next.valid`: a frame pairs with the next
//! one only when both are in the same episode (file), the next tick follows without a skipped
//! cycle or a dropped record, and the mode is unchanged; at the policy rate also only when the
//! action was applied throughout (no fallback) and no policy step was skipped. `info.json` carries
//! each source log's provenance. `models/locod_dataset.py` loads both layouts.
//!
//! Not for: reading MCAP (`read`) or training.

use super::read::{self, LogFile, ReadError};
use super::schema::Tick;
use super::{LEVEL_NAMES, MODE_NAMES, MODE_WALK};
use crate::control::record::flags;
use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::json;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// LeRobot v3: parquet data files and meta/ (info.json, episodes, tasks, stats).
    Lerobot,
    /// One .npy file per column, and meta.json.
    Numpy,
}

#[derive(Debug)]
pub enum ExportError {
    Read(ReadError),
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Parquet {
        path: PathBuf,
        error: String,
    },
    /// The logs do not fit one dataset (different robots, joints or rates).
    Mismatch {
        path: PathBuf,
        what: String,
    },
    NoFrames,
    /// A policy-rate export of logs in which no policy ran.
    NoPolicySteps,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Read(e) => e.fmt(f),
            ExportError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ExportError::Parquet { path, error } => write!(f, "{}: {error}", path.display()),
            ExportError::Mismatch { path, what } => write!(f, "{}: {what} differs from the first log", path.display()),
            ExportError::NoFrames => f.write_str("no frames to export (empty logs, or none in Walk with --walk-only)"),
            ExportError::NoPolicySteps => {
                f.write_str("no policy steps to export: no learned controller ran in these logs (use --rate control)")
            }
        }
    }
}

impl std::error::Error for ExportError {}

impl From<ReadError> for ExportError {
    fn from(e: ReadError) -> Self {
        ExportError::Read(e)
    }
}

/// Which frames a dataset holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rate {
    /// One frame per control tick: the robot's state and the commands written to the motors.
    Control,
    /// One frame per policy step: the observation exactly as the model received it and the action
    /// it returned before scaling, what a policy or a world model is trained on.
    Policy,
}

impl Rate {
    /// What a frame is, for people.
    pub fn frame_name(self) -> &'static str {
        match self {
            Rate::Control => "frames",
            Rate::Policy => "policy steps",
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ExportSummary {
    pub episodes: usize,
    pub frames: usize,
    pub valid_pairs: usize,
    pub fps: u32,
    pub out: PathBuf,
}

/// Whether tick `b` is the transition target of tick `a` (both of one episode).
pub(crate) fn pairs(a: &Tick, b: &Tick) -> bool {
    b.tick == a.tick + 1 && b.skipped_cycles == 0 && !b.has(flags::RECORDS_DROPPED) && a.mode == b.mode
}

/// The policy steps among `ticks`: each step's first record (where its action first appears) and
/// whether the next step is its transition target (`steps_pair`).
pub fn policy_steps(ticks: &[Tick], period_ns: Option<u64>) -> Vec<(usize, bool)> {
    let steps: Vec<usize> = (0..ticks.len())
        .filter(|&i| ticks[i].policy_t_ns != 0 && (i == 0 || ticks[i - 1].policy_t_ns != ticks[i].policy_t_ns))
        .collect();
    let next = steps.iter().skip(1).map(Some).chain([None]);
    steps.iter().zip(next).map(|(&i, j)| (i, j.is_some_and(|&j| steps_pair(&ticks[i..=j], period_ns)))).collect()
}

/// Whether the step whose first record is `span[0]` pairs with the step whose first record ends
/// `span`: its action was applied on every tick in between (Walk, the loop's level is the action's:
/// no fallback took over), no tick or record is missing, the mode did not change, and no policy
/// step was skipped (the steps are at most one and a half policy periods apart).
pub(crate) fn steps_pair(span: &[Tick], period_ns: Option<u64>) -> bool {
    let (Some(a), Some(b)) = (span.first(), span.last()) else { return false };
    let applied = span[..span.len() - 1]
        .iter()
        .all(|t| t.mode == MODE_WALK && t.level == t.policy_level && t.has(flags::POLICY_FRESH));
    let on_time = period_ns.is_none_or(|p| b.policy_t_ns.saturating_sub(a.policy_t_ns) <= p + p / 2);
    applied && on_time && span.len() > 1 && span.windows(2).all(|w| pairs(&w[0], &w[1]))
}

/// How a tick gives a feature's values (appended to the column).
type Getter = Box<dyn Fn(&Tick, &mut Vec<f32>)>;

/// One float feature: its name, width, element names and how a tick gives its values.
struct Feature {
    name: &'static str,
    width: usize,
    names: Option<Vec<String>>,
    /// One number per frame, stored as a plain column (not a list of one).
    scalar: bool,
    get: Getter,
}

impl Feature {
    fn new(
        name: &'static str,
        width: usize,
        names: Option<Vec<String>>,
        get: impl Fn(&Tick, &mut Vec<f32>) + 'static,
    ) -> Self {
        Self { name, width, names, scalar: false, get: Box::new(get) }
    }

    fn scalar(name: &'static str, get: impl Fn(&Tick) -> f32 + 'static) -> Self {
        Self { name, width: 1, names: None, scalar: true, get: Box::new(move |t, out| out.push(get(t))) }
    }
}

/// A dataset column's values.
enum Values {
    /// `width` floats per frame, with element names.
    F32(usize, Vec<f32>, Option<Vec<String>>),
    /// One float per frame.
    Scalar(Vec<f32>),
    /// An integer per frame, and what its values mean (`null` when they are plain numbers).
    I64(Vec<i64>, serde_json::Value),
    Bool(Vec<bool>),
}

/// A dataset before it is written: its columns (frames in order) and episodes.
struct Dataset {
    columns: Vec<(&'static str, Values)>,
    /// (episode index, first frame, end frame).
    episodes: Vec<(i64, usize, usize)>,
    fps: u32,
    rate: Rate,
}

impl Dataset {
    fn len(&self) -> usize {
        self.episodes.last().map_or(0, |e| e.2)
    }

    fn column(&self, name: &str) -> Option<&Values> {
        self.columns.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn valid_pairs(&self) -> usize {
        match self.column("next.valid") {
            Some(Values::Bool(v)) => v.iter().filter(|&&b| b).count(),
            _ => 0,
        }
    }
}

struct Dims {
    joints: Vec<String>,
    state: usize,
    policy_obs: usize,
    policy_action: usize,
}

fn state_of(t: &Tick, out: &mut Vec<f32>) {
    for v in [&t.joint_q_rad, &t.joint_qd_radps, &t.joint_tau_nm] {
        out.extend(v.iter().map(|&x| x as f32));
    }
    out.extend(t.est_quat_wxyz.iter().map(|&x| x as f32));
    out.extend(t.est_ang_vel_body_radps.iter().map(|&x| x as f32));
    out.extend(t.est_projected_gravity_body.iter().map(|&x| x as f32));
}

fn padded(v: &[f32], n: usize, out: &mut Vec<f32>) {
    out.extend(v.iter().take(n));
    out.extend(std::iter::repeat_n(0.0, n.saturating_sub(v.len())));
}

impl Dims {
    fn state_names(&self) -> Vec<String> {
        let mut n = Vec::new();
        for what in ["q_rad", "qd_radps", "tau_nm"] {
            n.extend(self.joints.iter().map(|j| format!("{j}.{what}")));
        }
        n.extend(["quat_w", "quat_x", "quat_y", "quat_z"].map(String::from));
        n.extend(["ang_vel_x_radps", "ang_vel_y_radps", "ang_vel_z_radps"].map(String::from));
        n.extend(["gravity_x", "gravity_y", "gravity_z"].map(String::from));
        n
    }
    fn action_names(&self) -> Vec<String> {
        let mut n = Vec::new();
        for what in ["q_rad", "qd_radps", "kp", "kd", "tau_ff_nm"] {
            n.extend(self.joints.iter().map(|j| format!("{j}.{what}")));
        }
        n
    }

    /// The float features of a frame at `rate`; the first is the state `next.observation.state`
    /// repeats for the transition target.
    fn features(&self, rate: Rate) -> Vec<Feature> {
        let command = Some(["vx_mps", "vy_mps", "yaw_radps"].map(String::from).to_vec());
        let command = Feature::new("observation.command", 3, command, |t, out| {
            out.extend(t.command_vel.iter().map(|&x| x as f32))
        });
        let (obs, act) = (self.policy_obs, self.policy_action);
        match rate {
            Rate::Control => {
                let mut v = vec![
                    Feature::new("observation.state", self.state, Some(self.state_names()), state_of),
                    command,
                    Feature::new("action", 5 * self.joints.len(), Some(self.action_names()), |t, out| {
                        for v in [&t.cmd_q_rad, &t.cmd_qd_radps, &t.cmd_kp, &t.cmd_kd, &t.cmd_tau_ff_nm] {
                            out.extend(v.iter().map(|&x| x as f32));
                        }
                    }),
                ];
                if obs > 0 {
                    v.push(Feature::new("observation.policy", obs, None, move |t, out| {
                        padded(&t.policy_obs, obs, out)
                    }));
                }
                if act > 0 {
                    v.push(Feature::new("action.policy", act, None, move |t, out| padded(&t.policy_action, act, out)));
                }
                v
            }
            Rate::Policy => vec![
                Feature::new("observation.state", obs, None, move |t, out| padded(&t.policy_obs, obs, out)),
                command,
                Feature::new("action", act, None, move |t, out| padded(&t.policy_action, act, out)),
                Feature::new("observation.robot_state", self.state, Some(self.state_names()), state_of),
                Feature::scalar("plan.value", |t| t.planner_best_return),
                Feature::scalar("plan.compute_us", |t| t.planner_compute_us),
            ],
        }
    }
}

/// The frames of one log at `rate`: the index of each frame's tick and whether the next frame is
/// its transition target.
fn frames(f: &LogFile, rate: Rate) -> Vec<(usize, bool)> {
    match rate {
        Rate::Control => {
            let t = &f.ticks;
            (0..t.len()).map(|i| (i, t.get(i + 1).is_some_and(|n| pairs(&t[i], n)))).collect()
        }
        Rate::Policy => {
            let period = f.policy_hz().filter(|&hz| hz > 0).map(|hz| 1_000_000_000 / u64::from(hz));
            policy_steps(&f.ticks, period)
        }
    }
}

fn build(files: &[LogFile], dims: &Dims, rate: Rate, fps: u32) -> Dataset {
    let features = dims.features(rate);
    let mut floats: Vec<Vec<f32>> = features.iter().map(|_| Vec::new()).collect();
    let mut next_state = Vec::new();
    let (mut valid, mut done, mut teleop, mut fault) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut mode, mut level, mut source, mut t_ns, mut iterations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut timestamp, mut frame_index, mut episode_index) = (Vec::new(), Vec::new(), Vec::new());
    let mut episodes = Vec::new();
    let mut index = 0usize;
    for f in files {
        let frames = frames(f, rate);
        let Some(&(first, _)) = frames.first() else { continue };
        let time = |t: &Tick| if rate == Rate::Policy { t.policy_t_ns } else { t.t_ns };
        let t0 = time(&f.ticks[first]);
        let e = episodes.len() as i64;
        for (k, &(i, pairs_next)) in frames.iter().enumerate() {
            let t = &f.ticks[i];
            for (feature, out) in features.iter().zip(floats.iter_mut()) {
                (feature.get)(t, out);
            }
            match frames.get(k + 1).filter(|_| pairs_next) {
                Some(&(n, _)) => (features[0].get)(&f.ticks[n], &mut next_state),
                None => next_state.extend(std::iter::repeat_n(0.0, features[0].width)),
            }
            valid.push(pairs_next);
            done.push(k + 1 == frames.len());
            teleop.push(t.has(flags::TELEOP));
            fault.push(t.has(flags::FAULT));
            mode.push(i64::from(t.mode));
            level.push(i64::from(if rate == Rate::Policy { t.policy_level } else { t.level }));
            source.push(i64::from(t.command_source));
            t_ns.push(time(t) as i64);
            iterations.push(i64::from(t.planner_iterations));
            timestamp.push((time(t).saturating_sub(t0) as f64 * 1e-9) as f32);
            frame_index.push(k as i64);
            episode_index.push(e);
        }
        episodes.push((e, index, index + frames.len()));
        index += frames.len();
    }
    let state = (features[0].width, features[0].names.clone());
    let mut columns: Vec<(&'static str, Values)> = Vec::new();
    for (feature, values) in features.into_iter().zip(floats) {
        let v = if feature.scalar { Values::Scalar(values) } else { Values::F32(feature.width, values, feature.names) };
        columns.push((feature.name, v));
        if columns.len() == 1 {
            columns.push((
                "next.observation.state",
                Values::F32(state.0, std::mem::take(&mut next_state), state.1.clone()),
            ));
        }
    }
    columns.push(("timestamp", Values::Scalar(timestamp)));
    let null = serde_json::Value::Null;
    columns.extend([
        ("mode", Values::I64(mode, json!(MODE_NAMES))),
        ("controller_level", Values::I64(level, json!(LEVEL_NAMES))),
        ("command_source", Values::I64(source, json!(["none", "teleop", "autonomy"]))),
        ("t_ns", Values::I64(t_ns, null.clone())),
    ]);
    if rate == Rate::Policy {
        columns.push(("plan.iterations", Values::I64(iterations, null.clone())));
    }
    columns.extend([
        ("frame_index", Values::I64(frame_index, null.clone())),
        ("episode_index", Values::I64(episode_index, null.clone())),
        ("index", Values::I64((0..index as i64).collect(), null.clone())),
        ("task_index", Values::I64(vec![0; index], null)),
        ("next.valid", Values::Bool(valid)),
        ("next.done", Values::Bool(done)),
        ("teleop", Values::Bool(teleop)),
        ("fault", Values::Bool(fault)),
    ]);
    Dataset { columns, episodes, fps, rate }
}

/// Reads the logs at `input` (a file or a directory of `.mcap`) and writes the dataset of `rate`
/// to `out`.
pub fn export(
    input: &Path,
    out: &Path,
    format: Format,
    rate: Rate,
    walk_only: bool,
) -> Result<ExportSummary, ExportError> {
    let mut files = Vec::new();
    for p in read::log_files(input)? {
        let f = read::read_file(&p)?;
        if f.ticks.is_empty() || (walk_only && f.ticks.iter().any(|t| t.mode != MODE_WALK)) {
            continue;
        }
        files.push(f);
    }
    let first = files.first().ok_or(ExportError::NoFrames)?;
    let joints = first.joint_names();
    let hz = |f: &LogFile| match rate {
        Rate::Control => f.control_hz(),
        Rate::Policy => f.policy_hz(),
    };
    let fps = hz(first).unwrap_or(0);
    let robot = first.metadata.get("robot").cloned().unwrap_or_default();
    for f in &files {
        let mismatch = |what: &str| ExportError::Mismatch { path: f.path.clone(), what: what.into() };
        if f.joint_names() != joints {
            return Err(mismatch("joint_names"));
        }
        if hz(f).unwrap_or(0) != fps {
            return Err(mismatch(if rate == Rate::Control { "control_hz" } else { "policy_hz" }));
        }
        if f.ticks.iter().any(|t| t.n_joints() != joints.len()) {
            return Err(mismatch("the number of joints in a tick"));
        }
    }
    let max = |g: fn(&Tick) -> usize| files.iter().flat_map(|f| f.ticks.iter()).map(g).max().unwrap_or(0);
    let n = joints.len();
    let dims = Dims {
        joints,
        state: 3 * n + 10,
        policy_obs: max(|t| t.policy_obs.len()),
        policy_action: max(|t| t.policy_action.len()),
    };
    if rate == Rate::Policy && (dims.policy_obs == 0 || dims.policy_action == 0) {
        return Err(ExportError::NoPolicySteps);
    }
    let data = build(&files, &dims, rate, fps);
    if data.len() == 0 {
        return Err(if rate == Rate::Policy { ExportError::NoPolicySteps } else { ExportError::NoFrames });
    }
    std::fs::create_dir_all(out).map_err(|error| ExportError::Io { path: out.into(), error })?;
    match format {
        Format::Lerobot => write_lerobot(out, &data, &robot, &files)?,
        Format::Numpy => write_numpy(out, &data, &robot)?,
    }
    Ok(ExportSummary {
        episodes: data.episodes.len(),
        frames: data.len(),
        valid_pairs: data.valid_pairs(),
        fps,
        out: out.into(),
    })
}

/// What each source log says of where it came from (software, configuration, model files).
fn provenance(files: &[LogFile]) -> serde_json::Value {
    let keys = ["software", "config_file", "config_sha256", "model_files"];
    let logs: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut m = serde_json::Map::new();
            m.insert("log".into(), json!(f.path.file_name().map(|n| n.to_string_lossy().into_owned())));
            for k in keys {
                if let Some(v) = f.metadata.get(k) {
                    m.insert(k.into(), json!(v));
                }
            }
            serde_json::Value::Object(m)
        })
        .collect();
    json!(logs)
}

/// Per-dimension min, max, mean, std over all frames.
fn stats(values: &[f32], width: usize) -> serde_json::Value {
    let rows = values.len() / width.max(1);
    let mut min = vec![f64::INFINITY; width];
    let mut max = vec![f64::NEG_INFINITY; width];
    let mut sum = vec![0.0f64; width];
    let mut sq = vec![0.0f64; width];
    for row in values.chunks_exact(width) {
        for (k, &x) in row.iter().enumerate() {
            let x = x as f64;
            min[k] = min[k].min(x);
            max[k] = max[k].max(x);
            sum[k] += x;
            sq[k] += x * x;
        }
    }
    let n = rows.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std: Vec<f64> = sq.iter().zip(&mean).map(|(q, m)| (q / n - m * m).max(0.0).sqrt()).collect();
    json!({ "min": min, "max": max, "mean": mean, "std": std, "count": [rows] })
}

struct Parquet {
    path: PathBuf,
    fields: Vec<Arc<Type>>,
}

enum Data<'a> {
    F32List(usize, &'a [f32]),
    F32(&'a [f32]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
    Str(&'a [String]),
}

impl Parquet {
    fn err(&self, e: impl fmt::Display) -> ExportError {
        ExportError::Parquet { path: self.path.clone(), error: e.to_string() }
    }

    fn field(&mut self, name: &str, data: &Data) -> Result<(), ExportError> {
        let prim = |n: &str, p: Physical, rep: Repetition, logical: Option<LogicalType>| {
            Type::primitive_type_builder(n, p).with_repetition(rep).with_logical_type(logical).build()
        };
        let list = |element: Type| {
            let list = Type::group_type_builder("list")
                .with_repetition(Repetition::REPEATED)
                .with_fields(vec![Arc::new(element)])
                .build()?;
            Type::group_type_builder(name)
                .with_repetition(Repetition::REQUIRED)
                .with_logical_type(Some(LogicalType::List))
                .with_fields(vec![Arc::new(list)])
                .build()
        };
        let t = match data {
            Data::F32List(..) => prim("element", Physical::FLOAT, Repetition::REQUIRED, None).and_then(list),
            Data::F32(_) => prim(name, Physical::FLOAT, Repetition::REQUIRED, None),
            Data::I64(_) => prim(name, Physical::INT64, Repetition::REQUIRED, None),
            Data::Bool(_) => prim(name, Physical::BOOLEAN, Repetition::REQUIRED, None),
            Data::Str(_) => prim(name, Physical::BYTE_ARRAY, Repetition::REQUIRED, Some(LogicalType::String)),
        }
        .map_err(|e| self.err(e))?;
        self.fields.push(Arc::new(t));
        Ok(())
    }

    /// Writes `columns` (all of the same number of rows) as one row group.
    fn write(path: &Path, columns: &[(&str, Data)]) -> Result<(), ExportError> {
        let mut p = Parquet { path: path.into(), fields: Vec::new() };
        for (name, data) in columns {
            p.field(name, data)?;
        }
        let schema = Type::group_type_builder("schema").with_fields(p.fields.clone()).build().map_err(|e| p.err(e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| ExportError::Io { path: dir.into(), error })?;
        }
        let file = std::fs::File::create(path).map_err(|error| ExportError::Io { path: path.into(), error })?;
        let props = Arc::new(WriterProperties::builder().build());
        let mut w = SerializedFileWriter::new(file, Arc::new(schema), props).map_err(|e| p.err(e))?;
        let mut rg = w.next_row_group().map_err(|e| p.err(e))?;
        for (_, data) in columns {
            let mut col = rg.next_column().map_err(|e| p.err(e))?.ok_or_else(|| p.err("schema and columns differ"))?;
            let r = match data {
                Data::F32List(width, v) => {
                    let (def, rep) = list_levels(v.len() / (*width).max(1), *width);
                    col.typed::<FloatType>().write_batch(v, Some(&def), Some(&rep))
                }
                Data::F32(v) => col.typed::<FloatType>().write_batch(v, None, None),
                Data::I64(v) => col.typed::<Int64Type>().write_batch(v, None, None),
                Data::Bool(v) => col.typed::<BoolType>().write_batch(v, None, None),
                Data::Str(v) => {
                    let b: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&b, None, None)
                }
            };
            r.map_err(|e| p.err(e))?;
            col.close().map_err(|e| p.err(e))?;
        }
        rg.close().map_err(|e| p.err(e))?;
        w.close().map_err(|e| p.err(e))?;
        Ok(())
    }
}

/// Definition and repetition levels of `rows` lists of `width` elements (width > 0).
fn list_levels(rows: usize, width: usize) -> (Vec<i16>, Vec<i16>) {
    let def = vec![1i16; rows * width];
    let rep = (0..rows * width).map(|i| i16::from(i % width != 0)).collect();
    (def, rep)
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), ExportError> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text).map_err(|error| ExportError::Io { path: path.into(), error })
}

fn write_lerobot(out: &Path, d: &Dataset, robot: &str, files: &[LogFile]) -> Result<(), ExportError> {
    let columns: Vec<(&str, Data)> = d
        .columns
        .iter()
        .map(|(name, v)| {
            let data = match v {
                Values::F32(width, v, _) => Data::F32List(*width, v),
                Values::Scalar(v) => Data::F32(v),
                Values::I64(v, _) => Data::I64(v),
                Values::Bool(v) => Data::Bool(v),
            };
            (*name, data)
        })
        .collect();
    Parquet::write(&out.join("data/chunk-000/file-000.parquet"), &columns)?;

    let task = ["locomotion".to_string()];
    Parquet::write(&out.join("meta/tasks.parquet"), &[("task_index", Data::I64(&[0])), ("task", Data::Str(&task))])?;

    // One parquet per episode table would be LeRobot's chunking; one file holds them all here.
    let episodes = &d.episodes;
    let ep_index: Vec<i64> = episodes.iter().map(|e| e.0).collect();
    let lengths: Vec<i64> = episodes.iter().map(|e| (e.2 - e.1) as i64).collect();
    let from: Vec<i64> = episodes.iter().map(|e| e.1 as i64).collect();
    let to: Vec<i64> = episodes.iter().map(|e| e.2 as i64).collect();
    let zeros = vec![0i64; episodes.len()];
    let sources: Vec<String> = files
        .iter()
        .map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    let ep_path = out.join("meta/episodes/chunk-000/file-000.parquet");
    write_episodes(&ep_path, &ep_index, &lengths, &from, &to, &zeros, &sources)?;

    let mut features = serde_json::Map::new();
    let mut stats_json = serde_json::Map::new();
    for (name, v) in &d.columns {
        let feature = match v {
            Values::F32(width, v, names) => {
                stats_json.insert((*name).into(), stats(v, *width));
                json!({ "dtype": "float32", "shape": [width], "names": names })
            }
            Values::Scalar(v) => {
                stats_json.insert((*name).into(), stats(v, 1));
                json!({ "dtype": "float32", "shape": [1], "names": null })
            }
            Values::I64(_, names) => json!({ "dtype": "int64", "shape": [1], "names": names }),
            Values::Bool(_) => json!({ "dtype": "bool", "shape": [1], "names": null }),
        };
        features.insert((*name).into(), feature);
    }
    let pairing = match d.rate {
        Rate::Control => "next.observation.state is the next frame's state where next.valid; never across an episode, a mode change, a skipped cycle or a dropped record",
        Rate::Policy => "one frame per policy step: observation.state is the observation the model received, action the action it returned before scaling; next.observation.state is the next step's observation where next.valid: the action was applied on every tick in between (Walk, no fallback), and no tick, record or policy step is missing",
    };
    let info = json!({
        "codebase_version": "v3.0",
        "robot_type": robot,
        "total_episodes": episodes.len(),
        "total_frames": d.len(),
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": d.fps,
        "splits": { "train": format!("0:{}", episodes.len()) },
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": null,
        "features": features,
        "locod": {
            "rate": if d.rate == Rate::Policy { "policy" } else { "control" },
            "pairing": pairing,
            "source_logs": sources,
            "provenance": provenance(files),
        },
    });
    write_json(&out.join("meta/info.json"), &info)?;
    write_json(&out.join("meta/stats.json"), &serde_json::Value::Object(stats_json))
}

fn write_episodes(
    path: &Path,
    ep: &[i64],
    lengths: &[i64],
    from: &[i64],
    to: &[i64],
    zeros: &[i64],
    sources: &[String],
) -> Result<(), ExportError> {
    // The episode table names its task by index (the task text is in `meta/tasks.parquet`).
    Parquet::write(
        path,
        &[
            ("episode_index", Data::I64(ep)),
            ("length", Data::I64(lengths)),
            ("task_index", Data::I64(zeros)),
            ("data/chunk_index", Data::I64(zeros)),
            ("data/file_index", Data::I64(zeros)),
            ("dataset_from_index", Data::I64(from)),
            ("dataset_to_index", Data::I64(to)),
            ("source_log", Data::Str(sources)),
        ],
    )
}

/// Writes a little-endian `.npy` (format 1.0) of `shape`.
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> Result<(), ExportError> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + bytes.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    std::fs::write(path, out).map_err(|error| ExportError::Io { path: path.into(), error })
}

fn write_numpy(out: &Path, d: &Dataset, robot: &str) -> Result<(), ExportError> {
    let rows = d.len();
    let mut features = serde_json::Map::new();
    for (name, v) in &d.columns {
        let path = out.join(format!("{name}.npy"));
        let feature = match v {
            Values::F32(width, v, names) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                write_npy(&path, "<f4", &[rows, *width], &bytes)?;
                json!({ "dtype": "float32", "shape": [width], "names": names })
            }
            Values::Scalar(v) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                write_npy(&path, "<f4", &[rows], &bytes)?;
                json!({ "dtype": "float32", "shape": [1] })
            }
            Values::I64(v, _) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                write_npy(&path, "<i8", &[rows], &bytes)?;
                json!({ "dtype": "int64", "shape": [1] })
            }
            Values::Bool(v) => {
                let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
                write_npy(&path, "|b1", &[rows], &bytes)?;
                json!({ "dtype": "bool", "shape": [1] })
            }
        };
        if *name != "timestamp" {
            features.insert((*name).into(), feature);
        }
    }
    let meta = json!({
        "format": "locod-numpy-v1",
        "robot_type": robot,
        "fps": d.fps,
        "rate": if d.rate == Rate::Policy { "policy" } else { "control" },
        "total_frames": rows,
        "episodes": d.episodes.iter().map(|e| json!({ "episode_index": e.0, "from": e.1, "to": e.2 })).collect::<Vec<_>>(),
        "features": features,
    });
    write_json(&out.join("meta.json"), &meta)
}
