//! Lock-step mode: the daemon's own control loop (`control::ControlLoop`, unchanged) and its
//! configured controller (`policy::Policy`, through the policy thread's own `policy::Cycle`) on
//! simulated time. A `ManualClock` is the loop's clock and the simulation's: each control period
//! the scheduler releases the loop, `read` advances the physics to the release time, `write` hands
//! the commands to the simulated motors as the CAN frames the real robot gets (`io::device::motors`
//! packs them, the simulated firmware decodes them and its replies are decoded by
//! `io::device::motors` again).
//! The IMU arrives as the board measures it (noise, bias, latency, drop-outs); the ToF sensors'
//! readings go through the real depth pipeline (`robot::pipeline`) into the `Perception` the
//! policy reads. Nothing waits on a wall clock, so a run is deterministic and as fast as the
//! physics and the model.
//!
//! The controller runs after every `control_hz / policy_hz`-th tick on that tick's snapshot, and
//! its action reaches the loop `max(1, ceil(latency / control period))` ticks later, the latency
//! being the measured compute time of `Policy::act` or, with `policy_latency_ms`, a fixed one
//! (then a planner's time budget is lifted too, so that its plans, and the run, are deterministic).
//! A shadow model (`[controller] shadow`, when the caller hands over a ring for its steps) acts on
//! the same snapshot after the live action, as on the policy thread, and never delays it.
//!
//! What differs from the real-time path: no pseudo-terminals, no bus and bridge threads (their
//! timing is what `locod bench e2e` and the real-time tests measure), the attitude is the IMU's
//! true one unless `[sim] lockstep_attitude = "filter"` runs the daemon's own attitude filter on
//! the board's raw readings (on the robot it runs on the bridge's receive thread), depth
//! frames are stamped with their measurement time, and the policy does not share the CPU with
//! the loop. For: tests, evaluation (`sim::eval`), data generation. Not for: timing measurements.

use super::board::Board;
use super::motors::SimMotors;
use super::world::World;
use super::{settings, FaultKind, ScheduledFault, SimError};
use crate::config::sim::LockstepAttitude;
use crate::config::Config;
use crate::control::goal::{Goal, GoalSequencer};
use crate::control::inputs::{inbox, ActionWriter, Commander};
use crate::control::messages::{Event, EventKind, Mode, PolicyAction, ShadowStep, Snapshot};
use crate::control::record::LogTap;
use crate::control::{ControlLoop, LoopOutputs};
use crate::estimate::depth::DepthMapper;
use crate::estimate::imu::ImuFilter;
use crate::io::device::bridge::depth_zones;
use crate::io::device::motors::Motor;
use crate::io::protocol::mit::Special;
use crate::policy::{self, Built, Cycle, Policy, Shadow};
use crate::robot::pipeline::{BridgePipeline, DepthPipeline, DepthTimes};
use crate::rt::clock::{monotonic_ns, Clock, ManualClock, NS_PER_S};
use crate::rt::hist::Histogram;
use crate::rt::sched::Periodic;
use crate::rt::spsc::Producer;
use crate::rt::triple::{self, Reader, Writer};
use crate::types::terrain::{DepthZones, Perception};
use crate::types::{
    Hardware, HwFault, ImuSample, JointSample, MotorCommands, RawImu, SensorFrame, SensorSink, MAX_JOINTS,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Simulated time starts here, so that no timestamp is 0 ("never").
pub(crate) const T0_NS: u64 = NS_PER_S;

/// The simulator's privileged truth about the robot after the last physics step. Lock-step only:
/// the daemon never sees it; evaluation and reports do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    /// Base position (world), m.
    pub(crate) base_pos_m: [f64; 3],
    /// Base orientation [w, x, y, z].
    pub(crate) base_quat_wxyz: [f64; 4],
    /// Base linear velocity in the world frame, m/s.
    pub(crate) base_vel_world_mps: [f64; 3],
    /// Base angular velocity in the base frame, rad/s.
    pub(crate) base_ang_vel_body_radps: [f64; 3],
    /// Terrain height under the base (x, y), m; NaN where the scene has no terrain.
    pub(crate) terrain_z_m: f64,
    /// Joint torques the motors applied in the last physics step (configuration order), N·m.
    pub(crate) torque_nm: [f64; MAX_JOINTS],
    /// Whether the gantry still holds the base.
    pub held: bool,
}

