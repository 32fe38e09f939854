//! MIT-mode motors emulated behind a bus endpoint: each answers its commands as the firmware does
//! (enable/disable/zero frames, its own PD law `tau = kp (q_des - q) + kd (qd_des - qd) + tau_ff`
//! saturated at the model's torque, values quantised by the wire format), so that the daemon's
//! real CAN path can be exercised without hardware. Faults are injected through `EmulatorFaults`.
//!
//! For tests and benchmarks. Not a physics simulation: each rotor is an inertia with friction.

use crate::config::Config;
use crate::io::device::motors::Motor;
use crate::io::protocol::mit::{self, MitCommand, MotorError, MotorReply, MotorRequest, Special};
use crate::io::protocol::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::io::transport::bus::{BusRx, BusTx, RxItem};
use crate::io::transport::can::CanFrame;
use crate::io::transport::serial::Port;
use crate::rt::clock::monotonic_ns;
use crate::rt::thread::{self, Setup};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const INERTIA_KGM2: f32 = 0.02;
const FRICTION_NMS: f32 = 0.05;

/// Faults to inject, from any thread.
#[derive(Debug)]
pub struct EmulatorFaults {
    /// Index (joint order) of a motor that stops replying; -1 for none.
    pub silent_joint: AtomicI32,
    /// Index of a motor that reports `error_code` (Damiao motors only); -1 for none.
    pub error_joint: AtomicI32,
    pub error_code: AtomicI32,
    /// Whether the slcan adapter sends garbage with every batch of replies: a line that does not
    /// decode and a frame from an id no motor has (`GARBAGE_LINES`, `SPOOFED_FRAMES` per batch).
    pub garbage: AtomicBool,
    pub stop: AtomicBool,
    /// What the emulator observed (not faults): see `Observed`.
    pub observed: Observed,
}

/// What the emulated hardware saw of its host, for tests that judge the host from outside.
#[derive(Debug, Default)]
pub struct Observed {
    /// Whether the slcan adapter's CAN channel is open: `O` opens it, `C` closes it.
    pub channel_open: AtomicBool,
    /// Batches of garbage sent (each `GARBAGE_LINES` bad lines and `SPOOFED_FRAMES` frames).
    pub garbage_batches: AtomicU64,
    /// Per joint (configuration order, up to 16): the largest torque a command asked of the
    /// motor's PD law at the rotor's state when it arrived, before the motor's saturation (f32
    /// bits of a non-negative value, so that `fetch_max` orders them).
    max_demand_nm: [AtomicU32; 16],
    /// Per joint: the largest change of the position target between consecutive commands with a
    /// position gain (from the rotor's angle when the previous one had none), f32 bits.
    max_target_step_rad: [AtomicU32; 16],
}

impl Observed {
    /// The largest torque demanded of joint `j`'s motor so far, N·m (motor side).
    pub fn max_demand_nm(&self, j: usize) -> f32 {
        self.max_demand_nm.get(j).map_or(0.0, |a| f32::from_bits(a.load(Ordering::Relaxed)))
    }

    /// The largest step of joint `j`'s position target so far, rad (motor side).
    pub fn max_target_step_rad(&self, j: usize) -> f32 {
        self.max_target_step_rad.get(j).map_or(0.0, |a| f32::from_bits(a.load(Ordering::Relaxed)))
    }

    fn record(slot: &[AtomicU32; 16], j: usize, v: f32) {
        if let Some(a) = slot.get(j) {
            a.fetch_max(v.abs().to_bits(), Ordering::Relaxed);
        }
    }
}

/// Per batch of garbage: lines that do not decode, and frames from an id no motor uses.
pub const GARBAGE_LINES: u64 = 2;
pub const SPOOFED_FRAMES: u64 = 1;
const GARBAGE: &[u8] = b"xyz\rt12Q\rt7FF8EE02030405060708\r";

impl Default for EmulatorFaults {
    fn default() -> Self {
        Self {
            silent_joint: AtomicI32::new(-1),
            error_joint: AtomicI32::new(-1),
            error_code: AtomicI32::new(0),
            garbage: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            observed: Observed::default(),
        }
    }
}

/// One motor's firmware: what it has been told (enabled, the latest command) and how it answers.
/// Shared by the rotor emulator here and the MuJoCo simulator (`sim`), which differ only in the
/// physics behind it. Values are motor-side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MitFirmware {
    pub spec: Motor,
    pub enabled: bool,
    pub cmd: MitCommand,
}

