//! The control loop: one `tick` per control period, on the real-time thread.
//!
//! `tick` is its stages, each a method: account (timing) → sense (read, estimate) → judge
//! (safety, e-stop, requests and modes) → arbitrate (velocity command) → targets (motion or
//! policy) → limit → write → publish → close (compute time). The loop owns the hardware; it talks to other
//! threads only through lock-free handoffs (`inputs` in; events and snapshots out). After
//! construction it allocates nothing.
//!
//! Not for: scheduling (the runner in `daemon` calls `tick` on each release) or thread set-up.

pub(crate) mod arbiter;
pub mod balance;
pub mod goal;
pub mod inputs;
pub mod messages;
pub mod mode;
pub(crate) mod motion;
pub mod record;
pub mod response;
pub mod safety;

use crate::config::Config;
use crate::estimate::{Estimator, RobotState};
use crate::rt::clock::Clock;
use crate::rt::hist::{Histogram, Summary};
use crate::rt::sched::Release;
use crate::rt::spsc::{self, Consumer, Producer};
use crate::rt::triple::{self, Reader, Writer};
use crate::types::{Hardware, HwFault, MotorCommands, SensorFrame};
use arbiter::{Arbiter, Arbitrated};
use inputs::Inputs;
use messages::*;
use mode::{Conditions, ModeMachine};
use motion::Motion;
use record::{flags, LogTap, TickRecord};
use response::{Response, Verdict};
use safety::{Limiter, Monitor};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Capacity of the event ring: far more than a burst of mode changes and faults.
const EVENT_CAPACITY: usize = 1024;
/// How often (in ticks) the loop publishes its timing summary.
const STATS_EVERY_TICKS: u64 = 500;

/// Per-stage timing of the loop, in preallocated histograms.
#[derive(Clone, Default)]
pub struct LoopTiming {
    /// Actual wake-up minus scheduled deadline.
    pub wake: Histogram,
    /// From wake-up to the end of the tick.
    pub compute: Histogram,
    /// Between consecutive wake-ups.
    pub period: Histogram,
    pub ticks: u64,
    /// Cycles skipped because an earlier one overran them.
    pub skipped: u64,
    /// Ticks that finished after the next deadline.
    pub(crate) overruns: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TimingSummary {
    pub ticks: u64,
    pub skipped: u64,
    pub(crate) overruns: u64,
    pub wake: Summary,
    pub compute: Summary,
    pub period: Summary,
}

impl LoopTiming {
    pub fn summary(&self) -> TimingSummary {
        TimingSummary {
            ticks: self.ticks,
            skipped: self.skipped,
            overruns: self.overruns,
            wake: self.wake.summary(),
            compute: self.compute.summary(),
            period: self.period.summary(),
        }
    }
}

/// The non-real-time ends of the loop's outputs.
pub struct LoopOutputs {
    pub events: Consumer<Event>,
    pub stats: Reader<TimingSummary>,
    pub(crate) heartbeat: Arc<AtomicU64>,
}

pub struct ControlLoop {
    hw: Box<dyn Hardware>,
    estimator: Estimator,
    modes: ModeMachine,
    motion: Motion,
    monitor: Monitor,
    response: Response,
    limiter: Limiter,
    arbiter: Arbiter,
    inputs: Inputs,
    events: Producer<Event>,
    events_dropped: u64,
    snapshots: Vec<Writer<Snapshot>>,
    stats: Writer<TimingSummary>,
    heartbeat: Arc<AtomicU64>,
    log: Option<LogTap>,

    frame: SensorFrame,
    state: RobotState,
    cmds: MotorCommands,
    action: PolicyAction,
    /// Why the policy's latest publication was a failure, if it was (`PolicyAction::failed`).
    policy_failure: Option<&'static str>,
    /// This tick took a new action from the policy (a policy step).
    policy_step: bool,
    level: ControllerLevel,
    /// Walk's ticks so far by level (published in the snapshot).
    walk_levels: LevelCounts,
    fault: Option<Fault>,
    /// The active fault degrades (`response`): Walk is held by the balance fallback.
    degraded: bool,
    /// When the active fault's condition was last seen to lapse.
    clear_since_ns: Option<u64>,
    fault_clear_ns: u64,
    standup_complete: bool,
    /// A mode entered since the last `targets` (and when), whose motion `targets` starts: judging
    /// decides modes, the targets stage owns the motions.
    entered: Option<(Mode, u64)>,
    shutting_down: bool,
    last_write: Result<(), HwFault>,
    last_overran: bool,