impl Default for Truth {
    fn default() -> Self {
        Self {
            base_pos_m: [0.0; 3],
            base_quat_wxyz: [1.0, 0.0, 0.0, 0.0],
            base_vel_world_mps: [0.0; 3],
            base_ang_vel_body_radps: [0.0; 3],
            terrain_z_m: f64::NAN,
            torque_nm: [0.0; MAX_JOINTS],
            held: true,
        }
    }
}

impl Truth {
    /// Tilt of the base from upright, degrees.
    pub(crate) fn tilt_deg(&self) -> f64 {
        tilt_deg(self.base_quat_wxyz)
    }

    /// Yaw of the base, rad.
    pub fn yaw_rad(&self) -> f64 {
        let [w, x, y, z] = self.base_quat_wxyz;
        (2.0 * (w * z + x * y)).atan2(1.0 - 2.0 * (y * y + z * z))
    }

    /// Base velocity in the heading frame (world, rotated by the yaw only): [forward, left, up].
    pub(crate) fn vel_heading_mps(&self) -> [f64; 3] {
        let (s, c) = self.yaw_rad().sin_cos();
        let [vx, vy, vz] = self.base_vel_world_mps;
        [c * vx + s * vy, -s * vx + c * vy, vz]
    }

    /// Base height above the terrain under it, m (NaN without terrain).
    pub(crate) fn height_above_terrain_m(&self) -> f64 {
        self.base_pos_m[2] - self.terrain_z_m
    }
}

/// What the lock-step runner sees of the simulated robot: faults to inject and the truth.
/// Lock-step only: its lock is taken on the (simulated) control path.
#[derive(Debug, Default)]
pub struct View {
    pub(crate) inject: Vec<FaultKind>,
    pub truth: Truth,
}

/// The ToF readings through the real depth pipeline to the policy's `Perception`.
struct DepthFeed {
    pipeline: BridgePipeline,
    times: Reader<DepthTimes>,
    attitude: Writer<ImuSample>,
    zones: DepthZones,
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
    /// The daemon's attitude filter, with `[sim] lockstep_attitude = "filter"`.
    filter: Option<ImuFilter>,
    /// When the last sample went through `filter` (its `dt`); 0 = none yet.
    filtered_ns: u64,
    imu_in_flight: VecDeque<(u64, ImuSample)>,
    next_imu_ns: u64,
    imu_period_ns: u64,
    torques: Vec<f64>,
    depth: Option<DepthFeed>,
    perception: Option<Reader<Perception>>,
    /// The runner's window into the robot, which the control loop owns.
    pub view: Arc<Mutex<View>>,
    /// Simulated time of the world's current state.
    t_ns: u64,
    dt_ns: u64,
}

