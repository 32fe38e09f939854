//! Where the robot should go once the loop runs (`--goal`), and the one sequencer that takes it
//! there through the inbox: StandUp when allowed, then Walk once standing. The daemon's supervisor
//! and the lock-step runner both use it.
//!
//! Not for: deciding whether a request is accepted (that is `ModeMachine`'s).

use super::inputs::Commander;
use super::messages::{Mode, ModeRequest, Snapshot};
use serde::Serialize;

/// Where the daemon should take the robot once it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    /// Stay in Passive (damped) until a request arrives.
    #[default]
    Passive,
    /// Stand up.
    Stand,
    /// Stand up, then walk.
    Walk,
}

/// Requests each step of a `Goal` once.
#[derive(Clone, Copy, Debug)]
pub struct GoalSequencer {
    goal: Goal,
    standup_requested: bool,
    walk_requested: bool,
}

impl GoalSequencer {
    pub fn new(goal: Goal) -> Self {
        Self { goal, standup_requested: false, walk_requested: false }
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// Whether the goal still needs its StandUp request.
    pub(crate) fn wants_standup(&self) -> bool {
        self.goal != Goal::Passive && !self.standup_requested
    }

    /// Requests StandUp if the goal still needs it (the caller decides when it is time).
    pub fn stand_up(&mut self, commander: &Commander) {
        if self.wants_standup() {
            commander.request_mode(ModeRequest::StandUp);
            self.standup_requested = true;
        }
    }

    /// Requests Walk, once, when the goal is Walk and the snapshot shows the robot standing with
    /// no fault active: the mode machine refuses Walk during a fault, so a transient one (an IMU
    /// sample late on a loaded machine) only delays the request instead of losing it.
    pub(crate) fn follow(&mut self, snapshot: &Snapshot, commander: &Commander) {
        let ready = snapshot.mode == Mode::StandUp && snapshot.standing && snapshot.fault.is_none();
        if self.goal == Goal::Walk && !self.walk_requested && ready {
            commander.request_mode(ModeRequest::Walk);
            self.walk_requested = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::inputs::inbox;
    use crate::control::messages::Fault;

    #[test]
    fn walk_is_requested_once_standing_and_only_while_no_fault_is_active() {
        let (commander, mut inputs) = inbox();
        let mut goals = GoalSequencer::new(Goal::Walk);
        goals.stand_up(&commander);
        assert_eq!(inputs.take_request(), Some(ModeRequest::StandUp));
        let mut snap = Snapshot { mode: Mode::StandUp, ..Default::default() };
        goals.follow(&snap, &commander);
        assert_eq!(inputs.take_request(), None, "not standing yet");
        snap.standing = true;
        snap.fault = Some(Fault::ImuStale { age_ms: 23.1 });
        goals.follow(&snap, &commander);
        assert_eq!(inputs.take_request(), None, "a transient fault delays the request");
        snap.fault = None;
        goals.follow(&snap, &commander);
        assert_eq!(inputs.take_request(), Some(ModeRequest::Walk));
        goals.follow(&snap, &commander);
        assert_eq!(inputs.take_request(), None, "once");
    }
}
