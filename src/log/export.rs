//! `locod export`: logs into a training dataset of transitions.
//!
//! Two layouts. `lerobot`: the LeRobot v3 layout (`data/chunk-000/file-000.parquet`,
//! `meta/info.json` with features and fps, `meta/episodes/chunk-000/file-000.parquet`,
//! `meta/tasks.parquet`, `meta/stats.json`). `numpy`: one `.npy` per column and `meta.json`.
//! Every frame carries `next.observation.state` and `next.valid`: a frame pairs with the next
//! one only when both are in the same episode (file), the next tick follows without a skipped
//! cycle or a dropped record, and the mode is unchanged. `models/locod_dataset.py` loads both.
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
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Read(e) => e.fmt(f),
            ExportError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ExportError::Parquet { path, error } => write!(f, "{}: {error}", path.display()),
            ExportError::Mismatch { path, what } => write!(f, "{}: {what} differs from the first log", path.display()),
            ExportError::NoFrames => f.write_str("no frames to export (empty logs, or none in Walk with --walk-only)"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<ReadError> for ExportError {
    fn from(e: ReadError) -> Self {
        ExportError::Read(e)
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

/// Whether frame `b` is the transition target of frame `a` (both of one episode).
pub fn pairs(a: &Tick, b: &Tick) -> bool {
    b.tick == a.tick + 1 && b.skipped_cycles == 0 && !b.has(flags::RECORDS_DROPPED) && a.mode == b.mode
}

/// The columns of the dataset, frame by frame.
#[derive(Default)]
struct Columns {
    state: Vec<f32>,
    next_state: Vec<f32>,
    command: Vec<f32>,
    action: Vec<f32>,
    policy_obs: Vec<f32>,
    policy_action: Vec<f32>,
    next_valid: Vec<bool>,
    next_done: Vec<bool>,
    teleop: Vec<bool>,
    fault: Vec<bool>,
    mode: Vec<i64>,
    level: Vec<i64>,
    source: Vec<i64>,
    t_ns: Vec<i64>,
    timestamp: Vec<f32>,
    frame_index: Vec<i64>,
    episode_index: Vec<i64>,
    index: Vec<i64>,
    task_index: Vec<i64>,
}

struct Dims {
    joints: Vec<String>,
    state: usize,
    action: usize,
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
}

fn build(files: &[LogFile], dims: &Dims) -> (Columns, Vec<(i64, usize, usize)>) {
    let mut c = Columns::default();
    let mut episodes = Vec::new();
    let mut index = 0i64;
    for (e, f) in files.iter().enumerate() {
        let start = index as usize;
        let t0 = f.ticks[0].t_ns;
        for (i, t) in f.ticks.iter().enumerate() {
            state_of(t, &mut c.state);
            let next = f.ticks.get(i + 1);
            let valid = next.is_some_and(|n| pairs(t, n));
            match next.filter(|_| valid) {
                Some(n) => state_of(n, &mut c.next_state),
                None => c.next_state.extend(std::iter::repeat_n(0.0, dims.state)),
            }
            c.next_valid.push(valid);
            c.next_done.push(next.is_none());
            c.command.extend(t.command_vel.iter().map(|&x| x as f32));
            for v in [&t.cmd_q_rad, &t.cmd_qd_radps, &t.cmd_kp, &t.cmd_kd, &t.cmd_tau_ff_nm] {
                c.action.extend(v.iter().map(|&x| x as f32));
            }
            padded(&t.policy_obs, dims.policy_obs, &mut c.policy_obs);
            padded(&t.policy_action, dims.policy_action, &mut c.policy_action);
            c.teleop.push(t.has(flags::TELEOP));
            c.fault.push(t.has(flags::FAULT));
            c.mode.push(t.mode.into());
            c.level.push(t.level.into());
            c.source.push(t.command_source.into());
            c.t_ns.push(t.t_ns as i64);
            c.timestamp.push(((t.t_ns - t0) as f64 * 1e-9) as f32);
            c.frame_index.push(i as i64);
            c.episode_index.push(e as i64);
            c.index.push(index);
            c.task_index.push(0);
            index += 1;
        }
        episodes.push((e as i64, start, index as usize));
    }
    (c, episodes)
}

/// Reads the logs at `input` (a file or a directory of `.mcap`) and writes the dataset to `out`.
pub fn export(input: &Path, out: &Path, format: Format, walk_only: bool) -> Result<ExportSummary, ExportError> {
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
    let fps = first.control_hz().unwrap_or(0);
    let robot = first.metadata.get("robot").cloned().unwrap_or_default();
    for f in &files {
        let mismatch = |what: &str| ExportError::Mismatch { path: f.path.clone(), what: what.into() };
        if f.joint_names() != joints {
            return Err(mismatch("joint_names"));
        }
        if f.control_hz().unwrap_or(0) != fps {
            return Err(mismatch("control_hz"));
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
        action: 5 * n,
        policy_obs: max(|t| t.policy_obs.len()),
        policy_action: max(|t| t.policy_action.len()),
    };
    let (cols, episodes) = build(&files, &dims);
    let frames = cols.index.len();
    let valid_pairs = cols.next_valid.iter().filter(|&&v| v).count();
    std::fs::create_dir_all(out).map_err(|error| ExportError::Io { path: out.into(), error })?;
    match format {
        Format::Lerobot => write_lerobot(out, &cols, &dims, &episodes, fps, &robot, &files)?,
        Format::Numpy => write_numpy(out, &cols, &dims, &episodes, fps, &robot)?,
    }
    Ok(ExportSummary { episodes: episodes.len(), frames, valid_pairs, fps, out: out.into() })
}

/// A float feature: name, width per frame, values, element names.
type FloatFeature<'a> = (&'static str, usize, &'a [f32], Option<Vec<String>>);

fn float_features<'a>(c: &'a Columns, d: &Dims) -> Vec<FloatFeature<'a>> {
    let mut v = vec![
        ("observation.state", d.state, c.state.as_slice(), Some(d.state_names())),
        (
            "observation.command",
            3,
            c.command.as_slice(),
            Some(["vx_mps", "vy_mps", "yaw_radps"].map(String::from).to_vec()),
        ),
        ("action", d.action, c.action.as_slice(), Some(d.action_names())),
        ("next.observation.state", d.state, c.next_state.as_slice(), Some(d.state_names())),
    ];
    if d.policy_obs > 0 {
        v.push(("observation.policy", d.policy_obs, c.policy_obs.as_slice(), None));
    }
    if d.policy_action > 0 {
        v.push(("action.policy", d.policy_action, c.policy_action.as_slice(), None));
    }
    v
}

fn int_features(c: &Columns) -> Vec<(&'static str, &[i64])> {
    vec![
        ("mode", &c.mode),
        ("controller_level", &c.level),
        ("command_source", &c.source),
        ("t_ns", &c.t_ns),
        ("frame_index", &c.frame_index),
        ("episode_index", &c.episode_index),
        ("index", &c.index),
        ("task_index", &c.task_index),
    ]
}

fn bool_features(c: &Columns) -> Vec<(&'static str, &[bool])> {
    vec![("next.valid", &c.next_valid), ("next.done", &c.next_done), ("teleop", &c.teleop), ("fault", &c.fault)]
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

fn write_lerobot(
    out: &Path,
    c: &Columns,
    d: &Dims,
    episodes: &[(i64, usize, usize)],
    fps: u32,
    robot: &str,
    files: &[LogFile],
) -> Result<(), ExportError> {
    let mut columns: Vec<(&str, Data)> = Vec::new();
    for (name, width, v, _) in float_features(c, d) {
        columns.push((name, Data::F32List(width, v)));
    }
    columns.push(("timestamp", Data::F32(&c.timestamp)));
    for (name, v) in int_features(c) {
        columns.push((name, Data::I64(v)));
    }
    for (name, v) in bool_features(c) {
        columns.push((name, Data::Bool(v)));
    }
    Parquet::write(&out.join("data/chunk-000/file-000.parquet"), &columns)?;

    let task = ["locomotion".to_string()];
    Parquet::write(&out.join("meta/tasks.parquet"), &[("task_index", Data::I64(&[0])), ("task", Data::Str(&task))])?;

    // One parquet per episode table would be LeRobot's chunking; one file holds them all here.
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
    for (name, width, v, names) in float_features(c, d) {
        features.insert(name.into(), json!({ "dtype": "float32", "shape": [width], "names": names }));
        stats_json.insert(name.into(), stats(v, width));
    }
    features.insert("timestamp".into(), json!({ "dtype": "float32", "shape": [1], "names": null }));
    stats_json.insert("timestamp".into(), stats(&c.timestamp, 1));
    for (name, _) in int_features(c) {
        let names = match name {
            "mode" => json!(MODE_NAMES),
            "controller_level" => json!(LEVEL_NAMES),
            "command_source" => json!(["none", "teleop", "autonomy"]),
            _ => json!(null),
        };
        features.insert(name.into(), json!({ "dtype": "int64", "shape": [1], "names": names }));
    }
    for (name, _) in bool_features(c) {
        features.insert(name.into(), json!({ "dtype": "bool", "shape": [1], "names": null }));
    }
    let frames = c.index.len();
    let info = json!({
        "codebase_version": "v3.0",
        "robot_type": robot,
        "total_episodes": episodes.len(),
        "total_frames": frames,
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": { "train": format!("0:{}", episodes.len()) },
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": null,
        "features": features,
        "locod": {
            "pairing": "next.observation.state is the next frame's state where next.valid; never across an episode, a mode change, a skipped cycle or a dropped record",
            "source_logs": sources,
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

fn write_numpy(
    out: &Path,
    c: &Columns,
    d: &Dims,
    episodes: &[(i64, usize, usize)],
    fps: u32,
    robot: &str,
) -> Result<(), ExportError> {
    let rows = c.index.len();
    let mut features = serde_json::Map::new();
    for (name, width, v, names) in float_features(c, d) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_npy(&out.join(format!("{name}.npy")), "<f4", &[rows, width], &bytes)?;
        features.insert(name.into(), json!({ "dtype": "float32", "shape": [width], "names": names }));
    }
    let bytes: Vec<u8> = c.timestamp.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy(&out.join("timestamp.npy"), "<f4", &[rows], &bytes)?;
    for (name, v) in int_features(c) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_npy(&out.join(format!("{name}.npy")), "<i8", &[rows], &bytes)?;
        features.insert(name.into(), json!({ "dtype": "int64", "shape": [1] }));
    }
    for (name, v) in bool_features(c) {
        let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
        write_npy(&out.join(format!("{name}.npy")), "|b1", &[rows], &bytes)?;
        features.insert(name.into(), json!({ "dtype": "bool", "shape": [1] }));
    }
    let meta = json!({
        "format": "locod-numpy-v1",
        "robot_type": robot,
        "fps": fps,
        "total_frames": rows,
        "episodes": episodes.iter().map(|e| json!({ "episode_index": e.0, "from": e.1, "to": e.2 })).collect::<Vec<_>>(),
        "features": features,
    });
    write_json(&out.join("meta.json"), &meta)
}
