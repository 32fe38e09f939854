//! A software microcontroller: produces the byte stream a real board would send (Hello, IMU, depth,
//! encoders, heartbeats, pongs) with optional faults, and reacts to host messages.
//!
//! For: testing the host side without hardware, in-process (drive [`Emulator::poll`] with any clock) or
//! through a pseudo-terminal (the `bridge-emu` binary wraps this). Not for: physics; the robot stands still
//! on a flat floor, with deterministic noise from a seed.

use std::collections::VecDeque;

use crate::frame::{encode_frame, FrameDecoder, MAX_FRAME_LEN};
use crate::messages::{
    Configure, Depth, Encoders, Frame, Header, Heartbeat, Hello, HostMessage, Imu, McuMessage, Pong, MAX_ENCODERS,
};
use crate::PROTOCOL_VERSION;

/// Standard gravity, m/s².
const GRAVITY_MPS2: f32 = 9.80665;

/// Fault injection. All off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// After every N-th frame, write 1-24 random bytes (which usually corrupt the next frame).
    pub garbage_every: Option<u32>,
    /// Skip every N-th frame (its sequence number is used, so the host sees a gap).
    pub drop_every: Option<u32>,
    /// Go silent from this many host seconds after start, for [`Faults::stall_for_s`]: no frames, no
    /// sequence numbers used, pings ignored. The MCU clock keeps running.
    pub stall_after_s: Option<f64>,
    pub stall_for_s: f64,
    /// Announce `PROTOCOL_VERSION + 1` in Hello.
    pub wrong_version: bool,
    /// MCU clock rate error: +100 means the MCU clock runs 100 ppm fast.
    pub clock_drift_ppm: f64,
    /// MCU clock reading at emulator start, µs (as if the board booted that long ago).
    pub clock_offset_us: u64,
}

/// What the emulated board streams.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    pub seed: u64,
    pub imu_rate_hz: u16,
    /// Number of ToF sensors (each streams at `depth_rate_hz`, staggered).
    pub depth_sensors: u8,
    pub depth_rate_hz: u8,
    /// 4 or 8.
    pub depth_resolution: u8,
    /// Encoder channels; 0 for none.
    pub encoders: u8,
    pub encoder_rate_hz: u16,
    pub heartbeat_rate_hz: u8,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: 1,
            imu_rate_hz: 200,
            depth_sensors: 2,
            depth_rate_hz: 30,
            depth_resolution: 8,
            encoders: 0,
            encoder_rate_hz: 100,
            heartbeat_rate_hz: 10,
            faults: Faults::default(),
        }
    }
}

/// Counters of what the emulator did, for the binary's exit summary and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    pub frames_sent: u64,
    pub frames_dropped: u64,
    pub garbage_bursts: u64,
    pub pings_answered: u64,
    pub resets: u64,
}

/// Mounting of one emulated ToF sensor, looking forward and down at a flat floor.
struct TofMount {
    height_m: f64,
    pitch_down_rad: f64,
}

/// VL53L8CX field of view per axis.
const TOF_FOV_RAD: f64 = 45.0 * core::f64::consts::PI / 180.0;
const TOF_MAX_RANGE_MM: f64 = 4000.0;
const TOF_STATUS_VALID: u8 = 5;
const TOF_STATUS_NO_TARGET: u8 = 255;
const TOF_STATUS_WEAK: u8 = 12;

/// The emulated board. Host time goes in as CLOCK_MONOTONIC-like ns; any monotonic source works.
pub struct Emulator {
    config: EmulatorConfig,
    rng: SplitMix64,
    start_host_ns: u64,
    /// MCU clock reading `epoch_mcu_us` at host time `epoch_host_ns` (changes at reset).
    epoch_host_ns: u64,
    epoch_mcu_us: u64,
    seq: u16,
    /// Frames produced (sent or dropped), for the every-N faults.
    produced: u64,
    next_imu_us: u64,
    next_depth_us: Vec<u64>,
    next_encoder_us: u64,
    next_heartbeat_us: u64,
    /// Pongs and Hellos waiting for the next poll.
    replies: VecDeque<McuMessage>,
    decoder: FrameDecoder<HostMessage>,
    encoder_counts: [i32; MAX_ENCODERS],
    host_accepted: Option<bool>,
    /// Emit a lone 0x00 before the next frame (after boot), so the receiver drops any partial packet.
    pending_flush: bool,
    stats: EmulatorStats,
}

