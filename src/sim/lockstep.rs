//! Lock-step mode: the daemon's own control loop (`control::ControlLoop`, unchanged) on simulated
//! time. A `ManualClock` is the loop's clock and the simulation's: each control period the
//! scheduler releases the loop, `read` advances the physics to the release time, `write` hands the
//! commands to the simulated motors as the CAN frames the real robot gets (`io::device::motors` packs
//! them, the simulated firmware decodes them and its replies are decoded by `io::device::motors` again).
//! The IMU arrives as the board measures it (noise, bias, latency, drop-outs). Nothing waits on a
//! wall clock, so a run is deterministic and as fast as the physics.
//!
//! What differs from the real-time path: no pseudo-terminals, no bus and bridge threads (their
//! timing is what `locod bench e2e` and the real-time tests measure), and the attitude is the
//! IMU's true one (the daemon's attitude filter runs on the bridge's receive thread, not here). For: tests, data generation. Not for: timing measurements.

use super::board::Board;
use super::motors::SimMotors;
use super::world::World;
use super::{settings, FaultKind, ScheduledFault, SimError};
use crate::config::Config;
use crate::control::goal::{Goal, GoalSequencer};
use crate::control::inputs::inbox;
use crate::control::messages::{EventKind, Mode};
use crate::control::ControlLoop;
use crate::io::device::motors::Motor;
use crate::io::protocol::mit::Special;
use crate::rt::clock::{Clock, ManualClock, NS_PER_S};
use crate::rt::sched::Periodic;
use crate::types::{Hardware, HwFault, ImuSample, JointSample, MotorCommands, SensorFrame};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Simulated time starts here, so that no timestamp is 0 ("never").
const T0_NS: u64 = NS_PER_S;

/// What the lock-step runner sees of the simulated robot: faults to inject and, privileged, the
/// base's pose. Lock-step only: its lock is taken on the (simulated) control path.
#[derive(Debug, Default)]
pub struct View {
    pub inject: Vec<FaultKind>,
    pub base_pos_m: [f64; 3],
    pub base_quat_wxyz: [f64; 4],
    pub held: bool,
}

/// The simulated robot as `Hardware`.
pub struct SimRobot {
    world: World,
    motors: SimMotors,
    board: Board,
    specs: Vec<Motor>,
    names: Vec<String>,
    joints: Vec<JointSample>,
    imu: ImuSample,
    imu_in_flight: VecDeque<(u64, ImuSample)>,
    next_imu_ns: u64,
    imu_period_ns: u64,
    torques: Vec<f64>,
    /// The runner's window into the robot, which the control loop owns.
    pub view: Arc<Mutex<View>>,
    /// Simulated time of the world's current state.
    t_ns: u64,
    dt_ns: u64,
}