impl SimRobot {
    pub fn new(config: &Config, real_world: bool) -> Result<Self, SimError> {
        let (sim, p) = settings(config.sim.as_ref(), real_world);
        let world = World::load(config, &sim, &p)?;
        let mut motors = SimMotors::new(config, &sim.motors, p.motor_strength, p.extra_latency_ms, sim.seed)
            .map_err(SimError::Config)?;
        // The encoders read the starting pose before any step.
        motors.torques(T0_NS, |j| world.joint(j), &mut vec![0.0; config.joints.len()]);
        let board =
            Board::new(&sim.imu, &sim.depth, p.noise_scale, p.extra_latency_ms, sim.seed, world.tof_sensors(), T0_NS);
        let specs = Motor::all(config).map_err(SimError::Config)?;
        let n = specs.len();
        if n > MAX_JOINTS {
            return Err(SimError::Config(format!("{n} joints: at most {MAX_JOINTS}")));
        }
        let (depth, perception) = match &config.depth {
            Some(d) if !d.sensors.is_empty() => {
                let (writer, reader) = triple::triple(Perception::default());
                let (attitude, attitude_reader) = triple::triple(ImuSample::default());
                let (times_writer, times) = triple::triple(DepthTimes::default());
                let pipeline = BridgePipeline {
                    imu: None,
                    depth: Some(DepthPipeline::new(DepthMapper::new(d), writer).with_times(times_writer)),
                    attitude: Some(attitude_reader),
                };
                (Some(DepthFeed { pipeline, times, attitude, zones: DepthZones::default() }), Some(reader))
            }
            _ => (None, None),
        };
        Ok(Self {
            dt_ns: (world.timestep_s() * 1e9).round() as u64,
            world,
            motors,
            board,
            specs,
            names: config.joints.iter().map(|j| j.name.clone()).collect(),
            joints: vec![JointSample::default(); n],
            imu: ImuSample { t_ns: 0, ..Default::default() },
            filter: (sim.lockstep_attitude == LockstepAttitude::Filter).then(|| ImuFilter::new(&config.imu)),
            filtered_ns: 0,
            imu_in_flight: VecDeque::new(),
            next_imu_ns: T0_NS,
            imu_period_ns: NS_PER_S / u64::from(sim.imu.rate_hz.max(1)),
            torques: vec![0.0; n],
            depth,
            perception,
            view: Arc::new(Mutex::new(View::default())),
            t_ns: T0_NS,
        })
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// What the depth sensors perceive, for the policy (once; `None` without depth sensors).
    pub(crate) fn take_perception(&mut self) -> Option<Reader<Perception>> {
        self.perception.take()
    }

    fn sync_view(&mut self) {
        let Ok(mut v) = self.view.lock() else { return };
        for f in v.inject.drain(..) {
            if let FaultKind::MotorSilent(name) = &f {
                if let Some(j) = self.names.iter().position(|n| n == name) {
                    self.motors.set_silent(j, true);
                }
            } else {
                self.board.inject(&f, self.t_ns);
            }
        }
        let t = &mut v.truth;
        (t.base_pos_m, t.base_quat_wxyz) = self.world.base_pose();
        t.base_vel_world_mps = self.world.base_velocity();
        t.base_ang_vel_body_radps = self.world.base_ang_vel_body();
        t.terrain_z_m = self.world.terrain_height_at(t.base_pos_m[0], t.base_pos_m[1]).unwrap_or(f64::NAN);
        t.torque_nm[..self.torques.len()].copy_from_slice(&self.torques);
        t.held = self.world.held();
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
                if self.board.imu_delivered(self.t_ns) {
                    let m = self.board.measure_imu(&self.world);
                    let t_ns = self.t_ns + self.board.imu_latency_ns();
                    let sample = match self.filter.as_mut() {
                        // The robot's path: the raw reading through the daemon's filter.
                        Some(f) => {
                            let dt_ns = if self.filtered_ns == 0 { 0 } else { self.t_ns - self.filtered_ns };
                            self.filtered_ns = self.t_ns;
                            f.sample(&RawImu {
                                accel_imu_mps2: m.accel_mps2.map(f64::from),
                                gyro_imu_radps: m.gyro_radps.map(f64::from),
                                device_quat_wxyz: m.quat_wxyz.map(|q| q.map(f64::from)),
                                dt_s: dt_ns as f64 * 1e-9,
                                t_ns,
                            })
                        }
                        // The attitude a converged filter would report: the board's truth.
                        None => ImuSample {
                            quat_wxyz: self.world.imu().quat_wxyz,
                            gyro_body_radps: m.gyro_radps.map(f64::from),
                            accel_body_mps2: m.accel_mps2.map(f64::from),
                            t_ns,
                        },
                    };
                    self.imu_in_flight.push_back((sample.t_ns, sample));
                }
            }
            while self.imu_in_flight.front().is_some_and(|(t, _)| *t <= self.t_ns) {
                if let Some((_, s)) = self.imu_in_flight.pop_front() {
                    self.imu = s;
                }
            }
            if let Some(feed) = &mut self.depth {
                for sensor in 0..self.board.depth_sensors() {
                    if let Some(d) = self.board.depth_due(self.t_ns, &self.world, sensor) {
                        feed.attitude.write(self.imu);
                        depth_zones(&d, self.t_ns, &mut feed.zones);
                        feed.pipeline.depth(d.sensor, &feed.zones);
                    }
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
        if let Some(feed) = self.depth.as_mut() {
            out.depth_t_ns = *feed.times.latest();
        }
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
    /// A fixed policy latency instead of the measured compute time (see the module header).
    pub policy_latency_ms: Option<f64>,
}

/// One line of the run's event log.
#[derive(Clone, Debug, Serialize)]
pub struct Logged {
    pub t_s: f64,
    pub event: String,
}

/// What the configured controller did in a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerReport {
    pub name: String,
    /// Actions computed (`Policy::act` calls that succeeded) and failures.
    pub actions: u64,
    pub errors: u64,
    /// Compute time of `Policy::act`, ms (wall clock).
    pub(crate) compute_p50_ms: f64,
    pub(crate) compute_p99_ms: f64,
    /// Control ticks from a snapshot to the first tick that used the action computed from it.
    pub(crate) delay_ticks_max: u64,
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
    pub(crate) walk_mean_speed_mps: f64,
    /// The learned controller, when one is configured (`[controller] kind = "student" | "mppi"`).
    pub controller: Option<ControllerReport>,
    pub events: Vec<Logged>,
}

fn tilt_deg(q: [f64; 4]) -> f64 {
    let [_, x, y, _] = q;
    // Body z in the world: its z component is 1 - 2 (x² + y²).
    (1.0 - 2.0 * (x * x + y * y)).clamp(-1.0, 1.0).acos().to_degrees()
}

/// One policy period's work, as the lock-step runner reports it.
#[derive(Clone, Copy, Debug)]
pub struct PolicyStep {
    /// The mode of the snapshot the action was computed from.
    pub mode: Mode,
    /// The action (clipped, before scaling) when `act` succeeded.
    pub action: Option<[f32; MAX_JOINTS]>,
    pub action_len: usize,
    /// Wall-clock time of `Policy::act`.
    pub compute_ns: u64,
    /// Control ticks until the loop sees the action.
    pub(crate) delay_ticks: u64,
}

/// The configured controller on simulated time.
struct Controller {
    policy: Box<dyn Policy>,
    cycle: Cycle,
    writer: ActionWriter,
    every_ticks: u64,
    period_ns: u64,
    latency_ns: Option<u64>,
    /// Computed actions on their way to the loop: (the tick that first sees it, action).
    pending: VecDeque<(u64, Box<PolicyAction>)>,
    /// Spent actions, reused so that a run allocates no action after its start.
    spare: Vec<Box<PolicyAction>>,
    compute: Histogram,
    report: ControllerReport,
}

impl Controller {
    /// Hands the loop every action due by tick `tick` (the newest wins, as on the triple buffer).
    fn deliver(&mut self, tick: u64) {
        while self.pending.front().is_some_and(|(due, _)| *due <= tick) {
            if let Some((_, a)) = self.pending.pop_front() {
                *self.writer.back_mut() = *a;
                self.writer.publish();
                self.spare.push(a);
            }
        }
    }

    /// The policy's period after tick `tick`, on its snapshot.
    fn step(&mut self, tick: u64, snapshot: &Snapshot) -> Option<PolicyStep> {
        if tick % self.every_ticks != 0 {
            return None;
        }
        let mut out = self.spare.pop().unwrap_or_default();
        let t0 = monotonic_ns();
        let r = self.cycle.act(self.policy.as_mut(), snapshot, &mut out)?;
        let compute_ns = monotonic_ns() - t0;
        self.compute.record(compute_ns);
        let latency_ns = self.latency_ns.unwrap_or(compute_ns);
        let delay_ticks = latency_ns.div_ceil(self.period_ns).max(1);
        let ok = r.is_ok();
        let step = PolicyStep {
            mode: snapshot.mode,
            action: ok.then_some(out.action),
            action_len: usize::from(out.action_len),
            compute_ns,
            delay_ticks,
        };
        if ok {
            self.report.actions += 1;
            self.report.delay_ticks_max = self.report.delay_ticks_max.max(delay_ticks);
        } else {
            self.report.errors += 1;
        }
        // A failure reaches the loop too (`failed`), as from the policy thread.
        self.pending.push_back((tick + delay_ticks, out));
        self.cycle.step_shadow(snapshot);
        self.policy.prepare_next();
        Some(step)
    }
}

/// The daemon's loop, and its configured controller, on the simulated robot, one control period
/// at a time. `run` drives it for `locod sim --lockstep`; `sim::eval` for `locod eval`.
pub struct Lockstep {
    lp: ControlLoop,
    outputs: LoopOutputs,
    snapshots: Reader<Snapshot>,
    snapshot: Snapshot,
    commander: Commander,
    view: Arc<Mutex<View>>,
    clock: ManualClock,
    sched: Periodic,
    controller: Option<Controller>,
    ticks: u64,
}

impl Lockstep {
    /// The simulated robot of `config` (`[sim]`, perturbed by `[sim.real_world]` when
    /// `real_world`), its control loop and the configured controller (built, checked and warmed
    /// up as the daemon does). `policy_latency_ms` fixes the controller's latency. With `shadow`,
    /// the configured shadow model (`[controller] shadow`, if any) runs beside a learned
    /// controller and its steps go into that ring.
    pub fn new(
        config: &Config,
        real_world: bool,
        policy_latency_ms: Option<f64>,
        shadow: Option<Producer<ShadowStep>>,
    ) -> Result<Self, SimError> {
        if let Some(ms) = policy_latency_ms {
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(SimError::Config(format!("policy latency {ms} ms: expected a non-negative number")));
            }
        }
        let mut robot = SimRobot::new(config, real_world)?;
        let view = robot.view.clone();
        let perception = robot.take_perception();
        // Wall-clock time means nothing to a fixed latency: a planner plans to completion.
        let unbudgeted = policy_latency_ms.map(|_| {
            let mut c = config.clone();
            c.mppi.budget_ms = Some(1e12);
            c
        });
        let config_for_models = unbudgeted.as_ref().unwrap_or(config);
        let built = policy::build(config_for_models, perception.is_some()).map_err(SimError::Controller)?;
        let shadow = match (&built, shadow) {
            (Some(_), Some(tap)) => policy::build_shadow(config_for_models, perception.is_some())
                .map_err(SimError::Controller)?
                .map(|b| Shadow::new(b.policy, tap)),
            _ => None,
        };
        let (commander, mut inputs) = inbox();
        let controller = built.map(|Built { policy, .. }| {
            let writer = inputs.connect_policy();
            let period_ns = config.rate.control_period_ns();
            Controller {
                report: ControllerReport { name: policy.name().to_string(), ..Default::default() },
                policy,
                cycle: match shadow {
                    Some(s) => Cycle::new(perception, None).with_shadow(s),
                    None => Cycle::new(perception, None),
                },
                writer,
                every_ticks: (config.rate.policy_period_ns() / period_ns).max(1),
                period_ns,
                latency_ns: policy_latency_ms.map(|ms| (ms * 1e6).round() as u64),
                pending: VecDeque::new(),
                spare: Vec::new(),
                compute: Histogram::default(),
            }
        });
        let (mut lp, outputs, mut readers) = ControlLoop::new(config, Box::new(robot), inputs, 1);
        lp.watch_depth(controller.as_ref().is_some_and(|c| c.policy.observes_terrain()));
        let snapshots = readers.pop().expect("one snapshot reader");
        lp.start().map_err(SimError::Config)?;
        let period = config.rate.control_period_ns();
        Ok(Self {
            lp,
            outputs,
            snapshots,
            snapshot: Snapshot::default(),
            commander,
            view,
            clock: ManualClock::new(T0_NS),
            sched: Periodic::new(T0_NS + period, period),
            controller,
            ticks: 0,
        })
    }

    /// Records every tick into `tap` (the caller drains the ring's other end).
    pub fn attach_log(&mut self, tap: LogTap) {
        self.lp.attach_log(tap);
    }

    /// How requests and velocity commands reach the loop.
    pub fn commander(&self) -> &Commander {
        &self.commander
    }

    /// Simulated time now, ns (the clock starts at `T0_NS`).
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Simulated time since the start, s.
    pub fn t_s(&self) -> f64 {
        (self.clock.now_ns() - T0_NS) as f64 * 1e-9
    }

    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The loop's snapshot after the last tick.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn mode(&self) -> Mode {
        self.lp.mode()
    }

