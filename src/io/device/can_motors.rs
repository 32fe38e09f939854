//! The motors on real buses: MIT-mode motors on CAN (SocketCAN, slcan or the in-memory cable).
//!
//! One receive thread per bus routes replies into per-joint latest-value slots and reports the
//! bus state; the control thread's `read_joints` copies the slots, its `write` packs one command
//! per motor and sends it without blocking. Not for: sensors (the robot assembly,
//! `robot::RealRobot`, puts these motors and the sensor threads behind `Hardware`).

use super::motors::{Motor, ReplyRouter};
use crate::config::Config;
use crate::io::protocol::mit::Special;
use crate::io::transport::bus::{self, BusCounts, BusHealth, BusPair, BusRx, BusState, BusTx, RxItem, SharedBusState};
use crate::io::OpenError;
use crate::report;
use crate::rt::thread::{self, Setup};
use crate::rt::triple::{triple, Reader};
use crate::types::{HwFault, JointSample, MotorCommand, MotorCommands, SensorFrame};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long `start` waits for every motor's first reply.
const START_WAIT: Duration = Duration::from_millis(500);
const RX_POLL: Duration = Duration::from_millis(50);

/// The configured motors on their buses, with one receive thread per bus.
pub struct CanMotors {
    motors: Vec<Motor>,
    names: Vec<String>,
    bus_names: Vec<String>,
    txs: Vec<Box<dyn BusTx>>,
    states: Vec<Arc<SharedBusState>>,
    health: BusWatch,
    joints: Vec<Reader<JointSample>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Every bus's receive-side health by bus name, in configuration order; cheap to clone and
/// read from any thread.
#[derive(Clone, Debug, Default)]
pub struct BusWatch(Vec<(String, Arc<BusHealth>)>);

impl BusWatch {
    /// Each bus's name and counts now.
    pub fn counts(&self) -> Vec<(String, BusCounts)> {
        self.0.iter().map(|(name, h)| (name.clone(), h.counts())).collect()
    }

    /// The buses with anything counted, as `bus can0: 3 undecodable, ...; bus can1: ...`, or
    /// `None` when every count is zero.
    pub fn summary(&self) -> Option<String> {
        let parts: Vec<String> =
            self.counts().iter().filter(|(_, c)| c.total() > 0).map(|(name, c)| format!("bus {name}: {c}")).collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn rx_thread(
    mut rx: Box<dyn BusRx>,
    mut router: ReplyRouter,
    state: Arc<SharedBusState>,
    health: Arc<BusHealth>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match rx.recv(RX_POLL) {
            RxItem::Frame(frame, t_ns) => {
                router.route(&frame, t_ns);
            }
            RxItem::State(s) => state.set(s),
            RxItem::Idle => {}
        }
        health.record(rx.counters(), router.unknown, router.malformed);
    }
}

impl CanMotors {
    /// Opens every configured bus.
    pub fn open(config: &Config) -> Result<Self, OpenError> {
        let buses = config.buses.iter().map(bus::open).collect::<Result<Vec<_>, _>>()?;
        Self::with_buses(config, buses)
    }

