//! The finetuning dataset: windows of consecutive policy steps from transition logs, each
//! `horizon + 1` observations as the model received them and the `horizon` actions between them,
//! split into training and validation by episode.
//!
//! A window never crosses a step that does not pair with the next (`log::export::policy_steps`:
//! a fallback, a mode change, a missing record or a skipped policy step). Several directories
//! (logs from several robots) are one dataset.
//!
//! Not for: training (`finetune`) or writing datasets (`log::export`).

use super::FinetuneError;
use crate::log::export::policy_steps;
use crate::log::read::{self, LogFile};
use crate::types::provenance::sha256_file;
use std::path::{Path, PathBuf};

/// One episode's policy steps: observations and actions, and whether each step pairs with the
/// next.
struct Episode {
    obs: Vec<Vec<f32>>,
    act: Vec<Vec<f32>>,
    pairs: Vec<bool>,
}

/// Windows of `horizon` transitions, flattened row-major.
#[derive(Default)]
pub struct Windows {
    pub count: usize,
    /// `[count, horizon + 1, obs_dim]`.
    pub obs: Vec<f32>,
    /// `[count, horizon, act_dim]`.
    pub act: Vec<f32>,
}

impl Windows {
    fn push(&mut self, e: &Episode, start: usize, horizon: usize) {
        for o in &e.obs[start..=start + horizon] {
            self.obs.extend_from_slice(o);
        }
        for a in &e.act[start..start + horizon] {
            self.act.extend_from_slice(a);
        }
        self.count += 1;
    }
}

/// The dataset: what `--data` held and the windows cut from it.
pub struct Dataset {
    pub logs: usize,
    pub episodes: usize,
    pub steps: usize,
    /// Transitions whose next step followed cleanly.
    pub valid_transitions: usize,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub train: Windows,
    pub validation: Windows,
    /// Episodes held out for validation.
    pub validation_episodes: usize,
    /// SHA-256 over the sorted log files' names and hashes: which data a model was finetuned on.
    pub sha256: String,
    /// The model contracts the logs were recorded with (`model.controller.contract`), distinct.
    pub recorded_contracts: Vec<String>,
}

fn episode(f: &LogFile) -> Episode {
    let period = f.policy_hz().filter(|&hz| hz > 0).map(|hz| 1_000_000_000 / u64::from(hz));
    let steps = policy_steps(&f.ticks, period);
    let mut e = Episode { obs: Vec::new(), act: Vec::new(), pairs: Vec::new() };
    for (i, pairs) in steps {
        let t = &f.ticks[i];
        e.obs.push(t.policy_obs.clone());
        e.act.push(t.policy_action.clone());
        e.pairs.push(pairs);
    }
    e
}

/// Reads every closed log under `dirs` and cuts windows of `horizon` transitions; every fifth
/// episode (the 5th, 10th, ... in file order) is held out for validation, or the last fifth of
/// the windows when there are fewer than two episodes with windows.
pub fn load(dirs: &[PathBuf], horizon: usize) -> Result<Dataset, FinetuneError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for d in dirs {
        files.extend(read::log_files(d).map_err(FinetuneError::Read)?);
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(FinetuneError::NoData("no closed .mcap logs in the --data directories".into()));
    }
    let mut hashes = Vec::new();
    let mut episodes = Vec::new();
    let mut recorded_contracts: Vec<String> = Vec::new();
    for p in &files {
        let f = read::read_file(p).map_err(FinetuneError::Read)?;
        let hash = sha256_file(p).map_err(|e| FinetuneError::Io(p.clone(), e))?;
        hashes.push(format!("{} {hash}", name(p)));
        if let Some(c) = f.metadata.get("model.controller.contract") {
            if !recorded_contracts.contains(c) {
                recorded_contracts.push(c.clone());
            }
        }
        let e = episode(&f);
        if !e.obs.is_empty() {
            episodes.push((p.clone(), e));
        }
    }
    let steps: usize = episodes.iter().map(|(_, e)| e.obs.len()).sum();
    let valid_transitions = episodes.iter().map(|(_, e)| e.pairs.iter().filter(|&&v| v).count()).sum();
    let (obs_dim, act_dim) = match episodes.first() {
        Some((_, e)) => (e.obs[0].len(), e.act[0].len()),
        None => return Err(FinetuneError::NoData("the logs hold no policy steps: no learned controller ran".into())),
    };
    for (p, e) in &episodes {
        if let Some(o) = e.obs.iter().find(|o| o.len() != obs_dim) {
            return Err(FinetuneError::NoData(format!(
                "{}: an observation of {} values, the first log's have {obs_dim}: logs of different models",
                p.display(),
                o.len()
            )));
        }
        if e.act.iter().any(|a| a.len() != act_dim) {
            return Err(FinetuneError::NoData(format!("{}: actions of another size than {act_dim}", p.display())));
        }
    }
    // Windows per episode: starts whose `horizon` transitions all pair.
    let per_episode: Vec<Vec<usize>> = episodes
        .iter()
        .map(|(_, e)| {
            (0..e.obs.len().saturating_sub(horizon)).filter(|&s| e.pairs[s..s + horizon].iter().all(|&v| v)).collect()
        })
        .collect();
    let with_windows: Vec<usize> = (0..episodes.len()).filter(|&i| !per_episode[i].is_empty()).collect();
    if with_windows.is_empty() {
        return Err(FinetuneError::NoData(format!(
            "{steps} policy steps, {valid_transitions} valid transitions, but no run of {horizon} consecutive ones (--horizon)"
        )));
    }
    let (mut train, mut validation) = (Windows::default(), Windows::default());
    let mut validation_episodes = 0;
    if with_windows.len() >= 2 {
        for (k, &i) in with_windows.iter().enumerate() {
            let held_out = k % 5 == 4 || (with_windows.len() < 5 && k + 1 == with_windows.len());
            validation_episodes += usize::from(held_out);
            let into = if held_out { &mut validation } else { &mut train };
            for &s in &per_episode[i] {
                into.push(&episodes[i].1, s, horizon);
            }
        }
    } else {
        let i = with_windows[0];
        let starts = &per_episode[i];
        let cut = starts.len() - (starts.len() / 5).max(1).min(starts.len() - 1);
        for (k, &s) in starts.iter().enumerate() {
            let into = if k < cut { &mut train } else { &mut validation };
            into.push(&episodes[i].1, s, horizon);
        }
    }
    if train.count == 0 || validation.count == 0 {
        return Err(FinetuneError::NoData(format!(
            "{} windows of {horizon} transitions: too few to hold some out for validation",
            train.count + validation.count
        )));
    }
    Ok(Dataset {
        logs: files.len(),
        episodes: episodes.len(),
        steps,
        valid_transitions,
        obs_dim,
        act_dim,
        train,
        validation,
        validation_episodes,
        sha256: crate::types::provenance::sha256_hex(hashes.join("\n").as_bytes()),
        recorded_contracts,
    })
}

fn name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}