    /// The simulator's truth after the last tick.
    pub fn truth(&self) -> Truth {
        self.view.lock().map(|v| v.truth).unwrap_or_default()
    }

    /// Injects a fault into the simulated robot at the next tick.
    pub(crate) fn inject(&self, fault: FaultKind) {
        if let Ok(mut v) = self.view.lock() {
            v.inject.push(fault);
        }
    }

    /// The controller's name and figures so far, when one is configured.
    pub fn controller(&self) -> Option<ControllerReport> {
        self.controller.as_ref().map(|c| {
            let q = |p: f64| c.compute.quantile_ns(p) as f64 * 1e-6;
            ControllerReport { compute_p50_ms: q(0.5), compute_p99_ms: q(0.99), ..c.report.clone() }
        })
    }

    /// One control period: the loop's tick (with the actions that are due), its events into
    /// `events`, then the controller's period when one is due.
    pub fn step(&mut self, events: &mut Vec<Event>) -> Option<PolicyStep> {
        let release = self.sched.wait(&self.clock);
        self.ticks += 1;
        if let Some(c) = self.controller.as_mut() {
            c.deliver(self.ticks);
        }
        self.lp.tick(&release, &self.clock);
        while let Some(e) = self.outputs.events.pop() {
            events.push(e);
        }
        self.snapshot = *self.snapshots.latest();
        let (ticks, snapshot) = (self.ticks, self.snapshot);
        self.controller.as_mut().and_then(|c| c.step(ticks, &snapshot))
    }