    period_ns: u64,
    dt_s: f64,
    policy_timeout_ns: u64,
    timing: LoopTiming,
    prev_woke_ns: Option<u64>,
    tick: u64,
}

impl ControlLoop {
    /// A loop over `hw`, reading requests from `inputs`. `snapshot_readers` is how many threads
    /// (policy, telemetry, logger) each get their own stream of snapshots.
    pub fn new(
        config: &Config,
        hw: Box<dyn Hardware>,
        inputs: Inputs,
        snapshot_readers: usize,
    ) -> (Self, LoopOutputs, Vec<Reader<Snapshot>>) {
        let (events, events_rx) = spsc::spsc(EVENT_CAPACITY);
        let (stats, stats_rx) = triple::triple(TimingSummary::default());
        let (snapshots, readers): (Vec<_>, Vec<_>) =
            (0..snapshot_readers).map(|_| triple::triple(Snapshot::default())).unzip();
        let heartbeat = Arc::new(AtomicU64::new(0));
        let period_ns = config.rate.control_period_ns();
        let lp = Self {
            hw,
            estimator: Estimator::new(config),
            modes: ModeMachine::default(),
            motion: Motion::new(config),
            monitor: Monitor::new(config),
            response: Response::new(config.degrade_limits()),
            limiter: Limiter::new(config),
            arbiter: Arbiter::new(&config.command),
            inputs,
            events,
            events_dropped: 0,
            snapshots,
            stats,
            heartbeat: heartbeat.clone(),
            log: None,
            frame: SensorFrame::default(),
            state: RobotState::default(),
            cmds: MotorCommands::default(),
            action: PolicyAction::default(),
            policy_failure: None,
            policy_step: false,
            level: ControllerLevel::Damp,
            walk_levels: LevelCounts::default(),
            fault: None,
            degraded: false,
            clear_since_ns: None,
            fault_clear_ns: (config.safety.fault_clear_ms * 1e6) as u64,
            standup_complete: false,
            entered: None,
            shutting_down: false,
            last_write: Ok(()),
            last_overran: false,
            period_ns,
            dt_s: period_ns as f64 * 1e-9,
            policy_timeout_ns: (config.safety.policy_timeout_ms * 1e6) as u64,
            timing: LoopTiming::default(),
            prev_woke_ns: None,
            tick: 0,
        };
        (lp, LoopOutputs { events: events_rx, stats: stats_rx, heartbeat }, readers)
    }

    pub fn start(&mut self) -> Result<(), String> {
        self.hw.start()
    }

    pub fn mode(&self) -> Mode {
        self.modes.mode()
    }

    pub fn level(&self) -> ControllerLevel {
        self.level
    }

    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    pub fn state(&self) -> &RobotState {
        &self.state
    }

    pub fn commands(&self) -> &MotorCommands {
        &self.cmds
    }

    pub fn timing(&self) -> &LoopTiming {
        &self.timing
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Whether the active fault degrades rather than damps (`response`).
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Tells the loop that the walking controller reads the terrain: a depth sensor older than
    /// `[depth] timeout_ms` is then a fault while walking (it degrades per `[safety.degrade]`).
    pub(crate) fn watch_depth(&mut self, on: bool) {
        self.monitor.watch_depth(on);
    }

    /// Records every tick into `tap` from now on (the logger thread holds the other end).
    pub fn attach_log(&mut self, tap: LogTap) {
        self.log = Some(tap);
    }

    /// Log records the ring refused (the logger fell behind).
    pub fn log_dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, LogTap::dropped)
    }

