//! The student controller: a distilled policy (contract kind "policy"), one forward per tick,
//! in its plain form (`forward(obs) -> action`) or its recurrent form (`forward(obs, state) ->
//! (action, state)`, the state zeroed on every mode change).
//!
//! Not for: planning (`mppi`) or limits (the control loop's limiter).

use super::action::ActionMap;
use super::load::{prepare_thread, Opened};
use super::obs::ObsBuilder;
use super::torch::{read_f32, Arg, HostBuf, InferenceMode, Module};
use super::{Policy, PolicyError};
use crate::config::Config;
use crate::control::messages::{ControllerLevel, PlannerStats, PolicyAction, Snapshot};
use crate::types::terrain::Perception;
use crate::types::MAX_JOINTS;
use tch::{Kind, Tensor};

/// Forward passes run before the controller is handed over, so that TorchScript's profiling
/// executor has specialised the graph for the run-time shapes before the first real tick.
pub(crate) const WARMUP_TICKS: usize = 20;

pub struct Student {
    name: String,
    module: Module,
    obs: ObsBuilder,
    actions: ActionMap,
    input: HostBuf,
    state_zero: Option<Tensor>,
    state: Option<Tensor>,
    raw: [f32; MAX_JOINTS],
    threads: u32,
    observes_terrain: bool,
}

impl Student {
    /// Builds the student from an opened model (kind "policy") and warms it up (with nothing
    /// perceived: `policy::build_from` has checked that a model reading the terrain will have it).
    pub fn new(opened: Opened, config: &Config) -> Result<Self, String> {
        let Opened { path, module, contract, .. } = opened;
        let obs = ObsBuilder::new(&contract, config, &config.depth_sensor_names())?;
        let actions = ActionMap::new(&contract, &config.joints)?;
        let device = module.device();
        let input = HostBuf::new(&[1, obs.dim() as i64], device).map_err(|e| e.to_string())?;
        let state_zero = contract.recurrent_state.as_ref().map(|s| Tensor::zeros(s.as_slice(), (Kind::Float, device)));
        let name = format!(
            "student{} {}",
            if state_zero.is_some() { " (recurrent)" } else { "" },
            path.file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned())
        );
        let mut s = Student {
            name,
            module,
            obs,
            actions,
            input,
            state: state_zero.as_ref().map(|t| t.shallow_clone()),
            state_zero,
            raw: [0.0; MAX_JOINTS],
            threads: config.controller.threads,
            observes_terrain: contract.needs_perception(),
        };
        s.warm_up()?;
        Ok(s)
    }

    fn warm_up(&mut self) -> Result<(), String> {
        let snapshot = Snapshot::default();
        let mut out = PolicyAction::default();
        for _ in 0..WARMUP_TICKS {
            self.act(&snapshot, None, &mut out).map_err(|e| format!("warm-up: {e}"))?;
        }
        self.reset();
        Ok(())
    }

    /// The action for a given observation, clipped and before scaling (what `PolicyAction::action`
    /// records), advancing the recurrent state: what `replay` compares.
    pub(crate) fn action_for(&mut self, obs: &[f32], action: &mut [f32]) -> Result<(), PolicyError> {
        prepare_thread(self.threads);
        let _inference = InferenceMode::enter();
        if obs.len() != self.obs.dim() || action.len() != self.actions.dim() {
            return Err(PolicyError("the observation or action has the wrong size for this model"));
        }
        self.input.as_mut_slice().copy_from_slice(obs);
        self.forward(action.len())?;
        self.actions.clip(&mut self.raw[..action.len()])?;
        action.copy_from_slice(&self.raw[..action.len()]);
        Ok(())
    }

    pub fn obs_dim(&self) -> usize {
        self.obs.dim()
    }

    pub fn action_dim(&self) -> usize {
        self.actions.dim()
    }

    /// Runs the model on `self.input` into `self.raw[..a]`.
    fn forward(&mut self, a: usize) -> Result<(), PolicyError> {
        self.input.upload().map_err(|_| PolicyError("cannot upload the observation"))?;
        let action = match self.state.take() {
            None => self
                .module
                .call(c"forward", &[Arg::T(self.input.tensor())])
                .map_err(|_| PolicyError("forward failed"))?,
            Some(state) => {
                let r = self.module.call2(c"forward", &[Arg::T(self.input.tensor()), Arg::T(&state)]);
                match r {
                    Ok((action, next)) => {
                        self.state = Some(next);
                        action
                    }
                    Err(_) => {
                        self.state = Some(state);
                        return Err(PolicyError("forward failed"));
                    }
                }
            }
        };
        read_f32(&action, &mut self.raw[..a]).map_err(|_| PolicyError("the model's action has the wrong size"))
    }

    /// The recurrent state (None for a plain policy), for tests and diagnostics.
    pub fn state(&self) -> Option<&Tensor> {
        self.state.as_ref()
    }
}

impl Policy for Student {
    fn name(&self) -> &str {
        &self.name
    }

    fn observes_terrain(&self) -> bool {
        self.observes_terrain
    }

    fn reset(&mut self) {
        self.obs.reset();
        self.state = self.state_zero.as_ref().map(|t| t.shallow_clone());
    }

    fn warm(&mut self) {
        prepare_thread(self.threads);
        let _inference = InferenceMode::enter();
        if self.input.upload().is_err() {
            return;
        }
        // The recurrent state is passed, and the next one dropped: nothing advances.
        let _ = match &self.state {
            None => self.module.call(c"forward", &[Arg::T(self.input.tensor())]).map(drop),
            Some(state) => self.module.call2(c"forward", &[Arg::T(self.input.tensor()), Arg::T(state)]).map(drop),
        };
    }

    fn act(
        &mut self,
        snapshot: &Snapshot,
        perception: Option<&Perception>,
        out: &mut PolicyAction,
    ) -> Result<ControllerLevel, PolicyError> {
        prepare_thread(self.threads);
        let _inference = InferenceMode::enter();
        let obs = self.obs.build(snapshot, perception);
        self.input.as_mut_slice().copy_from_slice(obs);
        let a = self.actions.dim();
        self.forward(a)?;
        super::emit(&self.actions, &mut self.obs, &mut self.raw[..a], out)?;
        out.planner = PlannerStats::default();
        Ok(ControllerLevel::Primary)
    }
}
