//! The control loop against the in-memory robot, tick by tick on a manual clock.

use super::inputs::{inbox, ActionWriter, Commander};
use super::*;
use crate::io::doubles::mem::{MemFaults, MemRobot};
use crate::rt::clock::ManualClock;
use crate::rt::sched::Periodic;
use std::path::Path;

const MS: u64 = 1_000_000;

struct Rig {
    lp: ControlLoop,
    out: LoopOutputs,
    cmd: Commander,
    faults: Arc<MemFaults>,
    clock: ManualClock,
    sched: Periodic,
    events: Vec<Event>,
    policy: Option<ActionWriter>,
    period_ns: u64,
    status: Reader<Snapshot>,
}

impl Rig {
    fn new(with_policy: bool) -> Self {
        Self::with(with_policy, "")
    }

    /// The in-memory test stand with `extra` appended to its configuration.
    fn with(with_policy: bool, extra: &str) -> Self {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"));
        let config = Config::parse(&(std::fs::read_to_string(path).unwrap() + extra), path).unwrap();
        let (robot, faults) = MemRobot::new(&config.joints);
        let (cmd, mut inputs) = inbox();
        let policy = with_policy.then(|| inputs.connect_policy());
        let (mut lp, out, mut readers) = ControlLoop::new(&config, Box::new(robot), inputs, 1);
        let status = readers.pop().unwrap();
        lp.start().unwrap();
        let clock = ManualClock::new(1_000 * MS);
        let sched = Periodic::new(clock.now_ns() + 2 * MS, config.rate.control_period_ns());
        let period_ns = config.rate.control_period_ns();
        Self { lp, out, cmd, faults, clock, sched, events: Vec::new(), policy, period_ns, status }
    }

    fn run_ms(&mut self, ms: u64) {
        self.run_ms_with(ms, |_, _| {});
    }

    /// Runs for `ms`, calling `each(now, policy_writer)` before every tick.
    fn run_ms_with(&mut self, ms: u64, mut each: impl FnMut(u64, &mut Option<ActionWriter>)) {
        let mut policy = self.policy.take();
        for _ in 0..ms * MS / self.period_ns {
            let r = self.sched.wait(&self.clock);
            each(r.woke_ns, &mut policy);
            self.lp.tick(&r, &self.clock);
        }
        self.policy = policy;
        while let Some(e) = self.out.events.pop() {
            self.events.push(e);
        }
    }

    fn has(&self, pred: impl Fn(&EventKind) -> bool) -> bool {
        self.events.iter().any(|e| pred(&e.kind))
    }

    fn stand_up(&mut self) {
        self.cmd.request_mode(ModeRequest::StandUp);
        self.run_ms(2_100);
        assert_eq!(self.lp.mode(), Mode::StandUp);
    }
}

/// A policy that holds the default pose: one action per policy period, stamped with `now`.
fn stand_policy(now: u64, w: &mut Option<ActionWriter>, lp_cmds: &MotorCommands) {
    if let Some(w) = w {
        if (now / MS) % 20 == 0 {
            w.write(PolicyAction {
                t_ns: now,
                level: ControllerLevel::Primary,
                targets: lp_cmds.joints,
                ..Default::default()
            });
        }
    }
}

#[test]
fn stands_up_to_the_default_pose_and_sits_back_down() {
    let mut rig = Rig::new(false);
    rig.run_ms(50);
    assert_eq!(rig.lp.mode(), Mode::Passive);
    let rest = rig.lp.state().joints[0].q_rad;
    rig.stand_up();
    // Motors track the interpolated pose: hip at 0.6 rad, knee at -1.2 rad.
    rig.run_ms(500);
    assert!((rig.lp.state().joints[0].q_rad - 0.6).abs() < 0.02, "{}", rig.lp.state().joints[0].q_rad);
    assert!((rig.lp.state().joints[1].q_rad + 1.2).abs() < 0.02);
    rig.cmd.request_mode(ModeRequest::SitDown);
    rig.run_ms(2_600);
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!((rig.lp.state().joints[0].q_rad - rest).abs() < 0.05);
    assert!(rig.has(|k| matches!(
        k,
        EventKind::ModeChanged { from: Mode::SitDown, to: Mode::Passive, reason: Reason::Completed }
    )));
}

