//! Hot reload: a new model is opened, checked against every contract rule and warmed up on the
//! reload thread (ordinary priority), then handed to the policy thread, which switches to it
//! between two policy periods (`Cycle::switch`) without ever waiting for a lock. The model it
//! replaces goes back through the same handoff and is dropped here, off the real-time threads.
//!
//! Requests come from SIGHUP (the active controller's model file, read again), from teleop's
//! `cmd/reload` (a model file named in the payload) and from `cmd/controller` (another of the
//! configured controllers, `[[controller.choices]]`, possibly of the other kind); each ends in an
//! `Outcome` for the supervisor, which writes it to the journal and telemetry. A model that fails
//! any check is refused with its reason and the running one keeps acting.
//!
//! Not for: choosing when a reload is allowed (any mode; the switch resets the new model as a
//! mode change does), or logging (the supervisor tells the logger from `Handoff::take_switched`).

use super::{build_from, check, Policy};
use crate::config::{Config, ControllerKind};
use crate::types::provenance::ModelProvenance;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often the reload thread looks for a retired model to drop and for the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// A request to load a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The model file; `None` reads the configured `[controller] model` again. A relative path is
    /// relative to the configuration's directory, as in the configuration.
    pub model: Option<PathBuf>,
    /// Select this configured controller ("default", or a `[[controller.choices]]` name) and load
    /// its model; `None`: the active one.
    pub controller: Option<String>,
    /// Who asked ("SIGHUP", "cmd/reload", "cmd/controller"), for the journal.
    pub source: &'static str,
}

/// What became of a request, or of a model the policy thread switched to.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Loaded, checked and warmed up; the policy thread switches to it at its next period.
    Ready { source: &'static str, controller: String, name: String, model: ModelProvenance },
    /// Refused: the running model keeps acting.
    Refused { source: &'static str, path: PathBuf, reason: String },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ready { source, controller, name, model } => write!(
                f,
                "controller: reload ({source}): {controller}: {name} ({} sha256:{}) loaded and checked; switching at the next policy period",
                model.path.display(),
                model.sha256.get(..12).unwrap_or(&model.sha256)
            ),
            Outcome::Refused { source, path, reason } => write!(
                f,
                "controller: reload ({source}) of {} refused, the running model keeps acting: {reason}",
                path.display()
            ),
        }
    }
}

struct Incoming {
    policy: Box<dyn Policy>,
    switched: Switched,
}

/// A model the policy thread switched to.
#[derive(Clone, Debug)]
pub struct Switched {
    /// The snapshot time from which it acted.
    pub from_t_ns: u64,
    pub model: ModelProvenance,
    /// The configured controller it belongs to ("default" or a choice's name), and its kind.
    pub controller: String,
    pub kind: ControllerKind,
}

#[derive(Default)]
struct Slot {
    /// The newest checked model, waiting for the policy thread.
    incoming: Option<Incoming>,
    /// The model the policy thread switched away from, waiting to be dropped here.
    retired: Option<Box<dyn Policy>>,
    /// The model switched to, for the supervisor.
    switched: Option<Switched>,
}

/// The meeting point of the reload thread and the policy thread.
#[derive(Default)]
pub struct Handoff {
    slot: Mutex<Slot>,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On the policy thread: replaces `current` with the waiting model, if any, and keeps the
    /// old one for the reload thread to drop. Never waits (a busy slot is tried next period) and
    /// never allocates or frees. `t_ns`: the snapshot time the new model first acts on.
    pub(crate) fn switch(&self, current: &mut Box<dyn Policy>, t_ns: u64) -> bool {
        let Ok(mut slot) = self.slot.try_lock() else { return false };
        if slot.retired.is_some() || slot.switched.is_some() {
            return false; // the previous switch is not yet taken care of
        }
        let Some(Incoming { policy, mut switched }) = slot.incoming.take() else { return false };
        slot.retired = Some(std::mem::replace(current, policy));
        switched.from_t_ns = t_ns;
        slot.switched = Some(switched);
        true
    }

    /// On the reload thread: offers `policy`, replacing (and dropping) one still waiting.
    fn offer(&self, policy: Box<dyn Policy>, switched: Switched) {
        let replaced = self.lock().incoming.replace(Incoming { policy, switched });
        drop(replaced);
    }

    /// On the reload thread: drops the model the policy thread switched away from.
    fn drop_retired(&self) {
        let retired = self.lock().retired.take();
        drop(retired);
    }

