//! The control path allocates nothing after start-up: a counting global allocator watches the
//! control loop through every mode, a policy handoff, faults, an e-stop and rejected commands,
//! with the transition log attached (every tick pushes a record, including into a full ring).

use locod::config::Config;
use locod::control::inputs::inbox;
use locod::control::messages::{ControllerLevel, Mode, ModeRequest};
use locod::control::ControlLoop;
use locod::io::doubles::mem::MemRobot;
use locod::rt::clock::{Clock, ManualClock};
use locod::rt::sched::Periodic;
use std::sync::atomic::Ordering;

mod common;

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

#[test]
fn the_control_loop_allocates_nothing_after_start_up() {
    let config =
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap();
    let (robot, faults) = MemRobot::new(&config.joints);
    let (cmd, mut inputs) = inbox();
    let mut policy = inputs.connect_policy();
    let (mut lp, mut out, _readers) = ControlLoop::new(&config, Box::new(robot), inputs, 2);
    // A ring smaller than the run: pushes into a full ring (counted drops) are watched too.
    let (tap, mut log_ring) = locod::control::record::ring(1024, config.joints.len());
    lp.attach_log(tap);
    lp.start().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let period = config.rate.control_period_ns();
    let mut sched = Periodic::new(clock.now_ns() + period, period);
    let mut run =
        |ticks: u64, lp: &mut ControlLoop, policy_on: bool, policy: &mut locod::control::inputs::ActionWriter| {
            for _ in 0..ticks {
                let r = sched.wait(&clock);
                if policy_on && r.index % 10 == 0 {
                    let targets = lp.commands().joints;
                    let a = policy.back_mut();
                    (a.t_ns, a.level, a.targets) = (r.woke_ns, ControllerLevel::Primary, targets);
                    policy.publish();
                }
                lp.tick(&r, &clock);
            }
        };
    // Start-up: whatever the first ticks touch for the first time.
    run(10, &mut lp, false, &mut policy);

    common::alloc::watch(true);
    cmd.request_mode(ModeRequest::StandUp); // the commander's side is not the control path,
    common::alloc::watch(false); //          but it does not allocate either
    common::alloc::watch(true);
    run(1_100, &mut lp, true, &mut policy);
    common::alloc::watch(false);
    cmd.request_mode(ModeRequest::Walk);
    common::alloc::watch(true);
    run(200, &mut lp, true, &mut policy);
    assert_eq!(lp.mode(), Mode::Walk);
    run(100, &mut lp, false, &mut policy); // policy silent: fallback to stand
    faults.imu_frozen.store(true, Ordering::Relaxed);
    run(50, &mut lp, false, &mut policy); // fault: damping
    faults.clear();
    common::alloc::watch(false);
    cmd.estop();
    cmd.teleop_velocity([f64::NAN, 0.0, 0.0]);
    common::alloc::watch(true);
    run(50, &mut lp, false, &mut policy);
    assert_eq!(lp.mode(), Mode::EStop);
    common::alloc::watch(false);

    let allocations = common::alloc::count();
    let mut records = 0u64;
    while log_ring.pop().is_some() {
        records += 1;
    }
    assert_eq!(records, 1024, "the ring holds the first records");
    assert_eq!(lp.log_dropped(), 10 + 1_100 + 200 + 100 + 50 + 50 - 1024);
    let mut events = 0;
    while out.events.pop().is_some() {
        events += 1;
    }
    assert!(events >= 6, "the run should have produced mode, fallback and fault events, got {events}");
    assert_eq!(allocations, 0, "the control path allocated {allocations} times");
}