#[test]
fn walk_is_refused_without_a_controller_and_before_standing() {
    let mut rig = Rig::new(false);
    rig.cmd.request_mode(ModeRequest::Walk);
    rig.run_ms(10);
    assert!(rig.has(|k| matches!(k, EventKind::Refused { refusal: Refusal::NotStanding, .. })));
    rig.stand_up();
    rig.cmd.request_mode(ModeRequest::Walk);
    rig.run_ms(10);
    assert!(rig.has(|k| matches!(k, EventKind::Refused { refusal: Refusal::NoWalkController, .. })));
    assert_eq!(rig.lp.mode(), Mode::StandUp);
}

#[test]
fn a_stale_imu_drops_to_damping_within_its_timeout_and_blocks_standing() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    rig.faults.imu_frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    // Timeout 20 ms: the fault must be seen within one control period after it.
    rig.run_ms(22);
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!(matches!(rig.lp.fault(), Some(Fault::ImuStale { .. })));
    assert!(rig.has(|k| matches!(
        k,
        EventKind::ModeChanged { to: Mode::Passive, reason: Reason::Fault(Fault::ImuStale { .. }), .. }
    )));
    assert_eq!(rig.lp.commands().joints[0].kp, 0.0, "damping after a fault");
    rig.cmd.request_mode(ModeRequest::StandUp);
    rig.run_ms(10);
    assert!(rig.has(|k| matches!(k, EventKind::Refused { refusal: Refusal::FaultActive(_), .. })));
    rig.faults.clear();
    // The fault holds for fault_clear_ms (200) after its condition lapsed, then clears.
    rig.run_ms(190);
    assert!(matches!(rig.lp.fault(), Some(Fault::ImuStale { .. })), "cleared before the hold ended");
    rig.run_ms(20);
    assert!(rig.has(|k| matches!(k, EventKind::FaultCleared(Fault::ImuStale { .. }))));
    rig.cmd.request_mode(ModeRequest::StandUp);
    rig.run_ms(10);
    assert_eq!(rig.lp.mode(), Mode::StandUp);
}

#[test]
fn a_silent_motor_and_a_motor_error_are_faults() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    rig.faults.silent_joint.store(4, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms(8);
    assert_eq!(rig.lp.mode(), Mode::StandUp, "8 ms < 10 ms timeout");
    rig.run_ms(4);
    assert!(matches!(rig.lp.fault(), Some(Fault::MotorSilent { joint: 4, .. })));
    assert_eq!(rig.lp.mode(), Mode::Passive);
    rig.faults.clear();
    rig.faults.error_joint.store(1, std::sync::atomic::Ordering::Relaxed);
    rig.faults.error_code.store(0xA, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms(4);
    assert_eq!(rig.lp.fault(), Some(Fault::MotorError { joint: 1, code: 0xA }));
}

#[test]
fn tilt_and_nan_are_faults() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    rig.faults.set_roll_rad(1.0);
    rig.run_ms(4);
    assert!(matches!(rig.lp.fault(), Some(Fault::Tilt { .. })));
    assert_eq!(rig.lp.mode(), Mode::Passive);
    rig.faults.clear();
    rig.faults.imu_nan.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms(4);
    assert!(matches!(rig.lp.fault(), Some(Fault::NonFinite { .. })));
}

#[test]
fn estop_latches_over_requests_until_reset() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    rig.cmd.estop();
    rig.cmd.request_mode(ModeRequest::StandUp); // a later request must not hide the e-stop
    rig.run_ms(4);
    assert_eq!(rig.lp.mode(), Mode::EStop);
    assert!(rig.has(|k| matches!(k, EventKind::Refused { refusal: Refusal::EStopLatched, .. })));
    assert_eq!(rig.lp.commands().joints[0].kp, 0.0);
    rig.cmd.request_mode(ModeRequest::Reset);
    rig.run_ms(4);
    assert_eq!(rig.lp.mode(), Mode::Passive);
}