impl MitFirmware {
    pub fn new(spec: Motor) -> Self {
        Self { spec, enabled: false, cmd: MitCommand { q_rad: 0.0, qd_radps: 0.0, kp: 0.0, kd: 0.0, tau_ff_nm: 0.0 } }
    }

    /// Whether `frame` is addressed to this motor.
    pub(crate) fn addressed(&self, frame: &CanFrame) -> bool {
        self.spec.can_id == frame.id() && !frame.is_extended()
    }

    /// Takes in a request addressed to this motor (enable and disable change state, a command is
    /// stored; set-zero is returned for the caller's encoder). `None`: not a request it understands.
    pub fn receive(&mut self, frame: &CanFrame) -> Option<MotorRequest> {
        let request = mit::decode_request(frame, &self.spec.ranges).ok()?;
        match request {
            MotorRequest::Special(Special::Enable) => self.enabled = true,
            MotorRequest::Special(Special::Disable) => self.enabled = false,
            MotorRequest::Special(_) => {}
            MotorRequest::Command(c) => self.cmd = c,
        }
        Some(request)
    }

    /// The firmware's PD law at the rotor state, saturated at the motor's torque (0 when disabled).
    pub(crate) fn torque_nm(&self, q_rad: f32, qd_radps: f32) -> f32 {
        if !self.enabled {
            return 0.0;
        }
        let c = &self.cmd;
        let tau = c.kp * (c.q_rad - q_rad) + c.kd * (c.qd_radps - qd_radps) + c.tau_ff_nm;
        tau.clamp(-self.spec.ranges.t_max_nm, self.spec.ranges.t_max_nm)
    }

    /// The reply frame for a rotor state, quantised by the wire format.
    pub fn reply(&self, q_rad: f32, qd_radps: f32, tau_nm: f32, error: Option<MotorError>) -> Option<CanFrame> {
        let reply = MotorReply {
            motor_id: self.spec.can_id as u8,
            q_rad,
            qd_radps,
            tau_nm,
            temp_mosfet_c: Some(38.0),
            temp_rotor_c: Some(41.0),
            enabled: Some(self.enabled),
            error,
        };
        let from = self.spec.master_id.unwrap_or(0);
        mit::encode_reply(from, &reply, self.spec.model.reply_format(), &self.spec.ranges).ok()
    }
}

#[derive(Clone, Copy)]
struct Rotor {
    fw: MitFirmware,
    q_rad: f32,
    qd_radps: f32,
    tau_nm: f32,
}

/// The motors of one bus.
pub struct MotorEmulator {
    rotors: Vec<Rotor>,
    faults: Arc<EmulatorFaults>,
    last_ns: u64,
}

impl MotorEmulator {
    /// The configured motors on bus `bus`, resting at motor angle `q0_rad` each.
    pub fn new(config: &Config, bus: usize) -> Result<(Self, Arc<EmulatorFaults>), String> {
        let rotors = Motor::all(config)?
            .into_iter()
            .filter(|m| m.bus == bus)
            .map(|spec| Rotor { fw: MitFirmware::new(spec), q_rad: 0.0, qd_radps: 0.0, tau_nm: 0.0 })
            .collect();
        let faults = Arc::new(EmulatorFaults::default());
        Ok((Self { rotors, faults: faults.clone(), last_ns: monotonic_ns() }, faults))
    }

    /// Sets a motor's (motor-side) angle, e.g. to start a leg folded.
    pub fn set_position(&mut self, joint: usize, q_motor_rad: f32) {
        if let Some(r) = self.rotors.iter_mut().find(|r| r.fw.spec.joint == joint) {
            r.q_rad = q_motor_rad;
        }
    }

    /// Advances every rotor to `now_ns` under its motor's PD law.
    pub(crate) fn step_to(&mut self, now_ns: u64) {
        let mut t = self.last_ns;
        while t < now_ns {
            let dt_ns = (now_ns - t).min(250_000);
            let dt = dt_ns as f32 * 1e-9;
            for r in &mut self.rotors {
                r.tau_nm = r.fw.torque_nm(r.q_rad, r.qd_radps);
                r.qd_radps += (r.tau_nm - FRICTION_NMS * r.qd_radps) / INERTIA_KGM2 * dt;
                r.q_rad += r.qd_radps * dt;
            }
            t += dt_ns;
        }
        self.last_ns = now_ns;
    }

