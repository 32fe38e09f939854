//! The control loop driving the robot over its real CAN path: `RealRobot` with `CanMotors` (packing, per-bus receive
//! threads, reply routing, latest-value slots) on an in-memory cable, with emulated MIT-mode motors
//! on the other end. Real threads and the real clock.

use locod::config::Config;
use locod::control::inputs::inbox;
use locod::control::messages::{Fault, Mode, ModeRequest};
use locod::control::ControlLoop;
use locod::io::device::can_motors::CanMotors;
use locod::io::doubles::motor_emulator::{EmulatorFaults, MotorEmulator};
use locod::io::transport::bus::{BusRx, BusState, BusTx};
use locod::io::transport::membus::{cable, Injector};
use locod::robot::sensors::Sensors;
use locod::robot::RealRobot;
use locod::rt::clock::{Clock, MonotonicClock};
use locod::rt::sched::Periodic;
use locod::rt::triple::{triple, Writer};
use locod::types::{HwFault, ImuSample};
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Rig {
    lp: ControlLoop,
    cmd: locod::control::inputs::Commander,
    faults: Arc<EmulatorFaults>,
    injector: Arc<Injector>,
    imu: Writer<ImuSample>,
    sched: Periodic,
    emu: Option<std::thread::JoinHandle<()>>,
}

impl Rig {
    fn new() -> Self {
        // Generous timeouts and overrun count: this tests the CAN path, and a loaded test machine
        // delays threads (a 10 ms stall of the host once made 5 overruns in a row here). The timing
        // of fault detection is pinned tick by tick in src/control/tests.rs.
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let overruns = "max_consecutive_overruns = 5 ";
        assert!(text.contains(overruns), "config/biwheel.toml changed");
        let mut config = Config::parse(&text.replace(overruns, "max_consecutive_overruns = 50 "), path).unwrap();
        config.rate.priority = 0; // tests run alongside others: no SCHED_FIFO for the receive threads
        config.safety.motor_timeout_ms = 100.0;
        config.safety.imu_timeout_ms = 200.0;
        let (ours, theirs) = cable();
        let (mut emulator, faults) = MotorEmulator::new(&config, 0).unwrap();
        emulator.set_position(0, 0.0);
        let emu = emulator.spawn(Box::new(theirs.tx), Box::new(theirs.rx));
        let (imu, imu_reader) = triple(ImuSample::default());
        let buses: Vec<(Box<dyn BusTx>, Box<dyn BusRx>)> = vec![(Box::new(ours.tx), Box::new(ours.rx))];
        let robot = RealRobot::new(CanMotors::with_buses(&config, buses).unwrap(), Sensors::external(imu_reader));
        let (cmd, inputs) = inbox();
        let (mut lp, _out, _) = ControlLoop::new(&config, Box::new(robot), inputs, 0);
        let mut rig = Rig {
            lp: {
                lp.start().unwrap();
                lp
            },
            cmd,
            faults,
            injector: ours.injector,
            imu,
            sched: Periodic::new(MonotonicClock.now_ns(), config.rate.control_period_ns()),
            emu: Some(emu),
        };
        rig.run_ms(100);
        rig
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms / 2 {
            let r = self.sched.wait(&MonotonicClock);
            self.imu.write(ImuSample { t_ns: r.woke_ns, ..Default::default() });
            self.lp.tick(&r, &MonotonicClock);
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.lp.finish();
        self.faults.stop.store(true, Ordering::Relaxed);
        if let Some(e) = self.emu.take() {
            let _ = e.join();
        }
    }
}

#[test]
fn stands_up_through_the_can_path() {
    let mut rig = Rig::new();
    assert_eq!(rig.lp.fault(), None, "every motor answered");
    rig.cmd.request_mode(ModeRequest::StandUp);
    rig.run_ms(2_600);
    assert_eq!(rig.lp.mode(), Mode::StandUp, "fault: {:?}", rig.lp.fault());
    let s = rig.lp.state();
    // Joint angles come back through direction (knees -1), offset and the wire's quantisation.
    assert!((s.joints[0].q_rad - 0.6).abs() < 0.03, "left hip {}", s.joints[0].q_rad);
    assert!((s.joints[1].q_rad + 1.2).abs() < 0.03, "left knee {}", s.joints[1].q_rad);
    assert!((s.joints[4].q_rad + 1.2).abs() < 0.03, "right knee {}", s.joints[4].q_rad);
    // Only the Damiao wheels report temperatures (41 °C rotor in the emulator).
    assert_eq!((s.joints[2].temp_c, s.joints[5].temp_c, s.joints[0].temp_c), (41.0, 41.0, 0.0));
}

#[test]
fn a_silent_motor_is_a_fault_within_its_timeout() {
    let mut rig = Rig::new();
    rig.cmd.request_mode(ModeRequest::StandUp);
    rig.run_ms(200);
    rig.faults.silent_joint.store(3, Ordering::Relaxed);
    let mut ticks = 0;
    while rig.lp.fault().is_none() && ticks < 1000 {
        rig.run_ms(2);
        ticks += 1;
    }
    assert!(matches!(rig.lp.fault(), Some(Fault::MotorSilent { joint: 3, .. })), "{:?}", rig.lp.fault());
    assert_eq!(rig.lp.mode(), Mode::Passive);
    assert!(ticks >= 40, "faulted after {ticks} ticks, before the 100 ms timeout");
}

#[test]
fn a_damiao_error_code_and_a_bus_off_are_faults() {
    let mut rig = Rig::new();
    rig.faults.error_joint.store(2, Ordering::Relaxed);
    rig.faults.error_code.store(0xB, Ordering::Relaxed);
    rig.run_ms(20);
    assert_eq!(rig.lp.fault(), Some(Fault::MotorError { joint: 2, code: 0xB }));
    rig.faults.error_joint.store(-1, Ordering::Relaxed);
    rig.run_ms(300); // faults clear after [safety] fault_clear_ms (200) without their cause
    assert_eq!(rig.lp.fault(), None);
    rig.injector.report(BusState::BusOff);
    rig.run_ms(100);
    assert_eq!(rig.lp.fault(), Some(Fault::Hardware(HwFault::BusOff { bus: 0 })));
    rig.injector.report(BusState::Active); // the controller restarted
    rig.run_ms(300);
    assert_eq!(rig.lp.fault(), None);
}