#[test]
fn walk_falls_back_to_stand_when_the_policy_stops_and_recovers() {
    let (mut rig, hold) = walking("");
    // The policy goes quiet: after the 60 ms timeout the stand controller takes over.
    rig.run_ms(100);
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Stand));
    assert!(rig.has(|k| matches!(
        k,
        EventKind::FallbackSwitched {
            from: ControllerLevel::Primary,
            to: ControllerLevel::Stand,
            why: FallbackWhy::ActionStale
        }
    )));
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.level(), ControllerLevel::Primary);
    assert!(rig.has(|k| matches!(
        k,
        EventKind::FallbackSwitched { to: ControllerLevel::Primary, why: FallbackWhy::Recovered, .. }
    )));
}

#[test]
fn a_policy_reporting_its_prior_is_followed_and_reported() {
    let mut rig = Rig::new(true);
    rig.stand_up();
    let hold = *rig.lp.commands();
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    rig.cmd.request_mode(ModeRequest::Walk);
    rig.run_ms_with(50, |now, w| {
        if let Some(w) = w {
            w.write(PolicyAction {
                t_ns: now,
                level: ControllerLevel::Prior,
                targets: hold.joints,
                ..Default::default()
            });
        }
    });
    assert_eq!(rig.lp.level(), ControllerLevel::Prior);
    assert!(rig.has(|k| matches!(
        k,
        EventKind::FallbackSwitched { to: ControllerLevel::Prior, why: FallbackWhy::PolicyReported, .. }
    )));
    // The snapshot counts Walk's ticks by level (the status line shows their shares): 50 ms at
    // 500 Hz, the first tick or two before the prior's first action is taken.
    let walked = rig.status.latest().walk_levels;
    assert_eq!(walked.total(), 25, "{walked:?}");
    assert!(walked.0[ControllerLevel::Prior.index()] >= 23, "{walked:?}");
    assert_eq!(walked.0[ControllerLevel::Stand.index()] + walked.0[ControllerLevel::Damp.index()], 0);
    let later = LevelCounts([walked.0[0] + 75, walked.0[1] + 25, 0, 0]);
    assert_eq!(later.since(&walked).to_string(), "primary 75%, prior 25%");
    assert_eq!(LevelCounts::default().to_string(), "none");
}

#[test]
fn repeated_overruns_are_a_fault_and_skipped_cycles_are_counted() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    for _ in 0..6 {
        let r = rig.sched.wait(&rig.clock);
        rig.lp.tick(&r, &rig.clock);
        rig.clock.advance(5 * MS); // each cycle takes 2.5 periods
    }
    assert!(matches!(rig.lp.fault(), Some(Fault::DeadlineOverruns { .. })), "{:?}", rig.lp.fault());
    assert!(rig.lp.timing().skipped >= 5);
}

#[test]
fn shutdown_damps_and_refuses_further_requests() {
    let mut rig = Rig::new(false);
    rig.stand_up();
    let now = rig.clock.now_ns();
    rig.lp.begin_shutdown(now);
    rig.cmd.request_mode(ModeRequest::StandUp);
    rig.run_ms(10);
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!(rig.lp.commands().joints[..6].iter().all(|c| c.kp == 0.0));
    assert!(rig.has(|k| matches!(k, EventKind::ModeChanged { reason: Reason::Shutdown, .. })));
}

#[test]
fn velocity_commands_are_arbitrated_in_the_loop() {
    let mut rig = Rig::new(false);
    let now = rig.clock.now_ns();
    rig.cmd.autonomy_velocity_at([0.3, 0.0, 0.0], now);
    rig.cmd.teleop_velocity_at([f64::INFINITY, 0.0, 0.0], now);
    rig.run_ms(2);
    assert!(rig.has(|k| matches!(k, EventKind::CommandRejected { source: CommandSource::Teleop })));
}