impl SimRobot {
    pub fn new(config: &Config, real_world: bool) -> Result<Self, SimError> {
        let (sim, p) = settings(config, real_world);
        let world = World::load(config, &sim, &p)?;
        let mut motors = SimMotors::new(config, &sim.motors, p.motor_strength, p.extra_latency_ms, sim.seed)
            .map_err(SimError::Config)?;
        // The encoders read the starting pose before any step.
        motors.torques(T0_NS, |j| world.joint(j), &mut vec![0.0; config.joints.len()]);
        let board =
            Board::new(&sim.imu, &sim.depth, p.noise_scale, p.extra_latency_ms, sim.seed, world.tof_sensors(), T0_NS);
        let specs = Motor::all(config).map_err(SimError::Config)?;
        let n = specs.len();
        Ok(Self {
            dt_ns: (world.timestep_s() * 1e9).round() as u64,
            world,
            motors,
            board,
            specs,
            names: config.joints.iter().map(|j| j.name.clone()).collect(),
            joints: vec![JointSample::default(); n],
            imu: ImuSample { t_ns: 0, ..Default::default() },
            imu_in_flight: VecDeque::new(),
            next_imu_ns: T0_NS,
            imu_period_ns: NS_PER_S / u64::from(sim.imu.rate_hz.max(1)),
            torques: vec![0.0; n],
            view: Arc::new(Mutex::new(View::default())),
            t_ns: T0_NS,
        })
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    fn sync_view(&mut self) {
        let Ok(mut v) = self.view.lock() else { return };
        for f in v.inject.drain(..) {
            match f {
                FaultKind::ImuStop => self.board.faults.imu_stopped = true,
                FaultKind::MotorSilent(name) => {
                    if let Some(j) = self.names.iter().position(|n| *n == name) {
                        self.motors.set_silent(j, true);
                    }
                }
                FaultKind::BridgeGarbage | FaultKind::Exit => {}
            }
        }
        (v.base_pos_m, v.base_quat_wxyz) = self.world.base_pose();
        v.held = self.world.held();
    }

    /// Advances the physics to `now_ns`.
    fn advance(&mut self, now_ns: u64) {
        while self.t_ns + self.dt_ns <= now_ns {
            let world = &self.world;
            self.motors.torques(self.t_ns, |j| world.joint(j), &mut self.torques);
            self.world.step(&self.torques);
            self.t_ns += self.dt_ns;
            if self.world.held() && self.motors.commanded() {
                self.world.release();
            }
            if self.t_ns >= self.next_imu_ns {
                self.next_imu_ns += self.imu_period_ns;
                if self.board.imu_delivered() {
                    let m = self.board.measure_imu(&self.world);
                    // The attitude a converged filter would report: the board's truth.
                    let sample = ImuSample {
                        quat_wxyz: self.world.imu().quat_wxyz,
                        gyro_body_radps: m.gyro_radps.map(f64::from),
                        accel_body_mps2: m.accel_mps2.map(f64::from),
                        t_ns: self.t_ns + self.board.imu_latency_ns(),
                    };
                    self.imu_in_flight.push_back((sample.t_ns, sample));
                }
            }
            while self.imu_in_flight.front().is_some_and(|(t, _)| *t <= self.t_ns) {
                if let Some((_, s)) = self.imu_in_flight.pop_front() {
                    self.imu = s;
                }
            }
        }
    }

    fn exchange(&mut self, now_ns: u64, frame: Option<crate::io::transport::can::CanFrame>, joint: usize) {
        let Some(frame) = frame else { return };
        if let Some(reply) = self.motors.receive(&frame, now_ns) {
            if let Some(s) = self.specs[joint].decode(&reply, now_ns) {
                self.joints[joint] = s;
            }
        }
    }
}

impl Hardware for SimRobot {
    fn start(&mut self) -> Result<(), String> {
        let now = self.t_ns;
        for j in 0..self.specs.len() {
            let enable = self.specs[j].special_frame(Special::Enable);
            self.exchange(now, enable, j);
            let zero = self.specs[j].command_frame(&Default::default());
            self.exchange(now, zero, j);
        }
        Ok(())
    }

    fn read(&mut self, now_ns: u64, out: &mut SensorFrame) {
        self.advance(now_ns);
        self.sync_view();
        out.joints[..self.joints.len()].copy_from_slice(&self.joints);
        out.imu = self.imu;
    }

    fn write(&mut self, now_ns: u64, commands: &MotorCommands) -> Result<(), HwFault> {
        for j in 0..self.specs.len() {
            let frame = self.specs[j].command_frame(&commands.joints[j]);
            self.exchange(now_ns, frame, j);
        }
        Ok(())
    }