impl Emulator {
    /// A board that has just booted (clock at [`Faults::clock_offset_us`]) at host time `host_now_ns`. The
    /// first poll emits a 0x00 (flushing the receiver) and a Hello.
    pub fn new(config: EmulatorConfig, host_now_ns: u64) -> Self {
        let rng = SplitMix64(config.seed);
        let epoch_mcu_us = config.faults.clock_offset_us;
        let mut emu = Emulator {
            rng,
            start_host_ns: host_now_ns,
            epoch_host_ns: host_now_ns,
            epoch_mcu_us,
            seq: 0,
            produced: 0,
            next_imu_us: 0,
            next_depth_us: Vec::new(),
            next_encoder_us: 0,
            next_heartbeat_us: 0,
            replies: VecDeque::new(),
            decoder: FrameDecoder::new(),
            encoder_counts: [0; MAX_ENCODERS],
            host_accepted: None,
            pending_flush: true,
            stats: EmulatorStats::default(),
            config,
        };
        emu.boot(epoch_mcu_us);
        emu
    }

    pub fn stats(&self) -> EmulatorStats {
        self.stats
    }

    /// The host's verdict from its last HelloAck, if any.
    pub fn host_accepted(&self) -> Option<bool> {
        self.host_accepted
    }

    /// The MCU clock at host time `host_now_ns`.
    pub fn mcu_time_us(&self, host_now_ns: u64) -> u64 {
        let elapsed_ns = host_now_ns.saturating_sub(self.epoch_host_ns) as f64;
        let rate = 1.0 + self.config.faults.clock_drift_ppm * 1e-6;
        self.epoch_mcu_us + (elapsed_ns * rate / 1000.0) as u64
    }

    /// Bytes from the host. Pings and Hello requests are answered at the next [`Emulator::poll`].
    pub fn receive(&mut self, bytes: &[u8], host_now_ns: u64) {
        let stalled = self.stalled(host_now_ns);
        let mcu_now = self.mcu_time_us(host_now_ns);
        let messages: Vec<HostMessage> = self.decoder.feed(bytes).filter_map(|r| r.ok()).map(|f| f.message).collect();
        if stalled {
            return;
        }
        let mut reset = false;
        for message in messages {
            match message {
                HostMessage::HelloRequest { .. } => self.replies.push_back(McuMessage::Hello(hello(&self.config))),
                HostMessage::HelloAck { accepted, .. } => self.host_accepted = Some(accepted),
                HostMessage::Ping { host_time_ns } => {
                    self.replies.push_back(McuMessage::Pong(Pong { host_time_ns, mcu_rx_time_us: mcu_now }))
                }
                HostMessage::Configure(c) => self.configure(c, mcu_now),
                HostMessage::Reset => reset = true,
            }
        }
        if reset {
            self.epoch_host_ns = host_now_ns;
            self.stats.resets += 1;
            self.boot(0);
        }
    }

    /// Appends to `out` every byte due by host time `host_now_ns`.
    pub fn poll(&mut self, host_now_ns: u64, out: &mut Vec<u8>) {
        let mcu_now = self.mcu_time_us(host_now_ns);
        if self.stalled(host_now_ns) {
            self.skip_until(mcu_now);
            return;
        }
        while let Some(reply) = self.replies.pop_front() {
            if let McuMessage::Pong(_) = reply {
                self.stats.pings_answered += 1;
            }
            self.emit(mcu_now, reply, out);
        }
        loop {
            let (due_us, source) = self.next_due();
            if due_us > mcu_now {
                break;
            }
            let message = match source {
                Source::Imu => {
                    self.next_imu_us += period_us(self.config.imu_rate_hz.into());
                    McuMessage::Imu(self.imu_sample(due_us))
                }
                Source::Depth(i) => {
                    self.next_depth_us[i] += period_us(self.config.depth_rate_hz.into());
                    McuMessage::Depth(self.depth_frame(i))
                }
                Source::Encoders => {
                    self.next_encoder_us += period_us(self.config.encoder_rate_hz.into());
                    McuMessage::Encoders(self.encoders())
                }
                Source::Heartbeat => {
                    self.next_heartbeat_us += period_us(self.config.heartbeat_rate_hz.into());
                    McuMessage::Heartbeat(Heartbeat {
                        uptime_ms: (due_us / 1000) as u32,
                        rx: self.decoder.counters(),
                        tx_dropped: self.stats.frames_dropped as u32,
                        sensor_errors: 0,
                    })
                }
                Source::None => break,
            };
            self.emit(due_us, message, out);
        }
    }