    fn emit(&mut self, t_ns: u64, kind: EventKind) {
        if self.events.push(Event { t_ns, kind }).is_err() {
            self.events_dropped += 1;
        }
    }

    fn transition(&mut self, now: u64, t: Option<(Mode, Mode)>, reason: Reason) {
        let Some((from, to)) = t else { return };
        match to {
            Mode::StandUp | Mode::Passive | Mode::EStop => self.standup_complete = false,
            Mode::SitDown => {}
            Mode::Walk => self.level = ControllerLevel::Primary,
        }
        self.entered = Some((to, now));
        self.emit(now, EventKind::ModeChanged { from, to, reason });
    }

    fn set_fault(&mut self, now: u64, new: Option<Fault>) {
        let present = new.is_some();
        // A fault whose condition lapsed stays until it has been absent for `fault_clear_ns`.
        let new = match (self.fault, new) {
            (Some(old), None) => {
                let since = *self.clear_since_ns.get_or_insert(now);
                (now.saturating_sub(since) < self.fault_clear_ns).then_some(old)
            }
            (_, new) => {
                self.clear_since_ns = None;
                new
            }
        };
        match (self.fault, new) {
            (None, Some(f)) => self.emit(now, EventKind::FaultRaised(f)),
            (Some(old), None) => self.emit(now, EventKind::FaultCleared(old)),
            (Some(old), Some(f)) if !old.same_kind(&f) => self.emit(now, EventKind::FaultRaised(f)),
            _ => {}
        }
        self.fault = new;
        let verdict = self.response.judge(now, new.as_ref(), present);
        self.degraded = verdict == Verdict::Degrade;
        if let (Some(f), Verdict::Damp { persisted }) = (new, verdict) {
            let t = self.modes.fault();
            self.transition(now, t, if persisted { Reason::FaultPersisted(f) } else { Reason::Fault(f) });
        }
    }

    fn action_fresh(&self, now: u64) -> bool {
        self.action.t_ns != 0 && now.saturating_sub(self.action.t_ns) <= self.policy_timeout_ns
    }

    fn set_level(&mut self, now: u64, to: ControllerLevel, why: FallbackWhy) {
        if to != self.level {
            let from = self.level;
            self.level = to;
            self.emit(now, EventKind::FallbackSwitched { from, to, why });
        }
    }

    /// Takes the robot to damping for good: the loop keeps ticking (so motors keep receiving the
    /// safe command) until the runner stops calling `tick`.
    pub(crate) fn begin_shutdown(&mut self, now_ns: u64) {
        self.shutting_down = true;
        let t = self.modes.shutdown();
        self.transition(now_ns, t, Reason::Shutdown);
    }

    /// Disables the hardware after the last tick.
    pub fn finish(&mut self) {
        self.hw.stop();
    }

    /// One control cycle for `release`: the stages in order, each reading what the one before
    /// left in `self`.
    pub fn tick(&mut self, release: &Release, clock: &dyn Clock) {
        let now = release.woke_ns;
        self.account(release);
        self.sense(now);
        let fresh = self.judge(now);
        let arb = self.arbitrate(now);
        self.targets(now, fresh, &arb);
        self.limit(now);
        self.last_write = self.hw.write(now, &self.cmds);
        self.publish(now, release, clock, &arb, fresh);
        self.close(now, release, clock);
    }

    /// Timing of the release: wake-up latency, period, skipped cycles, the previous overrun.
    fn account(&mut self, release: &Release) {
        let now = release.woke_ns;
        self.tick += 1;
        let t = &mut self.timing;
        t.ticks += 1;
        t.skipped += release.skipped;
        t.wake.record(release.wake_latency_ns());
        if let Some(prev) = self.prev_woke_ns {
            t.period.record(now.saturating_sub(prev));
        }
        self.prev_woke_ns = Some(now);
        self.monitor.cycle_overran(self.last_overran || release.skipped > 0);
    }