    /// For the supervisor: the model switched to since the last call.
    pub fn take_switched(&self) -> Option<Switched> {
        self.lock().switched.take()
    }
}

/// Whether `path` (a model a request names) lies in one of `dirs`, symbolic links and `..`
/// resolved: an operator's key may switch models, not make the daemon open any file on the robot.
fn within(path: &Path, dirs: &[PathBuf]) -> Result<(), String> {
    let file = std::fs::canonicalize(path).map_err(|e| format!("cannot open it: {e}"))?;
    if dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| file.starts_with(d)) {
        return Ok(());
    }
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "it is outside the directories a reload may name a model in ([controller] reload_dirs: {})",
        if list.is_empty() { "none".to_string() } else { list.join(", ") }
    ))
}

/// The reload thread's state: the configuration the daemon runs, the controller now active in it
/// (the last one offered), and what the running model needs to stay true of its successor.
pub struct Reloader {
    config: Config,
    /// `config` with the active controller's kind and model.
    active: Config,
    active_name: String,
    perceives: bool,
    observes_terrain: bool,
    handoff: Arc<Handoff>,
}

impl Reloader {
    /// `perceives`: whether the policy thread has a perception; `observes_terrain`: whether the
    /// running model reads it (the control loop watches the depth sensors only then, so a
    /// successor must read the terrain exactly when its predecessor did).
    pub fn new(config: &Config, perceives: bool, observes_terrain: bool, handoff: Arc<Handoff>) -> Self {
        Self {
            config: config.clone(),
            active: config.clone(),
            active_name: "default".into(),
            perceives,
            observes_terrain,
            handoff,
        }
    }

    /// Opens, checks, builds and warms up the requested model, and offers it to the policy thread.
    pub fn load(&mut self, request: &Request) -> Outcome {
        let (name, base) = match &request.controller {
            None => (self.active_name.clone(), self.active.clone()),
            Some(n) => match self.config.with_controller(n) {
                Some(c) => (n.clone(), c),
                None => {
                    let mut names = vec!["default".to_string()];
                    names.extend(self.config.controller.choices.iter().map(|c| c.name.clone()));
                    return Outcome::Refused {
                        source: request.source,
                        path: PathBuf::new(),
                        reason: format!("no controller {n:?} is configured; expected one of: {}", names.join(", ")),
                    };
                }
            },
        };
        let path = match &request.model {
            Some(p) => self.config.resolve(p),
            None => match base.model_path() {
                Some(p) => p,
                None => {
                    return Outcome::Refused {
                        source: request.source,
                        path: PathBuf::new(),
                        reason: "no [controller] model is configured".into(),
                    }
                }
            },
        };
        let refused = |reason: String| Outcome::Refused { source: request.source, path: path.clone(), reason };
        if request.model.is_some() {
            if let Err(reason) = within(&path, &self.config.reload_dirs()) {
                return refused(reason);
            }
        }
        let opened = match check(&base, Some(&path)) {
            Ok(Some(o)) => o,
            Ok(None) => return refused("no model".into()),
            Err(e) => return refused(crate::report::chain(&e)),
        };
        let built = match build_from(opened, &base, self.perceives) {
            Ok(b) => b,
            Err(e) => return refused(crate::report::chain(&e)),
        };
        if built.policy.observes_terrain() != self.observes_terrain {
            return refused(format!(
                "the running model {} the terrain and this one {}: restart the daemon to change that",
                if self.observes_terrain { "reads" } else { "does not read" },
                if built.policy.observes_terrain() { "does" } else { "does not" }
            ));
        }
        for w in &built.warnings {
            crate::report::warn(format!("controller: reload ({}): {w}", request.source));
        }
        let policy_name = built.policy.name().to_string();
        let kind = base.controller.kind;
        let switched = Switched { from_t_ns: 0, model: built.model.clone(), controller: name.clone(), kind };
        self.handoff.offer(built.policy, switched);
        self.active = base;
        self.active.controller.model = Some(path);
        self.active_name = name.clone();
        Outcome::Ready { source: request.source, controller: name, name: policy_name, model: built.model }
    }

    /// Serves `requests` until `stop` is set or every sender is gone, sending each outcome to
    /// `outcomes`, and drops the models the policy thread retires.
    pub fn run(mut self, requests: Receiver<Request>, outcomes: Sender<Outcome>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match requests.recv_timeout(POLL) {
                Ok(request) => {
                    let _ = outcomes.send(self.load(&request));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.handoff.drop_retired();
        }
    }
}