    fn boot(&mut self, mcu_now_us: u64) {
        self.epoch_mcu_us = mcu_now_us;
        self.seq = 0;
        self.decoder.reset();
        self.replies.clear();
        self.replies.push_back(McuMessage::Hello(hello(&self.config)));
        self.schedule_from(mcu_now_us);
        self.pending_flush = true;
    }

    fn schedule_from(&mut self, mcu_now_us: u64) {
        self.next_imu_us = mcu_now_us;
        self.next_encoder_us = mcu_now_us;
        self.next_heartbeat_us = mcu_now_us;
        let depth_period = period_us(self.config.depth_rate_hz.into());
        let sensors = u64::from(self.config.depth_sensors.max(1));
        self.next_depth_us =
            (0..self.config.depth_sensors).map(|i| mcu_now_us + depth_period * u64::from(i) / sensors).collect();
    }

    fn configure(&mut self, c: Configure, mcu_now_us: u64) {
        self.config.imu_rate_hz = c.imu_rate_hz;
        self.config.depth_rate_hz = c.depth_rate_hz;
        if c.depth_resolution == 4 || c.depth_resolution == 8 {
            self.config.depth_resolution = c.depth_resolution;
        }
        self.config.encoder_rate_hz = c.encoder_rate_hz;
        self.config.heartbeat_rate_hz = c.heartbeat_rate_hz;
        self.schedule_from(mcu_now_us);
    }

    fn stalled(&self, host_now_ns: u64) -> bool {
        let Some(after_s) = self.config.faults.stall_after_s else {
            return false;
        };
        let t_s = host_now_ns.saturating_sub(self.start_host_ns) as f64 * 1e-9;
        t_s >= after_s && t_s < after_s + self.config.faults.stall_for_s
    }

    fn skip_until(&mut self, mcu_now_us: u64) {
        self.replies.retain(|m| !matches!(m, McuMessage::Pong(_)));
        let skip = |next: &mut u64, rate_hz: u64| {
            while rate_hz > 0 && *next <= mcu_now_us {
                *next += period_us(rate_hz);
            }
        };
        skip(&mut self.next_imu_us, self.config.imu_rate_hz.into());
        skip(&mut self.next_encoder_us, self.config.encoder_rate_hz.into());
        skip(&mut self.next_heartbeat_us, self.config.heartbeat_rate_hz.into());
        for next in &mut self.next_depth_us {
            skip(next, self.config.depth_rate_hz.into());
        }
    }

    fn next_due(&self) -> (u64, Source) {
        let mut best = (u64::MAX, Source::None);
        let mut consider = |due: u64, rate: u64, source: Source| {
            if rate > 0 && due < best.0 {
                best = (due, source);
            }
        };
        consider(self.next_imu_us, self.config.imu_rate_hz.into(), Source::Imu);
        for (i, &due) in self.next_depth_us.iter().enumerate() {
            consider(due, self.config.depth_rate_hz.into(), Source::Depth(i));
        }
        if self.config.encoders > 0 {
            consider(self.next_encoder_us, self.config.encoder_rate_hz.into(), Source::Encoders);
        }
        consider(self.next_heartbeat_us, self.config.heartbeat_rate_hz.into(), Source::Heartbeat);
        best
    }

