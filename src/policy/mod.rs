//! The policy thread: at the policy rate, turn the newest control snapshot into joint targets.
//!
//! A `Policy` is whatever computes those targets (a TorchScript student, an MPPI planner, or a
//! test double); this module owns its thread, its timing and its handoff to the control loop.
//! The control loop decides whether an action is fresh enough to use; a policy that fails or
//! overruns simply publishes nothing, and the loop's fallback chain takes over.
//!
//! Not for: CAN, modes or limits. A policy never sees a bus, and its targets are limited by the
//! control loop after it.

pub mod action;
pub mod contract;
pub mod libtorch;
pub mod load;
pub mod mppi;
pub mod obs;
pub mod reload;
pub mod replay;
pub(crate) mod rng;
pub mod student;
pub mod torch;
pub(crate) mod warm;

use crate::config::{Config, ControllerKind};
use crate::control::inputs::ActionWriter;
use crate::control::messages::{ControllerLevel, LevelCounts, Mode, PolicyAction, ShadowStep, Snapshot};
use crate::rt::clock::Clock;
use crate::rt::hist::Histogram;
use crate::rt::sched::Periodic;
use crate::rt::spsc::Producer;
use crate::rt::triple::Reader;
use crate::types::provenance::ModelProvenance;
use crate::types::terrain::Perception;
use contract::ModelKind;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a policy produced no action this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyError(pub &'static str);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

pub trait Policy: Send {
    fn name(&self) -> &str;

    /// Clears internal state (recurrent state, warm starts). Called on every mode change, and
    /// before a reloaded model's first step.
    fn reset(&mut self);

    /// Computes joint targets for `snapshot` (and `perception`, the newest perceived terrain, for
    /// height and depth terms; `None` reads as nothing perceived) into `out.targets` (and the
    /// observation, raw action and planner statistics into their fields); returns the level that
    /// produced them (`Primary`, or `Prior` when a planner fell back to its prior). `out` holds an
    /// older action: overwrite every field you use. `t_ns` and `level` are set by the runner.
    fn act(
        &mut self,
        snapshot: &Snapshot,
        perception: Option<&Perception>,
        out: &mut PolicyAction,
    ) -> Result<ControllerLevel, PolicyError>;
    /// Work for the next tick that needs no new data (a planner's random numbers), called after an
    /// action is published so that it stays off the observation-to-action path.
    fn prepare_next(&mut self) {}

    /// Runs the model once more on the last observation, changing nothing and publishing nothing,
    /// so that its code and weights are in the caches when the next tick starts. Called shortly
    /// before each deadline (`warm::WarmLead`). A single forward that has sat idle for a policy
    /// period was measured at ten times a warm one (the cost of the difference between `locod
    /// run`'s `policy compute` and a back-to-back benchmark); a planner whose tick takes
    /// milliseconds needs none.
    fn warm(&mut self) {}

    /// Whether the observation reads the perceived terrain (height scan, depth): then the control
    /// loop treats a stale depth sensor as a fault while walking (`ControlLoop::watch_depth`).
    fn observes_terrain(&self) -> bool {
        false
    }
}

/// The common end of a controller's tick: clips the raw action (`raw`, as long as the action),
/// maps it to joint targets, feeds it back as the next observation's `last_action`, and records
/// the observation and the clipped action in `out`.
pub(crate) fn emit(
    actions: &action::ActionMap,
    obs: &mut obs::ObsBuilder,
    raw: &mut [f32],
    out: &mut PolicyAction,
) -> Result<(), PolicyError> {
    actions.clip(raw)?;
    actions.apply(raw, &mut out.targets);
    obs.set_last_action(raw);
    let o = obs.current();
    out.obs[..o.len()].copy_from_slice(o);
    out.obs_len = o.len() as u16;
    out.action[..raw.len()].copy_from_slice(raw);
    out.action_len = raw.len() as u16;
    Ok(())
}

/// What the policy thread measured.
#[derive(Clone, Default)]
pub struct PolicyStats {
    /// From the thread's wake-up at a deadline to the action published.
    pub compute: Histogram,
    /// From the deadline itself to the action published: `compute` plus the thread's wake-up
    /// latency and any lateness of the warm-up before it (what the control loop waits).
    pub latency: Histogram,
    pub wake: Histogram,
    pub errors: u64,
    pub(crate) last_error: Option<PolicyError>,
    pub skipped: u64,
    /// Models switched in by a reload (`reload::Handoff`).
    pub swaps: u64,
    /// The shadow model's time per step (`[controller] shadow`; empty without one), and its steps
    /// the logger had no room for.
    pub shadow_compute: Histogram,
    pub shadow_dropped: u64,
    /// Actions published, by the level that produced them (an MPPI plan that missed its budget
    /// is the prior's).
    pub levels: LevelCounts,
}

/// One policy period's decision, the same on the policy thread (`run`) and in lock-step
/// (`sim::lockstep`): nothing before the control loop's first snapshot, a reset on every mode
/// change and after a model switch, then `act` on the newest perceived terrain, stamped with the
/// snapshot's time and the level that produced it.
#[derive(Default)]
pub struct Cycle {
    last_mode: Option<Mode>,
    /// What the sensors perceive (`None` without depth sensors): the one reader, owned here so
    /// that a reloaded model reads it as its predecessor did.
    perception: Option<Reader<Perception>>,
    /// Where a reloaded model arrives (`None`: the model never changes).
    handoff: Option<Arc<reload::Handoff>>,
    /// A shadow model run beside the live one (`[controller] shadow`).
    shadow: Option<Box<Shadow>>,
}

/// A shadow model, its own reset tracking, its scratch action and its tap to the logger.
pub struct Shadow {
    policy: Box<dyn Policy>,
    last_mode: Option<Mode>,
    scratch: PolicyAction,
    tap: Producer<ShadowStep>,
    /// Steps the logger had no room for.
    dropped: u64,
}

impl Shadow {
    pub fn new(policy: Box<dyn Policy>, tap: Producer<ShadowStep>) -> Box<Self> {
        Box::new(Self { policy, last_mode: None, scratch: PolicyAction::default(), tap, dropped: 0 })
    }
}

impl Cycle {
    pub fn new(perception: Option<Reader<Perception>>, handoff: Option<Arc<reload::Handoff>>) -> Self {
        Self { last_mode: None, perception, handoff, shadow: None }
    }

    /// Runs `shadow` beside the live model (`step_shadow`).
    pub fn with_shadow(mut self, shadow: Box<Shadow>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// The shadow model on `snapshot` and the perception the live model read for it (call after
    /// the live action is published, so that the shadow never delays it); its step goes to the
    /// logger. Returns whether a shadow ran.
    pub fn step_shadow(&mut self, snapshot: &Snapshot) -> bool {
        let Some(s) = self.shadow.as_deref_mut() else { return false };
        if snapshot.tick == 0 {
            return false;
        }
        if s.last_mode != Some(snapshot.mode) {
            s.policy.reset();
            s.last_mode = Some(snapshot.mode);
        }
        let perception = self.perception.as_ref().map(|r| r.get());
        let r = s.policy.act(snapshot, perception, &mut s.scratch);
        let mut step = ShadowStep { t_ns: snapshot.state.t_ns, ..ShadowStep::default() };
        match r {
            Ok(level) => {
                step.level = level;
                step.action_len = s.scratch.action_len;
                step.action = s.scratch.action;
                step.planner = s.scratch.planner;
            }
            Err(e) => step.failed = Some(e.0),
        }
        if s.tap.push(step).is_err() {
            s.dropped += 1;
        }
        s.policy.prepare_next();
        true
    }

    /// Shadow steps the logger had no room for.
    pub fn shadow_dropped(&self) -> u64 {
        self.shadow.as_ref().map_or(0, |s| s.dropped)
    }

    /// Switches to a model waiting in the handoff, if any (never waits); true if it did. The
    /// next `act` resets the new model (history, recurrent state, warm start).
    pub fn switch(&mut self, policy: &mut Box<dyn Policy>, t_ns: u64) -> bool {
        let switched = self.handoff.as_ref().is_some_and(|h| h.switch(policy, t_ns));
        if switched {
            self.last_mode = None;
        }
        switched
    }

    /// Fills `out` from `snapshot`; `None` before the loop has run, else whether the policy
    /// succeeded. Either way `out` is to be published: a failure as `failed`, which the loop
    /// reports. The caller calls `policy.prepare_next()` after publishing.
    pub fn act(
        &mut self,
        policy: &mut dyn Policy,
        snapshot: &Snapshot,
        out: &mut PolicyAction,
    ) -> Option<Result<(), PolicyError>> {
        if snapshot.tick == 0 {
            return None; // the control loop has not run yet
        }
        if self.last_mode != Some(snapshot.mode) {
            policy.reset();
            self.last_mode = Some(snapshot.mode);
        }
        let perception = self.perception.as_mut().map(|r| r.latest());
        let r = policy.act(snapshot, perception, out);
        out.t_ns = snapshot.state.t_ns;
        match r {
            Ok(level) => {
                out.level = level;
                out.failed = None;
            }
            // Published too, so that the loop's fallback names the failure (not a stale action).
            Err(e) => out.failed = Some(e.0),
        }
        Some(r.map(|_| ()))
    }
}

/// Runs `policy` every `period_ns` until `stop` is set, switching to a reloaded model between
/// two periods when `cycle`'s handoff has one.
pub fn run(
    mut policy: Box<dyn Policy>,
    mut cycle: Cycle,
    snapshots: &mut Reader<Snapshot>,
    actions: &mut ActionWriter,
    clock: &dyn Clock,
    period_ns: u64,
    stop: &AtomicBool,
) -> PolicyStats {
    let mut stats = PolicyStats::default();
    let mut sched = Periodic::new(clock.now_ns() + period_ns, period_ns);
    let mut lead = warm::WarmLead::new(period_ns);
    while !stop.load(Ordering::Relaxed) {
        let warm_at = sched.next_deadline().saturating_sub(lead.lead_ns());
        if clock.now_ns() < warm_at {
            clock.sleep_until(warm_at);
            let started = clock.now_ns();
            policy.warm();
            lead.observe(clock.now_ns().saturating_sub(started));
        }
        let release = sched.wait(clock);
        stats.wake.record(release.wake_latency_ns());
        stats.skipped += release.skipped;
        let snapshot = *snapshots.latest();
        // A reloaded model takes over here, between two periods, from this snapshot on.
        if cycle.switch(&mut policy, snapshot.state.t_ns) {
            stats.swaps += 1;
        }
        match cycle.act(policy.as_mut(), &snapshot, actions.back_mut()) {
            None => continue,
            Some(Ok(())) => {
                stats.levels.add(actions.back_mut().level);
                actions.publish();
            }
            Some(Err(e)) => {
                stats.errors += 1;
                stats.last_error = Some(e);
                actions.publish();
            }
        }
        let acted = clock.now_ns();
        stats.compute.record(acted.saturating_sub(release.woke_ns));
        stats.latency.record(acted.saturating_sub(release.deadline_ns));
        if cycle.step_shadow(&snapshot) {
            stats.shadow_compute.record(clock.now_ns().saturating_sub(acted));
        }
        policy.prepare_next();
    }
    stats.shadow_dropped = cycle.shadow_dropped();
    stats
}

/// The model kind a controller kind needs.
pub(crate) fn model_kind(kind: ControllerKind) -> Option<ModelKind> {
    match kind {
        ControllerKind::None | ControllerKind::Balance => None,
        ControllerKind::Student => Some(ModelKind::Policy),
        ControllerKind::Mppi => Some(ModelKind::WorldModel),
    }
}

/// Why the configured controller could not be checked or built. Each variant says the step;
/// `report::chain` shows it with its source.
#[derive(Debug)]
pub enum BuildError {
    /// `[controller] device` names no device this libtorch has.
    Device(String),
    /// The model would not load, or its contract does not fit the configuration.
    Model(load::LoadError),
    /// A learned controller without `[controller] model`.
    NoModel,
    /// The controller could not be built around its model.
    Controller(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Device(message) | BuildError::Controller(message) => f.write_str(message),
            BuildError::Model(e) => e.fmt(f),
            BuildError::NoModel => f.write_str("controller.model: no model configured"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The load error is shown as this error (its text names the model and the field).
            BuildError::Model(e) => e.source(),
            _ => None,
        }
    }
}

/// Opens and checks `model` (or the configured model) without building a controller: every
/// contract check, the probes, nothing started. What `locod check --model` runs.
pub fn check(config: &Config, model: Option<&Path>) -> Result<Option<load::Opened>, BuildError> {
    let Some(path) = model.map(Path::to_path_buf).or_else(|| config.model_path()) else {
        return Ok(None);
    };
    let device = torch::parse_device(&config.controller.device).map_err(BuildError::Device)?;
    torch::set_threads(config.controller.threads, config.controller.interop_threads);
    load::open(&path, config, model_kind(config.controller.kind), &config.depth_sensor_names(), device)
        .map(Some)
        .map_err(BuildError::Model)
}

/// A built controller, the warnings its model's contract raised and where its model came from.
pub struct Built {
    pub policy: Box<dyn Policy>,
    pub warnings: Vec<String>,
    pub model: ModelProvenance,
}

/// The configured controller, checked, built and warmed up (before the daemon reports READY);
/// `None` when `[controller] kind = "none"`. `perceives`: whether a perception will feed height
/// and depth terms (`Cycle::new`); a model that needs one is refused without.
pub fn build(config: &Config, perceives: bool) -> Result<Option<Built>, BuildError> {
    // The built-in balance controller runs inside the control loop, not on the policy thread.
    if matches!(config.controller.kind, ControllerKind::None | ControllerKind::Balance) {
        return Ok(None);
    }
    let Some(opened) = check(config, None)? else {
        return Err(BuildError::NoModel);
    };
    build_from(opened, config, perceives).map(Some)
}

/// The shadow model `[controller] shadow` names, checked, built and warmed up as the controller
/// is (`None` without one).
pub fn build_shadow(config: &Config, perceives: bool) -> Result<Option<Built>, BuildError> {
    let Some(path) = config.shadow_path() else { return Ok(None) };
    let Some(opened) = check(config, Some(&path))? else { return Ok(None) };
    let mut built = build_from(opened, config, perceives)?;
    built.model.role = "shadow";
    Ok(Some(built))
}

/// The controller `config` names, around `opened` (a model already opened and checked).
pub(crate) fn build_from(opened: load::Opened, config: &Config, perceives: bool) -> Result<Built, BuildError> {
    if opened.contract.needs_perception() && !perceives {
        return Err(BuildError::Controller(format!(
            "{}: the model observes the terrain, but no perception is available (no [depth] sensors)",
            opened.path.display()
        )));
    }
    let warnings = opened.warnings.clone();
    let model = opened.provenance("controller");
    let policy: Box<dyn Policy> = match config.controller.kind {
        ControllerKind::Student => Box::new(student::Student::new(opened, config).map_err(BuildError::Controller)?),
        ControllerKind::Mppi => Box::new(mppi::MppiPlanner::new(opened, config).map_err(BuildError::Controller)?),
        ControllerKind::None | ControllerKind::Balance => {
            return Err(BuildError::Controller("the configured controller runs no model".into()))
        }
    };
    Ok(Built { policy, warnings, model })
}
