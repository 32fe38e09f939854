//! The sensor board in the simulator: a firmware-bridge microcontroller whose IMU and two ToF
//! sensors read the MuJoCo world. It speaks the wire protocol of `firmware-bridge` (Hello on boot
//! and on request, Pong for every Ping, IMU and Depth streams, a Heartbeat) with its own clock (µs
//! since the simulator started), adds the configured noise, bias, latency and drop-outs, and can be
//! told to go silent or to emit garbage (fault injection).
//!
//! Not for: the host side (that is the daemon's `io::device::bridge`) or the physics (`world`).

use super::noise::NoiseRng;
use super::world::{World, TOF_ZONES};
use crate::config::sim::{SimDepth, SimImu};
use firmware_bridge::{
    encode_frame, Depth, Frame, FrameDecoder, Header, Heartbeat, Hello, HostMessage, Imu, McuMessage, Pong,
    MAX_DEPTH_ZONES, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use std::collections::VecDeque;

const HEARTBEAT_PERIOD_NS: u64 = 100_000_000;
const TOF_STATUS_VALID: u8 = 5;
const TOF_STATUS_NO_TARGET: u8 = 255;
const TOF_MAX_MM: f64 = 4000.0;

/// Faults the board can be told to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BoardFaults {
    /// The IMU stream stops (the board still answers pings and sends heartbeats).
    pub(crate) imu_stopped: bool,
    /// No IMU sample is taken before this board time (a brief gap).
    pub(crate) imu_gap_until_ns: u64,
    /// The depth sensors stop sending (their schedule goes on).
    pub(crate) depth_stopped: bool,
    /// Random bytes between frames.
    pub garbage: bool,
}

pub(crate) struct Board {
    imu: SimImu,
    depth: SimDepth,
    noise_scale: f64,
    latency_ns: u64,
    rng: NoiseRng,
    decoder: FrameDecoder<HostMessage>,
    seq: u16,
    imu_period_ns: u64,
    depth_period_ns: u64,
    next_imu_ns: u64,
    next_depth_ns: Vec<u64>,
    next_heartbeat_ns: u64,
    /// IMU samples measured but not yet sent (latency): (send at, sample).
    in_flight: VecDeque<(u64, Imu)>,
    replies: VecDeque<McuMessage>,
    pub faults: BoardFaults,
    pub(crate) frames_sent: u64,
}

impl Board {
    /// A board that boots at `now_ns` with `sensors` ToF sensors.
    pub fn new(
        imu: &SimImu,
        depth: &SimDepth,
        noise_scale: f64,
        extra_latency_ms: f64,
        seed: u64,
        sensors: usize,
        now_ns: u64,
    ) -> Self {
        let depth_period_ns = 1_000_000_000 / u64::from(depth.rate_hz.max(1));
        Self {
            imu: imu.clone(),
            depth: depth.clone(),
            noise_scale,
            latency_ns: ((imu.latency_ms + extra_latency_ms).max(0.0) * 1e6) as u64,
            rng: NoiseRng::new(seed ^ 0x0062_6f61_7264),
            decoder: FrameDecoder::new(),
            seq: 0,
            imu_period_ns: 1_000_000_000 / u64::from(imu.rate_hz.max(1)),
            depth_period_ns,
            next_imu_ns: now_ns,
            // Staggered, as the firmware reads them one after the other.
            next_depth_ns: (0..sensors as u64).map(|i| now_ns + depth_period_ns * i / sensors as u64).collect(),
            next_heartbeat_ns: now_ns,
            in_flight: VecDeque::new(),
            replies: VecDeque::from([McuMessage::Hello(hello())]),
            faults: BoardFaults::default(),
            frames_sent: 0,
        }
    }

    /// Bytes from the host at `now_ns`: Hello requests and pings are answered at the next poll.
    pub fn receive(&mut self, bytes: &[u8], now_ns: u64) {
        let mcu_us = now_ns / 1000;
        for frame in self.decoder.feed(bytes).flatten() {
            match frame.message {
                HostMessage::HelloRequest { .. } => self.replies.push_back(McuMessage::Hello(hello())),
                HostMessage::Ping { host_time_ns } => {
                    self.replies.push_back(McuMessage::Pong(Pong { host_time_ns, mcu_rx_time_us: mcu_us }))
                }
                HostMessage::HelloAck { .. } | HostMessage::Configure(_) | HostMessage::Reset => {}
            }
        }
    }

    /// The IMU as measured now: the world's truth plus bias and noise.
    pub(crate) fn measure_imu(&mut self, world: &World) -> Imu {
        let t = world.imu();
        let k = self.noise_scale;
        let (gn, an) = (self.imu.gyro_noise_radps * k, self.imu.accel_noise_mps2 * k);
        let gyro =
            std::array::from_fn(|i| (t.gyro_radps[i] + self.imu.gyro_bias_radps[i] + self.rng.normal(gn)) as f32);
        let accel = std::array::from_fn(|i| (t.accel_mps2[i] + self.rng.normal(an)) as f32);
        Imu {
            accel_mps2: accel,
            gyro_radps: gyro,
            quat_wxyz: self.imu.send_quaternion.then(|| t.quat_wxyz.map(|c| c as f32)),
            temperature_c: 35.0,
        }
    }