    fn stop(&mut self) {
        for j in 0..self.specs.len() {
            let disable = self.specs[j].special_frame(Special::Disable);
            self.exchange(self.t_ns, disable, j);
        }
    }
}

/// What to do in a lock-step run.
#[derive(Clone, Debug)]
pub struct LockstepOptions {
    pub duration_s: f64,
    pub goal: Goal,
    /// Velocity command [vx m/s, vy m/s, yaw rate rad/s] once walking, by time since Walk began.
    pub command: fn(f64) -> [f64; 3],
    pub real_world: bool,
    pub faults: Vec<ScheduledFault>,
}

/// One line of the run's event log.
#[derive(Clone, Debug, Serialize)]
pub struct Logged {
    pub t_s: f64,
    pub event: String,
}

/// The outcome of a run, with the simulator's privileged view of it.
#[derive(Clone, Debug, Serialize)]
pub struct LockstepReport {
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    pub ticks: u64,
    pub final_mode: Mode,
    /// When Walk began, if it did.
    pub walk_began_s: Option<f64>,
    /// Largest tilt of the base after the gantry let go, degrees.
    pub max_tilt_deg: f64,
    /// Lowest base height after standing up, m.
    pub min_base_height_m: f64,
    /// Base displacement over ground during Walk, m (x, y in the world).
    pub walk_displacement_m: [f64; 2],
    /// Mean forward speed over ground during Walk, m/s.
    pub walk_mean_speed_mps: f64,
    pub events: Vec<Logged>,
}

fn tilt_deg(q: [f64; 4]) -> f64 {
    let [_, x, y, _] = q;
    // Body z in the world: its z component is 1 - 2 (x² + y²).
    (1.0 - 2.0 * (x * x + y * y)).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Runs the daemon's control loop on the simulated robot for `opts.duration_s` of simulated time.
pub fn run(config: &Config, opts: &LockstepOptions) -> Result<LockstepReport, SimError> {
    let started = std::time::Instant::now();
    for f in &opts.faults {
        match &f.kind {
            FaultKind::MotorSilent(name) => {
                super::check_joint(config, name)?;
            }
            FaultKind::BridgeGarbage | FaultKind::Exit => {
                return Err(SimError::Config(format!(
                    "{:?} needs the real-time simulator (it is about the wire)",
                    f.kind
                )))
            }
            FaultKind::ImuStop => {}
        }
    }
    let robot = SimRobot::new(config, opts.real_world)?;
    let view = robot.view.clone();
    let (commander, inputs) = inbox();
    let (mut lp, mut outputs, mut readers) = ControlLoop::new(config, Box::new(robot), inputs, 1);
    let mut snapshots = readers.pop().expect("one snapshot reader");
    lp.start().map_err(SimError::Config)?;
    let period = config.rate.control_period_ns();
    let clock = ManualClock::new(T0_NS);
    let mut sched = Periodic::new(T0_NS + period, period);
    let end_ns = T0_NS + (opts.duration_s * 1e9) as u64;

    let mut report = LockstepReport {
        sim_seconds: 0.0,
        wall_seconds: 0.0,
        ticks: 0,
        final_mode: Mode::Passive,
        walk_began_s: None,
        max_tilt_deg: 0.0,
        min_base_height_m: f64::INFINITY,
        walk_displacement_m: [0.0; 2],
        walk_mean_speed_mps: 0.0,
        events: Vec::new(),
    };
    let mut walk_start: Option<(f64, Option<[f64; 3]>)> = None;
    let mut stood = false;
    let mut goals = GoalSequencer::new(opts.goal);
    let mut faults = opts.faults.clone();
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut faults = faults.into_iter().peekable();
    goals.stand_up(&commander);
    while clock.now_ns() < end_ns {
        let t_s = (clock.now_ns() - T0_NS) as f64 * 1e-9;
        while let Some(f) = faults.next_if(|f| f.at_s <= t_s) {
            report.events.push(Logged { t_s, event: format!("simulator: injected {:?}", f.kind) });
            if let Ok(mut v) = view.lock() {
                v.inject.push(f.kind);
            }
        }
        if let Some((t0, _)) = walk_start {
            commander.autonomy_velocity_at((opts.command)(t_s - t0), clock.now_ns());
        }
        let release = sched.wait(&clock);
        lp.tick(&release, &clock);
        report.ticks += 1;
        while let Some(e) = outputs.events.pop() {
            let et = (e.t_ns - T0_NS) as f64 * 1e-9;
            if let EventKind::ModeChanged { to: Mode::Walk, .. } = e.kind {
                walk_start = Some((et, None));
                report.walk_began_s = Some(et);
            }
            report.events.push(Logged { t_s: et, event: e.kind.to_string() });
        }
        let snap = *snapshots.latest();
        goals.follow(&snap, &commander);
        stood |= snap.standing;
        let Ok(v) = view.lock() else { continue };
        if !v.held {
            report.max_tilt_deg = report.max_tilt_deg.max(tilt_deg(v.base_quat_wxyz));
        }
        if stood {
            report.min_base_height_m = report.min_base_height_m.min(v.base_pos_m[2]);
        }
        if let Some((t0, start)) = walk_start.as_mut() {
            let start = *start.get_or_insert(v.base_pos_m);
            let d = [v.base_pos_m[0] - start[0], v.base_pos_m[1] - start[1]];
            report.walk_displacement_m = d;
            if t_s > *t0 {
                report.walk_mean_speed_mps = (d[0] * d[0] + d[1] * d[1]).sqrt() / (t_s - *t0);
            }
        }
    }
    lp.begin_shutdown(clock.now_ns());
    lp.finish();
    while let Some(e) = outputs.events.pop() {
        report.events.push(Logged { t_s: (e.t_ns - T0_NS) as f64 * 1e-9, event: e.kind.to_string() });
    }
    report.final_mode = lp.mode();
    report.sim_seconds = (clock.now_ns() - T0_NS) as f64 * 1e-9;
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

impl std::fmt::Display for LockstepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.events {
            writeln!(f, "{:8.3} s  {}", e.t_s, e.event)?;
        }
        writeln!(
            f,
            "lock-step: {:.1} s simulated in {:.2} s ({} ticks), final mode {:?}; max tilt {:.1} deg, lowest base {:.3} m; walked {:.2} m at {:.2} m/s",
            self.sim_seconds, self.wall_seconds, self.ticks, self.final_mode, self.max_tilt_deg, self.min_base_height_m,
            self.walk_displacement_m[0].hypot(self.walk_displacement_m[1]), self.walk_mean_speed_mps
        )
    }
}