    /// Sensors → state.
    fn sense(&mut self, now: u64) {
        self.hw.read(now, &mut self.frame);
        self.estimator.update(now, &self.frame, &mut self.state);
    }

    /// Faults, e-stop, the newest policy action and one mode request, in that order: faults force
    /// their transitions before any request is considered. Returns whether the action is fresh.
    fn judge(&mut self, now: u64) -> bool {
        let hw_fault = self.monitor.write_outcome(self.last_write);
        let walking = self.modes.mode() == Mode::Walk;
        let fault = match self.monitor.check(&self.state, walking) {
            Some(f) if !response::always_damps(&f) => hw_fault.or(Some(f)),
            f => f.or(hw_fault),
        };
        self.set_fault(now, fault);
        if self.inputs.take_estop() {
            let t = self.modes.estop();
            self.transition(now, t, Reason::EStop);
        }
        if let Some(policy) = self.inputs.policy.as_mut() {
            // A failure is not an action: the last good one stays in use until it is stale,
            // and then the fallback names the failure.
            let latest = policy.latest();
            self.policy_failure = latest.failed;
            self.policy_step = latest.failed.is_none() && latest.t_ns != self.action.t_ns;
            if self.policy_step {
                self.action = *latest;
            }
        }
        let fresh = self.action_fresh(now);
        let walk_available = fresh || self.motion.walks();
        if let Some(request) = self.inputs.take_request() {
            if !self.shutting_down {
                // Walking would read the terrain: a stale depth sensor refuses it.
                let depth = (request == ModeRequest::Walk).then(|| self.monitor.depth(&self.state)).flatten();
                let c =
                    Conditions { fault: self.fault.or(depth), standup_complete: self.standup_complete, walk_available };
                let mode = self.modes.mode();
                match self.modes.request(request, &c) {
                    Ok(t) => self.transition(now, t, Reason::Requested),
                    Err(refusal) => self.emit(now, EventKind::Refused { request, mode, refusal }),
                }
            }
        }
        fresh
    }

    /// The velocity command: teleop, autonomy or none, validated and rate-limited.
    fn arbitrate(&mut self, now: u64) -> Arbitrated {
        let estopped = self.modes.mode() == Mode::EStop;
        let teleop = *self.inputs.teleop.latest();
        let autonomy = *self.inputs.autonomy.latest();
        let arb = self.arbiter.step(now, self.dt_s, &teleop, &autonomy, estopped);
        if let Some(source) = arb.rejected {
            self.emit(now, EventKind::CommandRejected { source });
        }
        arb
    }

    /// Targets for the mode, and the level in charge. A mode just entered starts its motion here,
    /// from the state sensed this tick (standing up) or the commands last written (sitting down).
    fn targets(&mut self, now: u64, fresh: bool, arb: &Arbitrated) {
        match self.entered.take() {
            Some((Mode::StandUp, at)) => self.motion.begin_standup(at, &self.state),
            Some((Mode::SitDown, at)) => self.motion.begin_sitdown(at, &self.cmds),
            _ => {}
        }
        match self.modes.mode() {
            Mode::Passive | Mode::EStop => {
                self.motion.damping(&mut self.cmds);
                self.level = ControllerLevel::Damp;
            }
            Mode::StandUp => {
                self.standup_complete = self.motion.standup(now, &self.state, &mut self.cmds);
                self.level = ControllerLevel::Stand;
            }
            Mode::SitDown => {
                self.level = ControllerLevel::Stand;
                if self.motion.sitdown(now, &self.state, &mut self.cmds) {
                    let t = self.modes.sitdown_complete();
                    self.transition(now, t, Reason::Completed);
                }
            }
            Mode::Walk => {
                if self.degraded {
                    // A brief fault: balance in place on the last good estimate until it clears.
                    self.stand_fallback(now, FallbackWhy::Degraded);
                } else if fresh {
                    let why = if self.action.level != ControllerLevel::Primary {
                        FallbackWhy::PolicyReported
                    } else {
                        FallbackWhy::Recovered
                    };
                    self.set_level(now, self.action.level, why);
                    self.cmds.joints = self.action.targets;
                } else if self.motion.walks() {
                    // The built-in balance controller is the primary walking controller.
                    self.set_level(now, ControllerLevel::Primary, FallbackWhy::Recovered);
                    self.motion.walk(&self.state, &arb.command, &mut self.cmds);
                } else {
                    let why = match self.policy_failure {
                        Some(reason) => FallbackWhy::PolicyFailed(reason),
                        None => FallbackWhy::ActionStale,
                    };
                    self.stand_fallback(now, why);
                }
            }
        }
    }

