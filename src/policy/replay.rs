//! The core of `locod replay`: re-run logged observations through a model and report the largest
//! difference from the logged actions, so a user can show that the deployed model reproduces what
//! it did in training or in the field. The log reader (MCAP) feeds it an iterator of steps.
//!
//! Compares student policies (plain and recurrent; the recurrent state is zeroed at every step
//! marked `reset`, as the runner does on every mode change). A planner's action depends on its
//! time budget and warm start as well as the observation, so world models are refused.
//!
//! Not for: reading log files.

use super::contract::ModelKind;
use super::student::Student;
use super::Policy;
use crate::config::Config;
use crate::types::MAX_JOINTS;
use serde::Serialize;
use std::path::Path;

/// One logged policy tick: the observation the model saw and the action it produced (after
/// clipping, before scaling: `PolicyAction::obs` and `PolicyAction::action`).
#[derive(Clone, Copy, Debug)]
pub struct ReplayStep<'a> {
    pub obs: &'a [f32],
    pub action: &'a [f32],
    /// A mode change happened before this step (recurrent state and history start afresh).
    pub reset: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    pub steps: usize,
    /// Largest |replayed - logged| over all steps and joints.
    pub max_abs_diff: f32,
    /// Where it happened: step index, action index (contract joint order), and both values.
    pub at_step: usize,
    pub at_action: usize,
    pub logged: f32,
    pub replayed: f32,
}

/// Re-runs `steps` through `student`; the first step starts from a reset.
pub(crate) fn compare<'a>(
    student: &mut Student,
    steps: impl IntoIterator<Item = ReplayStep<'a>>,
) -> Result<ReplayReport, String> {
    let mut report = ReplayReport::default();
    let mut action = [0.0f32; MAX_JOINTS];
    let a = student.action_dim();
    let o = student.obs_dim();
    student.reset();
    for (i, step) in steps.into_iter().enumerate() {
        if step.obs.len() != o {
            return Err(format!("step {i}: the log has {} observation values, the model takes {o}", step.obs.len()));
        }
        if step.action.len() != a {
            return Err(format!("step {i}: the log has {} action values, the model gives {a}", step.action.len()));
        }
        if step.reset && i > 0 {
            student.reset();
        }
        student.action_for(step.obs, &mut action[..a]).map_err(|e| format!("step {i}: {e}"))?;
        for (j, (&r, &l)) in action[..a].iter().zip(step.action).enumerate() {
            let d = (r - l).abs();
            // A NaN on either side is the largest difference there is.
            if d > report.max_abs_diff || (d.is_nan() && !report.max_abs_diff.is_nan()) {
                report.max_abs_diff = if d.is_nan() { f32::INFINITY } else { d };
                (report.at_step, report.at_action, report.logged, report.replayed) = (i, j, l, r);
            }
        }
        report.steps = i + 1;
    }
    Ok(report)
}

/// Opens the student model at `path` for `config` and compares `steps` (see `compare`).
pub fn replay<'a>(
    path: &Path,
    config: &Config,
    steps: impl IntoIterator<Item = ReplayStep<'a>>,
) -> Result<ReplayReport, String> {
    let device = super::torch::parse_device(&config.controller.device)?;
    let opened =
        super::load::open(path, config, None, &config.depth_sensor_names(), device).map_err(|e| e.to_string())?;
    if opened.contract.kind != ModelKind::Policy {
        return Err(format!(
            "{}: replay compares student policies; a world model's plan depends on its time budget and warm start",
            path.display()
        ));
    }
    let mut student = Student::new(opened, config)?;
    compare(&mut student, steps)
}