    fn emit(&mut self, time_us: u64, message: McuMessage, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_flush) {
            out.push(0);
        }
        let header = Header { seq: self.seq, time_us };
        self.seq = self.seq.wrapping_add(1);
        self.produced += 1;
        let every = |n: Option<u32>| n.is_some_and(|n| n > 0 && self.produced % u64::from(n) == 0);
        let (drop, garbage) = (every(self.config.faults.drop_every), every(self.config.faults.garbage_every));
        if drop {
            self.stats.frames_dropped += 1;
        } else {
            let mut buf = [0u8; MAX_FRAME_LEN];
            match encode_frame(&Frame { header, message }, &mut buf) {
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    self.stats.frames_sent += 1;
                }
                // Every McuMessage fits MAX_FRAME_LEN (a test pins this); count rather than panic.
                Err(_) => self.stats.frames_dropped += 1,
            }
        }
        if garbage {
            self.stats.garbage_bursts += 1;
            let len = 1 + self.rng.below(24);
            out.extend((0..len).map(|_| self.rng.next() as u8));
        }
    }

    fn imu_sample(&mut self, mcu_time_us: u64) -> Imu {
        let r = &mut self.rng;
        let accel_sigma = 0.02;
        let gyro_sigma = 0.002;
        let tilt = [r.gaussian() * 1e-4, r.gaussian() * 1e-4, r.gaussian() * 1e-4];
        let norm = (1.0 + tilt.iter().map(|t| t * t).sum::<f64>()).sqrt();
        // The die warms slowly from 30 °C towards 40 °C.
        let warm_s = mcu_time_us as f64 * 1e-6;
        let temperature_c = 40.0 - 10.0 * (-warm_s / 600.0).exp() + r.gaussian() * 0.05;
        Imu {
            accel_mps2: [
                (r.gaussian() * accel_sigma) as f32,
                (r.gaussian() * accel_sigma) as f32,
                GRAVITY_MPS2 + (r.gaussian() * accel_sigma) as f32,
            ],
            gyro_radps: [
                (0.001 + r.gaussian() * gyro_sigma) as f32,
                (-0.0005 + r.gaussian() * gyro_sigma) as f32,
                (r.gaussian() * gyro_sigma) as f32,
            ],
            quat_wxyz: Some([
                (1.0 / norm) as f32,
                (tilt[0] / norm) as f32,
                (tilt[1] / norm) as f32,
                (tilt[2] / norm) as f32,
            ]),
            temperature_c: temperature_c as f32,
        }
    }

    /// Sensor `i` sees a flat floor: sensor 0 at 0.30 m pitched 35° down, sensor 1 at 0.25 m pitched 60°
    /// down (others repeat the pattern). Each zone's centre ray is intersected with the floor.
    fn depth_frame(&mut self, sensor: usize) -> Depth {
        let mount = if sensor % 2 == 0 {
            TofMount { height_m: 0.30, pitch_down_rad: 35f64.to_radians() }
        } else {
            TofMount { height_m: 0.25, pitch_down_rad: 60f64.to_radians() }
        };
        let n = self.config.depth_resolution;
        let mut frame = Depth::empty(sensor as u8, n, n);
        let (sin_p, cos_p) = mount.pitch_down_rad.sin_cos();
        for r in 0..n as usize {
            for c in 0..n as usize {
                let zone = |k: usize| ((k as f64 + 0.5) / f64::from(n) - 0.5) * TOF_FOV_RAD;
                // Sensor frame: x forward, y left, z up; row 0 at the top.
                let (x, y, z) = (1.0, -zone(c).tan(), -zone(r).tan());
                let len = (x * x + y * y + z * z).sqrt();
                let down = (x * sin_p - z * cos_p) / len;
                let i = r * n as usize + c;
                let range_mm = if down > 1e-6 { mount.height_m / down * 1000.0 } else { f64::INFINITY };
                if range_mm > TOF_MAX_RANGE_MM {
                    frame.status[i] = TOF_STATUS_NO_TARGET;
                } else if self.rng.below(100) == 0 {
                    frame.status[i] = TOF_STATUS_WEAK;
                    frame.distance_mm[i] = range_mm as u16;
                } else {
                    let noisy = range_mm + self.rng.gaussian() * (3.0 + 0.005 * range_mm);
                    frame.status[i] = TOF_STATUS_VALID;
                    frame.distance_mm[i] = noisy.clamp(0.0, TOF_MAX_RANGE_MM) as u16;
                }
            }
        }
        frame
    }

    fn encoders(&mut self) -> Encoders {
        let len = usize::from(self.config.encoders).min(MAX_ENCODERS);
        // Standing still: a count flickers by one now and then.
        for count in &mut self.encoder_counts[..len] {
            if self.rng.below(50) == 0 {
                *count += if self.rng.below(2) == 0 { 1 } else { -1 };
            }
        }
        Encoders { len: len as u8, counts: self.encoder_counts }
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Imu,
    Depth(usize),
    Encoders,
    Heartbeat,
    None,
}

/// Period of a stream at `rate_hz`; a disabled (0 Hz) stream is never due.
fn period_us(rate_hz: u64) -> u64 {
    1_000_000u64.checked_div(rate_hz).map_or(u64::MAX / 4, |p| p.max(1))
}

fn hello(config: &EmulatorConfig) -> Hello {
    let protocol_version =
        if config.faults.wrong_version { PROTOCOL_VERSION.wrapping_add(1) } else { PROTOCOL_VERSION };
    Hello {
        protocol_version,
        firmware_version: [0, 1, 0],
        device_id: 0xE4E4_0000_0000_0000 | (config.seed & 0xFFFF_FFFF),
        device_name: Hello::name_bytes("bridge-emu"),
    }
}

/// Small deterministic generator (SplitMix64); statistical quality is ample for sensor noise.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * core::f64::consts::PI * v).cos()
    }
}