    /// The motors over already opened buses (in configuration order).
    pub fn with_buses(config: &Config, buses: Vec<BusPair>) -> Result<Self, OpenError> {
        let motors = Motor::all(config).map_err(OpenError::Config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let spec = crate::io::receive_rt(config);
        let mut joints = Vec::new();
        let mut writers: Vec<Vec<_>> = (0..buses.len()).map(|_| Vec::new()).collect();
        for m in &motors {
            let (w, r) = triple(JointSample::default());
            joints.push(r);
            writers[m.bus].push((*m, w));
        }
        let mut txs = Vec::new();
        let mut states = Vec::new();
        let mut health = Vec::new();
        let mut threads = Vec::new();
        for (i, ((tx, rx), w)) in buses.into_iter().zip(writers).enumerate() {
            let state = Arc::new(SharedBusState::default());
            let counts = Arc::new(BusHealth::default());
            let (s, h, st) = (state.clone(), counts.clone(), stop.clone());
            let router = ReplyRouter::new(w);
            let name = format!("locod-rx-{}", config.buses[i].name);
            let what = format!("bus {} receive", config.buses[i].name);
            threads.push(thread::spawn(&name, &what, Setup::Rt(spec), move |_| rx_thread(rx, router, s, h, st))?);
            txs.push(tx);
            states.push(state);
            health.push((config.buses[i].name.clone(), counts));
        }
        Ok(Self {
            motors,
            names: config.joints.iter().map(|j| j.name.clone()).collect(),
            bus_names: config.buses.iter().map(|b| b.name.clone()).collect(),
            txs,
            states,
            health: BusWatch(health),
            joints,
            stop,
            threads,
        })
    }

    fn send_all(&mut self, kind: Special) {
        for m in &self.motors {
            if let Some(f) = m.special_frame(kind) {
                let _ = self.txs[m.bus].send(&f);
            }
        }
    }

    /// Sends a special frame (enable, disable, set zero) to one joint's motor.
    pub(crate) fn send_special(&mut self, joint: usize, kind: Special) -> Result<(), bus::TxFault> {
        let m = self.motors[joint];
        match m.special_frame(kind) {
            Some(f) => self.txs[m.bus].send(&f),
            None => Ok(()),
        }
    }

    /// Sends one command to one joint's motor (bring-up tools; the control loop uses `write`).
    pub(crate) fn send_command(&mut self, joint: usize, cmd: &MotorCommand) -> Result<(), bus::TxFault> {
        let m = self.motors[joint];
        match m.command_frame(cmd) {
            Some(f) => self.txs[m.bus].send(&f),
            None => Ok(()),
        }
    }

    /// The newest reply of one joint's motor (`t_ns == 0`: none yet).
    pub fn sample(&mut self, joint: usize) -> JointSample {
        *self.joints[joint].latest()
    }

    pub fn motor(&self, joint: usize) -> &Motor {
        &self.motors[joint]
    }

    /// Every bus's receive-side counters (garbage, unknown and malformed frames, queue drops).
    pub(crate) fn bus_watch(&self) -> BusWatch {
        self.health.clone()
    }

    /// Frames sent and dropped per bus.
    pub fn tx_counters(&self) -> Vec<bus::TxCounters> {
        self.txs.iter().map(|t| t.counters()).collect()
    }
}

impl CanMotors {
    /// Enables the motors and waits up to `START_WAIT` for each one's first reply (a silent motor
    /// is reported, not an error: the safety monitor judges it).
    pub fn start(&mut self) -> Result<(), String> {
        self.send_all(Special::Enable);
        // Motors reply to commands: ask with zero gains (no torque) until each has answered.
        let zero = MotorCommand::default();
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            for m in &self.motors {
                if let Some(f) = m.command_frame(&zero) {
                    let _ = self.txs[m.bus].send(&f);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
            if self.joints.iter_mut().all(|j| j.latest().t_ns != 0) {
                return Ok(());
            }
        }
        for (i, j) in self.joints.iter_mut().enumerate() {
            if j.latest().t_ns == 0 {
                let m = &self.motors[i];
                report::warn(format!(
                    "motor of joint {} ({} id {:#x}) did not answer within {} ms: check power, wiring and ids",
                    self.names[i],
                    self.bus_names[m.bus],
                    m.can_id,
                    START_WAIT.as_millis()
                ));
            }
        }
        Ok(())
    }

    /// Copies every joint's newest reply into `out`. Never blocks.
    pub(crate) fn read_joints(&mut self, out: &mut SensorFrame) {
        for (o, j) in out.joints.iter_mut().zip(self.joints.iter_mut()) {
            *o = *j.latest();
        }
    }

    /// Sends one command per motor, never blocking; reports the first bus that is off or down,
    /// or whose queue is full.
    pub fn write(&mut self, commands: &MotorCommands) -> Result<(), HwFault> {
        let mut result = Ok(());
        for (i, state) in self.states.iter().enumerate() {
            match state.get() {
                BusState::BusOff => result = result.and(Err(HwFault::BusOff { bus: i as u8 })),
                BusState::Down => result = result.and(Err(HwFault::Disconnected { bus: i as u8 })),
                _ => {}
            }
        }
        for (m, c) in self.motors.iter().zip(&commands.joints) {
            let Some(frame) = m.command_frame(c) else { continue };
            if let Err(e) = self.txs[m.bus].send(&frame) {
                let bus = m.bus as u8;
                result = result.and(Err(match e {
                    bus::TxFault::QueueFull | bus::TxFault::BackingOff => HwFault::TxQueueFull { bus },
                    bus::TxFault::Down => HwFault::Disconnected { bus },
                }));
            }
        }
        result
    }

    /// Disables the motors and stops the receive threads.
    pub fn stop(&mut self) {
        self.send_all(Special::Disable);
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for CanMotors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
