//! The mode state machine: Passive → StandUp → Walk → SitDown, and EStop from anywhere,
//! latched until an explicit reset. Requests are granted or refused with a reason; faults and
//! e-stops force their transitions.
//!
//! Not for: what each mode commands (see `motion`) or detecting faults (see `safety`).

use super::messages::{Fault, Mode, ModeRequest, Refusal};

/// What the machine needs to know to judge a request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Conditions {
    pub fault: Option<Fault>,
    /// The StandUp interpolation has reached the default pose.
    pub(crate) standup_complete: bool,
    /// A walking controller is producing fresh actions.
    pub(crate) walk_available: bool,
}

#[derive(Debug)]
pub(crate) struct ModeMachine {
    mode: Mode,
}

impl Default for ModeMachine {
    fn default() -> Self {
        Self { mode: Mode::Passive }
    }
}

/// A change of mode: (from, to).
pub type Transition = (Mode, Mode);

impl ModeMachine {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn go(&mut self, to: Mode) -> Option<Transition> {
        let from = self.mode;
        self.mode = to;
        (from != to).then_some((from, to))
    }

    /// Judges a request. `Ok(None)` means granted with nothing to do (already there).
    pub fn request(&mut self, request: ModeRequest, c: &Conditions) -> Result<Option<Transition>, Refusal> {
        use Mode::*;
        if self.mode == EStop {
            return match request {
                ModeRequest::Reset => Ok(self.go(Passive)),
                _ => Err(Refusal::EStopLatched),
            };
        }
        match request {
            ModeRequest::Reset => Err(Refusal::NotInEStop),
            ModeRequest::Passive => Ok(self.go(Passive)),
            ModeRequest::StandUp => {
                if let Some(f) = c.fault {
                    return Err(Refusal::FaultActive(f));
                }
                Ok(self.go(StandUp))
            }
            ModeRequest::Walk => match self.mode {
                Walk => Ok(None),
                StandUp if !c.standup_complete => Err(Refusal::NotStanding),
                StandUp => {
                    if let Some(f) = c.fault {
                        Err(Refusal::FaultActive(f))
                    } else if !c.walk_available {
                        Err(Refusal::NoWalkController)
                    } else {
                        Ok(self.go(Walk))
                    }
                }
                _ => Err(Refusal::NotStanding),
            },
            ModeRequest::SitDown => match self.mode {
                StandUp | Walk => Ok(self.go(SitDown)),
                SitDown | Passive => Ok(None),
                EStop => Err(Refusal::EStopLatched),
            },
        }
    }

    /// Latches the e-stop.
    pub fn estop(&mut self) -> Option<Transition> {
        self.go(Mode::EStop)
    }

    /// A fault takes every moving mode to Passive; Passive and EStop stay.
    pub fn fault(&mut self) -> Option<Transition> {
        match self.mode {
            Mode::StandUp | Mode::Walk | Mode::SitDown => self.go(Mode::Passive),
            Mode::Passive | Mode::EStop => None,
        }
    }

    /// SitDown reached its resting pose.
    pub(crate) fn sitdown_complete(&mut self) -> Option<Transition> {
        if self.mode == Mode::SitDown {
            self.go(Mode::Passive)
        } else {
            None
        }
    }

    /// Shutdown: damping, whatever the mode (EStop stays EStop, which also damps).
    pub fn shutdown(&mut self) -> Option<Transition> {
        if self.mode == Mode::EStop {
            None
        } else {
            self.go(Mode::Passive)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mode::*;

    const OK: Conditions = Conditions { fault: None, standup_complete: true, walk_available: true };

    #[test]
    fn the_normal_day() {
        let mut m = ModeMachine::default();
        assert_eq!(m.request(ModeRequest::StandUp, &OK), Ok(Some((Passive, StandUp))));
        assert_eq!(m.request(ModeRequest::Walk, &OK), Ok(Some((StandUp, Walk))));
        assert_eq!(m.request(ModeRequest::SitDown, &OK), Ok(Some((Walk, SitDown))));
        assert_eq!(m.sitdown_complete(), Some((SitDown, Passive)));
    }

    #[test]
    fn walking_needs_a_finished_standup_and_a_controller() {
        let mut m = ModeMachine::default();
        assert_eq!(m.request(ModeRequest::Walk, &OK), Err(Refusal::NotStanding));
        m.request(ModeRequest::StandUp, &OK).unwrap();
        let rising = Conditions { standup_complete: false, ..OK };
        assert_eq!(m.request(ModeRequest::Walk, &rising), Err(Refusal::NotStanding));
        let none = Conditions { walk_available: false, ..OK };
        assert_eq!(m.request(ModeRequest::Walk, &none), Err(Refusal::NoWalkController));
        assert_eq!(m.mode(), StandUp);
    }

    #[test]
    fn estop_latches_until_reset() {
        let mut m = ModeMachine::default();
        m.request(ModeRequest::StandUp, &OK).unwrap();
        assert_eq!(m.estop(), Some((StandUp, EStop)));
        for r in [ModeRequest::Passive, ModeRequest::StandUp, ModeRequest::Walk, ModeRequest::SitDown] {
            assert_eq!(m.request(r, &OK), Err(Refusal::EStopLatched));
        }
        assert_eq!(m.fault(), None);
        assert_eq!(m.shutdown(), None);
        assert_eq!(m.request(ModeRequest::Reset, &OK), Ok(Some((EStop, Passive))));
        assert_eq!(m.request(ModeRequest::Reset, &OK), Err(Refusal::NotInEStop));
    }

    #[test]
    fn faults_drop_moving_modes_and_block_standing_up() {
        let mut m = ModeMachine::default();
        m.request(ModeRequest::StandUp, &OK).unwrap();
        m.request(ModeRequest::Walk, &OK).unwrap();
        assert_eq!(m.fault(), Some((Walk, Passive)));
        let f = Fault::Tilt { tilt_deg: 70.0 };
        let faulty = Conditions { fault: Some(f), ..OK };
        assert_eq!(m.request(ModeRequest::StandUp, &faulty), Err(Refusal::FaultActive(f)));
        assert_eq!(m.request(ModeRequest::Passive, &faulty), Ok(None));
    }
}