    /// Damping, then the motors disabled; the loop's last events into `events`.
    pub fn finish(mut self, events: &mut Vec<Event>) -> Mode {
        self.lp.begin_shutdown(self.clock.now_ns());
        self.lp.finish();
        while let Some(e) = self.outputs.events.pop() {
            events.push(e);
        }
        self.lp.mode()
    }
}

fn logged(e: &Event, joints: &[String]) -> Logged {
    Logged { t_s: e.t_ns.saturating_sub(T0_NS) as f64 * 1e-9, event: e.kind.named(joints).to_string() }
}

/// Runs the daemon's control loop (and its configured controller) on the simulated robot for
/// `opts.duration_s` of simulated time.
pub fn run(config: &Config, opts: &LockstepOptions) -> Result<LockstepReport, SimError> {
    let started = std::time::Instant::now();
    for f in &opts.faults {
        match &f.kind {
            FaultKind::MotorSilent(name) => {
                super::check_joint(&config.joints, name)?;
            }
            FaultKind::BridgeGarbage | FaultKind::Exit => {
                return Err(SimError::Config(format!(
                    "{:?} needs the real-time simulator (it is about the wire)",
                    f.kind
                )))
            }
            FaultKind::ImuStop | FaultKind::ImuGap(_) | FaultKind::DepthStop => {}
        }
    }
    let mut ls = Lockstep::new(config, opts.real_world, opts.policy_latency_ms, None)?;
    let joints = config.joint_names();
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
        controller: None,
        events: Vec::new(),
    };
    let mut walk_start: Option<(f64, Option<[f64; 3]>)> = None;
    let mut stood = false;
    let mut goals = GoalSequencer::new(opts.goal);
    let mut faults = opts.faults.clone();
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut faults = faults.into_iter().peekable();
    let mut events = Vec::new();
    while ls.now_ns() < end_ns {
        let t_s = ls.t_s();
        while let Some(f) = faults.next_if(|f| f.at_s <= t_s) {
            report.events.push(Logged { t_s, event: format!("simulator: injected {:?}", f.kind) });
            ls.inject(f.kind);
        }
        if let Some((t0, _)) = walk_start {
            ls.commander().autonomy_velocity_at((opts.command)(t_s - t0), ls.now_ns());
        }
        ls.step(&mut events);
        for e in events.drain(..) {
            if let EventKind::ModeChanged { to: Mode::Walk, .. } = e.kind {
                let et = logged(&e, &joints).t_s;
                walk_start = Some((et, None));
                report.walk_began_s = Some(et);
            }
            report.events.push(logged(&e, &joints));
        }
        let snap = *ls.snapshot();
        // As the daemon's supervisor: StandUp waits for a robot without faults (the first IMU
        // sample arrives after the board's latency, `[sim.real_world]` adds to it).
        if snap.fault.is_none() {
            goals.stand_up(ls.commander());
        }
        goals.follow(&snap, ls.commander());
        stood |= snap.standing;
        let v = ls.truth();
        if !v.held {
            report.max_tilt_deg = report.max_tilt_deg.max(v.tilt_deg());
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
    report.ticks = ls.ticks();
    report.sim_seconds = ls.t_s();
    report.controller = ls.controller();
    report.final_mode = ls.finish(&mut events);
    report.events.extend(events.iter().map(|e| logged(e, &joints)));
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
        )?;
        if let Some(c) = &self.controller {
            writeln!(
                f,
                "controller {}: {} actions, {} errors; compute p50 {:.2} ms p99 {:.2} ms; at most {} ticks from snapshot to use",
                c.name, c.actions, c.errors, c.compute_p50_ms, c.compute_p99_ms, c.delay_ticks_max
            )?;
        }
        Ok(())
    }
}