    /// Walk's stand level. When it takes over from a policy, the balance controller starts from
    /// the robot's present speed (it was not running while the policy drove the wheels).
    fn stand_fallback(&mut self, now: u64, why: FallbackWhy) {
        if self.level != ControllerLevel::Stand && !self.motion.walks() {
            self.motion.take_over(&self.state);
        }
        self.set_level(now, ControllerLevel::Stand, why);
        self.motion.stand(&self.state, &mut self.cmds);
    }

    /// Limits last, always; damping modes damp whatever the targets were.
    fn limit(&mut self, now: u64) {
        if let Some(f) = self.limiter.apply(&self.state, &mut self.cmds) {
            self.set_fault(now, Some(f));
        }
        if safety::damps(self.modes.mode()) {
            self.limiter.damping(&self.state, &mut self.cmds);
        }
    }

    /// The snapshot to every reader, the timing summary now and then, the heartbeat, the log record.
    fn publish(&mut self, now: u64, release: &Release, clock: &dyn Clock, arb: &Arbitrated, fresh: bool) {
        if self.modes.mode() == Mode::Walk {
            self.walk_levels.add(self.level);
        }
        let snapshot = Snapshot {
            tick: self.tick,
            state: self.state,
            mode: self.modes.mode(),
            level: self.level,
            command: arb.command,
            source: arb.source,
            fault: self.fault,
            standing: self.standup_complete,
            commands: self.cmds.joints,
            skipped_cycles: self.timing.skipped,
            walk_levels: self.walk_levels,
        };
        for w in self.snapshots.iter_mut() {
            *w.back_mut() = snapshot;
            w.publish();
        }
        if self.tick % STATS_EVERY_TICKS == 0 {
            *self.stats.back_mut() = self.timing.summary();
            self.stats.publish();
        }
        self.heartbeat.store(self.tick, Ordering::Release);
        if let Some(tap) = self.log.as_mut() {
            let mut flag_bits = 0;
            for (on, bit) in [
                (arb.source == CommandSource::Teleop, flags::TELEOP),
                (self.fault.is_some(), flags::FAULT),
                (release.skipped > 0, flags::DROPPED_TICK),
                (self.modes.mode() == Mode::Walk && fresh && !self.degraded, flags::POLICY_FRESH),
                (self.policy_step, flags::POLICY_STEP),
            ] {
                if on {
                    flag_bits |= bit;
                }
            }
            tap.push(TickRecord {
                tick: self.tick,
                t_ns: now,
                deadline_ns: release.deadline_ns,
                compute_ns: clock.now_ns().saturating_sub(now).min(u32::MAX as u64) as u32,
                skipped_cycles: release.skipped.min(u32::MAX as u64) as u32,
                records_dropped: 0,
                n_joints: tap.n_joints(),
                sensors: self.frame,
                estimate: (&self.state).into(),
                policy: self.action,
                commands: self.cmds,
                command_vel: arb.command,
                source: arb.source,
                mode: self.modes.mode(),
                level: self.level,
                fault: self.fault,
                flags: flag_bits,
            });
        }
    }

    /// Compute time, and whether this tick ran into the next period.
    fn close(&mut self, now: u64, release: &Release, clock: &dyn Clock) {
        let end = clock.now_ns();
        self.timing.compute.record(end.saturating_sub(now));
        self.last_overran = end > release.deadline_ns + self.period_ns;
        if self.last_overran {
            self.timing.overruns += 1;
        }
    }
}

#[cfg(test)]
mod tests;