/// Stands up and walks with the stand policy on a stand configured with `degrade`.
fn walking(degrade: &str) -> (Rig, MotorCommands) {
    let mut rig = Rig::with(true, degrade);
    rig.stand_up();
    let hold = *rig.lp.commands();
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    rig.cmd.request_mode(ModeRequest::Walk);
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Primary));
    (rig, hold)
}

/// Whether Walk went to Passive because a fault `fault` accepts outlasted its degrade limit.
fn damped_past_its_limit(rig: &Rig, fault: impl Fn(&Fault) -> bool) -> bool {
    rig.has(|k| {
        matches!(k, EventKind::ModeChanged { from: Mode::Walk, to: Mode::Passive, reason: Reason::FaultPersisted(f) } if fault(f))
    })
}

#[test]
fn a_brief_imu_gap_degrades_walk_to_the_stand_fallback_and_recovers() {
    let (mut rig, hold) = walking("[safety.degrade]\nimu_stale_ms = 100.0\n");
    rig.faults.imu_frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(40, |now, w| stand_policy(now, w, &hold));
    assert!(matches!(rig.lp.fault(), Some(Fault::ImuStale { .. })));
    assert!(rig.lp.degraded());
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Stand), "held up, not damped");
    assert!(rig.lp.commands().joints[0].kp > 0.0, "the legs hold their pose");
    assert!(rig.has(|k| matches!(
        k,
        EventKind::FallbackSwitched { to: ControllerLevel::Stand, why: FallbackWhy::Degraded, .. }
    )));
    rig.faults.clear();
    rig.run_ms_with(250, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.fault(), None);
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Primary));
    assert!(!rig.has(|k| matches!(k, EventKind::ModeChanged { to: Mode::Passive, .. })));
}

#[test]
fn an_imu_gap_beyond_its_degrade_limit_damps() {
    let (mut rig, hold) = walking("[safety.degrade]\nimu_stale_ms = 100.0\n");
    rig.faults.imu_frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    // Stale after 20 ms, degraded for 100 ms more.
    rig.run_ms_with(110, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.mode(), Mode::Walk);
    rig.run_ms_with(20, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!(damped_past_its_limit(&rig, |f| matches!(f, Fault::ImuStale { .. })));
    assert_eq!(rig.lp.commands().joints[0].kp, 0.0, "damping");
}

/// On this stand (no `[balance]`) a silent motor does not degrade by default.
#[test]
fn a_silent_motor_damps_even_while_degraded() {
    let (mut rig, hold) = walking("[safety.degrade]\nimu_stale_ms = 500.0\n");
    rig.faults.imu_frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(30, |now, w| stand_policy(now, w, &hold));
    assert!(rig.lp.degraded());
    rig.faults.silent_joint.store(4, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(14, |now, w| stand_policy(now, w, &hold));
    assert!(matches!(rig.lp.fault(), Some(Fault::MotorSilent { joint: 4, .. })), "{:?}", rig.lp.fault());
    assert_eq!(rig.lp.mode(), Mode::Passive);
}

#[test]
fn a_motor_pause_degrades_when_configured_and_a_silent_motor_damps_past_its_limit() {
    let (mut rig, hold) = walking("[safety.degrade]\nmotor_silent_ms = 50.0\n");
    // Replies pause for 30 ms (silent after the stand's 10 ms timeout): held by the fallback.
    rig.faults.silent_joint.store(4, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(30, |now, w| stand_policy(now, w, &hold));
    assert!(matches!(rig.lp.fault(), Some(Fault::MotorSilent { joint: 4, .. })), "{:?}", rig.lp.fault());
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Stand), "held up, not damped");
    rig.faults.clear();
    rig.run_ms_with(250, |now, w| stand_policy(now, w, &hold));
    assert_eq!((rig.lp.mode(), rig.lp.level(), rig.lp.fault()), (Mode::Walk, ControllerLevel::Primary, None));
    // A motor that stays silent damps once its silence outlasts the limit: 10 + 50 ms.
    rig.faults.silent_joint.store(4, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(50, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.mode(), Mode::Walk);
    rig.run_ms_with(20, |now, w| stand_policy(now, w, &hold));
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!(damped_past_its_limit(&rig, |f| matches!(f, Fault::MotorSilent { joint: 4, .. })));
}

#[test]
fn an_overrun_burst_degrades_when_configured() {
    let (mut rig, hold) = walking("[safety.degrade]\ndeadline_overruns_ms = 200.0\n");
    for _ in 0..6 {
        let r = rig.sched.wait(&rig.clock);
        rig.lp.tick(&r, &rig.clock);
        rig.clock.advance(5 * MS);
    }
    assert!(matches!(rig.lp.fault(), Some(Fault::DeadlineOverruns { .. })));
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Stand));
    rig.run_ms_with(300, |now, w| stand_policy(now, w, &hold));
    assert_eq!((rig.lp.mode(), rig.lp.level(), rig.lp.fault()), (Mode::Walk, ControllerLevel::Primary, None));
}