    /// Shows the fault `kind` from board time `now_ns` on; false for faults that are not the board's.
    pub(crate) fn inject(&mut self, kind: &super::FaultKind, now_ns: u64) -> bool {
        use super::FaultKind;
        match kind {
            FaultKind::ImuStop => self.faults.imu_stopped = true,
            FaultKind::ImuGap(ms) => self.faults.imu_gap_until_ns = now_ns + (ms * 1e6) as u64,
            FaultKind::DepthStop => self.faults.depth_stopped = true,
            FaultKind::BridgeGarbage => self.faults.garbage = true,
            FaultKind::MotorSilent(_) | FaultKind::Exit => return false,
        }
        true
    }

    /// Whether an IMU sample taken at `now_ns` reaches the host (drop-outs, the stopped-stream and
    /// gap faults).
    pub(crate) fn imu_delivered(&mut self, now_ns: u64) -> bool {
        !self.faults.imu_stopped && now_ns >= self.faults.imu_gap_until_ns && !self.rng.chance(self.imu.dropout)
    }

    pub(crate) fn imu_latency_ns(&self) -> u64 {
        self.latency_ns
    }

    pub(crate) fn depth_sensors(&self) -> usize {
        self.next_depth_ns.len()
    }

    /// ToF sensor `sensor`'s reading when one is due by `now_ns` (each sensor at `[sim.depth]
    /// rate_hz`, staggered), measured from the world as it is now: what `poll` sends, and what
    /// lock-step hands to the depth pipeline without the wire.
    pub(crate) fn depth_due(&mut self, now_ns: u64, world: &World, sensor: usize) -> Option<Depth> {
        let next = self.next_depth_ns.get_mut(sensor)?;
        if now_ns < *next {
            return None;
        }
        *next += self.depth_period_ns;
        if self.faults.depth_stopped {
            return None;
        }
        Some(self.depth_frame(world, sensor))
    }

    fn depth_frame(&mut self, world: &World, sensor: usize) -> Depth {
        let mut ranges = [0.0; TOF_ZONES];
        let mut d = Depth::empty(sensor as u8, 8, 8);
        world.tof(sensor, &mut ranges);
        for (i, r) in ranges.iter().enumerate().take(MAX_DEPTH_ZONES) {
            let mm = (r + self.rng.normal(self.depth.noise_m * self.noise_scale)) * 1000.0;
            if *r < 0.0 || mm > TOF_MAX_MM || self.rng.chance(self.depth.dropout) {
                d.status[i] = TOF_STATUS_NO_TARGET;
            } else {
                d.distance_mm[i] = mm.clamp(0.0, TOF_MAX_MM) as u16;
                d.status[i] = TOF_STATUS_VALID;
            }
        }
        d
    }

    fn emit(&mut self, now_ns: u64, message: McuMessage, out: &mut Vec<u8>) {
        let frame = Frame { header: Header { seq: self.seq, time_us: now_ns / 1000 }, message };
        self.seq = self.seq.wrapping_add(1);
        let mut buf = [0u8; MAX_FRAME_LEN];
        if let Ok(n) = encode_frame(&frame, &mut buf) {
            out.extend_from_slice(&buf[..n]);
            self.frames_sent += 1;
        }
        if self.faults.garbage {
            let n = 1 + (self.rng.next_u64() % 24) as usize;
            out.extend((0..n).map(|_| self.rng.next_u64() as u8));
        }
    }

    /// Appends to `out` everything due by `now_ns`, measuring the world as it is now.
    pub(crate) fn poll(&mut self, now_ns: u64, world: &World, out: &mut Vec<u8>) {
        while let Some(m) = self.replies.pop_front() {
            self.emit(now_ns, m, out);
        }
        if now_ns >= self.next_imu_ns {
            self.next_imu_ns += self.imu_period_ns;
            if self.imu_delivered(now_ns) {
                let sample = self.measure_imu(world);
                self.in_flight.push_back((now_ns + self.latency_ns, sample));
            }
        }
        while self.in_flight.front().is_some_and(|(t, _)| *t <= now_ns) {
            if let Some((_, imu)) = self.in_flight.pop_front() {
                self.emit(now_ns, McuMessage::Imu(imu), out);
            }
        }
        for sensor in 0..self.depth_sensors() {
            if let Some(d) = self.depth_due(now_ns, world, sensor) {
                self.emit(now_ns, McuMessage::Depth(d), out);
            }
        }
        if now_ns >= self.next_heartbeat_ns {
            self.next_heartbeat_ns += HEARTBEAT_PERIOD_NS;
            let hb = Heartbeat {
                uptime_ms: (now_ns / 1_000_000) as u32,
                rx: self.decoder.counters(),
                tx_dropped: 0,
                sensor_errors: 0,
            };
            self.emit(now_ns, McuMessage::Heartbeat(hb), out);
        }
    }
}

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        firmware_version: [0, 1, 0],
        device_id: 0x51_4d_00_01,
        device_name: Hello::name_bytes("locod-sim"),
    }
}