    /// Handles one frame sent on the bus; returns the reply, if a motor answers.
    pub fn handle(&mut self, frame: &CanFrame) -> Option<CanFrame> {
        let silent = self.faults.silent_joint.load(Ordering::Relaxed);
        let error_joint = self.faults.error_joint.load(Ordering::Relaxed);
        let r = self.rotors.iter_mut().find(|r| r.fw.addressed(frame))?;
        let before = r.fw.cmd;
        let request = r.fw.receive(frame)?;
        if request == MotorRequest::Special(Special::SetZero) {
            r.q_rad = 0.0;
        }
        if let MotorRequest::Command(c) = request {
            let seen = &self.faults.observed;
            let j = r.fw.spec.joint;
            let demand = c.kp * (c.q_rad - r.q_rad) + c.kd * (c.qd_radps - r.qd_radps) + c.tau_ff_nm;
            Observed::record(&seen.max_demand_nm, j, demand);
            if c.kp > 0.0 {
                let from = if before.kp > 0.0 { before.q_rad } else { r.q_rad };
                Observed::record(&seen.max_target_step_rad, j, c.q_rad - from);
            }
        }
        if r.fw.spec.joint as i32 == silent {
            return None;
        }
        let error = (r.fw.spec.joint as i32 == error_joint)
            .then(|| MotorError::from_damiao_code(self.faults.error_code.load(Ordering::Relaxed) as u8))
            .flatten();
        r.fw.reply(r.q_rad, r.qd_radps, r.tau_nm, error)
    }

    /// Runs the motors on a thread behind (`tx`, `rx`) until `faults.stop` is set.
    pub fn spawn(mut self, mut tx: Box<dyn BusTx>, mut rx: Box<dyn BusRx>) -> JoinHandle<()> {
        thread::spawn("locod-motor-emu", "motor emulator", Setup::Plain, move |_| {
            while !self.faults.stop.load(Ordering::Relaxed) {
                if let RxItem::Frame(f, t) = rx.recv(Duration::from_millis(20)) {
                    self.step_to(t);
                    if let Some(reply) = self.handle(&f) {
                        let _ = tx.send(&reply);
                    }
                }
            }
        })
        .expect("spawning the motor emulator")
    }

    /// Runs the motors behind an emulated slcan adapter on `port` (the master side of a pty whose
    /// slave the daemon opens as its adapter) until `faults.stop` is set. Adapter commands (`S`,
    /// `O`, `C`) are accepted silently, like CANable firmware.
    pub fn serve_slcan(mut self, mut port: Port) -> JoinHandle<()> {
        thread::spawn("locod-slcan-emu", "slcan emulator", Setup::Plain, move |_| {
            let mut decoder = SlcanDecoder::new();
            let mut buf = [0u8; 512];
            let mut line = [0u8; slcan::MAX_ENCODED_LEN];
            while !self.faults.stop.load(Ordering::Relaxed) {
                let n = match port.read(&mut buf, Duration::from_millis(20)) {
                    Ok(n) => n,
                    Err(_) => {
                        // Nobody has the adapter open (a pty with no slave): wait for the host.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let now = monotonic_ns();
                let mut replies = [None; 16];
                let mut count = 0;
                for event in decoder.decode(&buf[..n]) {
                    match event {
                        Ok(SlcanEvent::Frame(f)) => {
                            self.step_to(now);
                            if let Some(reply) = self.handle(&f) {
                                if count < replies.len() {
                                    replies[count] = Some(reply);
                                    count += 1;
                                }
                            }
                        }
                        Err(slcan::SlcanError::UnexpectedLine(c @ (b'C' | b'O'))) => {
                            self.faults.observed.channel_open.store(c == b'O', Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                if count > 0 && self.faults.garbage.load(Ordering::Relaxed) {
                    let _ = port.write_all(GARBAGE, Duration::from_millis(50));
                    self.faults.observed.garbage_batches.fetch_add(1, Ordering::Relaxed);
                }
                for reply in replies.iter().flatten() {
                    if let Ok(len) = slcan::encode_frame(reply, &mut line) {
                        let _ = port.write_all(&line[..len], Duration::from_millis(50));
                    }
                }
            }
        })
        .expect("spawning the slcan motor emulator")
    }
}