#[test]
fn a_failing_policy_is_named_when_walk_falls_back() {
    let mut rig = Rig::new(true);
    rig.stand_up();
    let hold = *rig.lp.commands();
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    rig.cmd.request_mode(ModeRequest::Walk);
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Primary));
    // The model starts producing NaN: the policy publishes its failure every period.
    const WHY: &str = "the model produced a non-finite action";
    rig.run_ms_with(100, |now, w| {
        if let Some(w) = w {
            if (now / MS) % 20 == 0 {
                w.write(PolicyAction { t_ns: now, failed: Some(WHY), ..Default::default() });
            }
        }
    });
    assert_eq!((rig.lp.mode(), rig.lp.level()), (Mode::Walk, ControllerLevel::Stand));
    assert!(rig.has(|k| matches!(
        k,
        EventKind::FallbackSwitched { to: ControllerLevel::Stand, why: FallbackWhy::PolicyFailed(WHY), .. }
    )));
    assert!(!rig.has(|k| matches!(k, EventKind::FallbackSwitched { why: FallbackWhy::ActionStale, .. })));
    let shown = EventKind::FallbackSwitched {
        from: ControllerLevel::Primary,
        to: ControllerLevel::Stand,
        why: FallbackWhy::PolicyFailed(WHY),
    }
    .to_string();
    assert_eq!(shown, "controller Primary -> Stand (policy failed: the model produced a non-finite action)");
}

#[test]
fn records_mark_policy_steps_and_only_the_ticks_the_action_drove() {
    let (mut rig, hold) = walking("[safety.degrade]\nimu_stale_ms = 100.0\n");
    let (tap, mut ring) = super::record::ring(4096, 6);
    rig.lp.attach_log(tap);
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    // A brief IMU gap: the balance fallback holds the robot while the policy keeps publishing.
    rig.faults.imu_frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.run_ms_with(60, |now, w| stand_policy(now, w, &hold));
    rig.faults.clear();
    rig.run_ms_with(100, |now, w| stand_policy(now, w, &hold));
    let mut records = Vec::new();
    while let Some(r) = ring.pop() {
        records.push(r);
    }
    assert_eq!(records.len(), 130);
    let mut previous = records[0].policy.t_ns;
    let (mut steps, mut held) = (0, 0);
    for r in &records[1..] {
        // A step is exactly a record whose action is new.
        assert_eq!(r.flags & flags::POLICY_STEP != 0, r.policy.t_ns != previous, "tick {}", r.tick);
        steps += usize::from(r.policy.t_ns != previous);
        previous = r.policy.t_ns;
        // The action drove the motors exactly when the loop's level was the policy's.
        let drove = r.level == ControllerLevel::Primary;
        assert_eq!(r.flags & flags::POLICY_FRESH != 0, drove, "tick {} level {:?}", r.tick, r.level);
        held += usize::from(!drove);
    }
    assert_eq!(steps, 13, "a new action every 20 ms for 260 ms");
    assert!(held > 10, "the fallback held the robot for {held} ticks");
}
