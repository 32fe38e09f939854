//! The firmware-bridge link thread: the serial port to the sensor microcontroller, the
//! handshake, time sync, and turning its frames into raw IMU and depth readings for a `SensorSink`.
//!
//! On every (re)connect the host sends `HelloRequest`; the board's `Hello` must carry our
//! `PROTOCOL_VERSION`, otherwise the board is refused (one error that names both versions, its
//! data ignored, the state in `BridgeStats`). While streaming, the host pings every
//! `ping_interval_ms`; `TimeSync` maps MCU µs to CLOCK_MONOTONIC. Sample timestamps are that
//! mapped acquisition time once the estimator has `CONVERGED_EXCHANGES` exchanges (never later
//! than arrival), the arrival time before. IMU frames become `RawImu` readings and depth frames
//! `DepthZones`, delivered to the sink (the robot assembly composes it with the estimators).
//! Bad bytes, lost frames and a vanished device are counted, never fatal. After start the loop
//! allocates nothing (messages to people aside: handshakes and board faults).
//!
//! Not for: the wire format (`firmware_bridge`), mounting, filtering and geometry (`estimate`).

use super::stats::{BridgeStats, SensorStats};
use super::witmotion_imu::POLL_TIMEOUT;
use crate::config;
use crate::io::transport::serial::{LinkEvent, ReconnectingPort};
use crate::report;
use crate::rt::clock::{monotonic_ns, NS_PER_MS};
use crate::rt::thread::{self, RtSpec, Setup, SpawnError};
use crate::types::terrain::{DepthZones, MAX_ZONES};
use crate::types::{Delivery, RawImu, SensorSink};
use firmware_bridge::timesync::{Exchange, TimeSync, BUCKETS};
use firmware_bridge::{
    encode_frame, DecodeError, Depth, Frame, FrameDecoder, Header, Hello, HostMessage, McuFrame, McuMessage,
    SeqTracker, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Exchanges before sample timestamps switch from arrival time to mapped MCU time: one per group
/// of the estimator's window, so the minimum-RTT selection has something to choose from.
pub(crate) const CONVERGED_EXCHANGES: usize = BUCKETS;

/// How often a `HelloRequest` is repeated while the board has not answered.
const HELLO_RETRY_NS: u64 = 500 * NS_PER_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// No port open.
    Disconnected = 0,
    /// Port open, `HelloRequest` sent, no `Hello` yet.
    AwaitingHello = 1,
    /// Versions agree; data is used.
    Streaming = 2,
    /// The board speaks another protocol version; its data is ignored.
    Refused = 3,
}

impl LinkState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => LinkState::AwaitingHello,
            2 => LinkState::Streaming,
            3 => LinkState::Refused,
            _ => LinkState::Disconnected,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkState::Disconnected => "disconnected",
            LinkState::AwaitingHello => "awaiting hello",
            LinkState::Streaming => "streaming",
            LinkState::Refused => "refused (protocol version)",
        }
    }
}

/// Timing of the newest IMU sample, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImuTiming {
    /// The board's acquisition time.
    pub mcu_time_us: u64,
    /// When its bytes arrived here.
    pub arrival_ns: u64,
    /// The timestamp published (`t_ns`).
    pub t_ns: u64,
    /// The time-sync error bound at `mcu_time_us` when `t_ns` is the mapped time.
    pub bound_ns: Option<u64>,
}

/// One link's state. `step` is the whole receive loop's body; `spawn` runs it on a thread.
pub struct BridgeLink<S: SensorSink> {
    port: ReconnectingPort,
    ping_interval_ns: u64,
    state: LinkState,
    decoder: FrameDecoder<McuMessage>,
    seq: SeqTracker,
    host_seq: u16,
    timesync: TimeSync,
    next_ping_ns: u64,
    next_hello_ns: u64,
    last_imu_mcu_us: Option<u64>,
    last_imu: Option<ImuTiming>,
    last_exchange: Option<Exchange>,
    sink: S,
    /// The depth reading being decoded (kept here: 340 bytes, reused).
    zones: DepthZones,
    stats: Arc<SensorStats>,
    rx: [u8; 1024],
}

impl<S: SensorSink> BridgeLink<S> {
    /// A link whose readings go to `sink` (the robot assembly's estimators).
    pub fn new(config: &config::Bridge, sink: S, stats: Arc<SensorStats>) -> Self {
        Self {
            port: ReconnectingPort::new(&config.port, config.baud),
            ping_interval_ns: (config.ping_interval_ms * NS_PER_MS as f64) as u64,
            state: LinkState::Disconnected,
            decoder: FrameDecoder::new(),
            seq: SeqTracker::new(),
            host_seq: 0,
            timesync: TimeSync::new(),
            next_ping_ns: 0,
            next_hello_ns: 0,
            last_imu_mcu_us: None,
            last_imu: None,
            last_exchange: None,
            sink,
            zones: DepthZones::default(),
            stats,
            rx: [0; 1024],
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn last_imu_timing(&self) -> Option<ImuTiming> {
        self.last_imu
    }

    /// The newest ping/pong exchange time sync used.
    pub fn last_exchange(&self) -> Option<Exchange> {
        self.last_exchange
    }

    pub fn timesync(&self) -> &TimeSync {
        &self.timesync
    }

    fn bridge(&self) -> &BridgeStats {
        &self.stats.bridge
    }

    fn set_state(&mut self, state: LinkState) {
        self.state = state;
        self.stats.bridge.state.store(state as u8, Relaxed);
    }

    /// Waits up to `timeout` for bytes, handles them, and sends what is due (hello, ping).
    pub fn step(&mut self, timeout: Duration) {
        let now = monotonic_ns();
        match self.state {
            LinkState::AwaitingHello if now >= self.next_hello_ns => self.send_hello_request(now),
            LinkState::Streaming if now >= self.next_ping_ns => {
                self.next_ping_ns = now + self.ping_interval_ns;
                let t0 = monotonic_ns();
                if self.send(HostMessage::Ping { host_time_ns: t0 }, t0) {
                    self.stats.bridge.pings_sent.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
        let wait = match self.state {
            LinkState::Streaming => {
                let until_ping = self.next_ping_ns.saturating_sub(monotonic_ns());
                timeout.min(Duration::from_nanos(until_ping))
            }
            _ => timeout,
        };
        match self.port.read(&mut self.rx, wait) {
            LinkEvent::Idle => {}
            LinkEvent::Connected => {
                self.bridge().connects.fetch_add(1, Relaxed);
                self.decoder.reset();
                self.set_state(LinkState::AwaitingHello);
                self.send_hello_request(monotonic_ns());
            }
            LinkEvent::Disconnected => {
                self.bridge().disconnects.fetch_add(1, Relaxed);
                self.set_state(LinkState::Disconnected);
                self.stats.bridge.timesync_converged.store(false, Relaxed);
            }
            LinkEvent::Data(n) => {
                let chunk = self.rx;
                self.handle_bytes(&chunk[..n], monotonic_ns());
            }
        }
    }

    /// Decodes `bytes` that arrived at `arrival_ns` and acts on every frame they complete.
    pub fn handle_bytes(&mut self, bytes: &[u8], arrival_ns: u64) {
        for &byte in bytes {
            if let Some(result) = self.decoder.push_byte(byte) {
                match result {
                    Ok(frame) => self.on_frame(frame, arrival_ns),
                    Err(e) => self.on_decode_error(&e),
                }
            }
        }
    }

    fn send_hello_request(&mut self, now: u64) {
        self.next_hello_ns = now + HELLO_RETRY_NS;
        // A lone 0x00 first makes the board drop any partial packet.
        if let Some(port) = self.port.port() {
            let _ = port.write_nonblocking(&[0]);
        }
        self.send(HostMessage::HelloRequest { protocol_version: PROTOCOL_VERSION }, now);
    }

    /// Sends one frame without waiting; `false` when it did not go out whole.
    fn send(&mut self, message: HostMessage, now_ns: u64) -> bool {
        let Some(port) = self.port.port() else { return false };
        let frame = Frame { header: Header { seq: self.host_seq, time_us: now_ns / 1000 }, message };
        self.host_seq = self.host_seq.wrapping_add(1);
        let mut buf = [0u8; MAX_FRAME_LEN];
        let Ok(len) = encode_frame(&frame, &mut buf) else { return false };
        matches!(port.write_nonblocking(&buf[..len]), Ok(n) if n == len)
    }

    fn on_decode_error(&self, e: &DecodeError) {
        let b = self.bridge();
        let counter = match e {
            DecodeError::Cobs(_) | DecodeError::TooShort { .. } => &b.cobs_errors,
            DecodeError::Crc { .. } => &b.crc_errors,
            DecodeError::Postcard(_) | DecodeError::TrailingBytes { .. } => &b.postcard_errors,
            DecodeError::Overflow { .. } => &b.overflows,
        };
        counter.fetch_add(1, Relaxed);
    }

    fn on_frame(&mut self, frame: McuFrame, arrival_ns: u64) {
        let kind = match frame.message {
            McuMessage::Hello(_) => 0,
            McuMessage::Imu(_) => 1,
            McuMessage::Depth(_) => 2,
            McuMessage::Encoders(_) => 3,
            McuMessage::Heartbeat(_) => 4,
            McuMessage::Pong(_) => 5,
            McuMessage::Fault(_) => 6,
        };
        self.bridge().messages[kind].fetch_add(1, Relaxed);
        if let McuMessage::Hello(hello) = frame.message {
            self.on_hello(&hello, frame.header.seq);
            return;
        }
        if self.state != LinkState::Streaming {
            self.bridge().ignored.fetch_add(1, Relaxed);
            return;
        }
        let dropped = self.seq.observe(frame.header.seq);
        self.bridge().seq_dropped.fetch_add(u64::from(dropped), Relaxed);
        self.bridge().seq_resyncs.store(self.seq.resyncs(), Relaxed);
        let mcu_us = frame.header.time_us;
        match frame.message {
            McuMessage::Imu(imu) => self.on_imu(&imu, mcu_us, arrival_ns),
            McuMessage::Depth(depth) => self.on_depth(&depth, mcu_us, arrival_ns),
            McuMessage::Pong(pong) => {
                let exchange = Exchange {
                    host_send_ns: pong.host_time_ns,
                    mcu_rx_us: pong.mcu_rx_time_us,
                    mcu_tx_us: mcu_us,
                    host_recv_ns: arrival_ns,
                };
                // A pong for a ping sent before a reconnect, or a rebooted board, is not used
                // (a reboot also restarts the window, which the next Hello does anyway).
                if self.timesync.add_exchange(exchange).is_ok() {
                    self.last_exchange = Some(exchange);
                    self.publish_timesync(mcu_us);
                }
            }
            McuMessage::Fault(f) => {
                let previous = self.bridge().last_fault_code.swap(u32::from(f.code), Relaxed);
                if previous != u32::from(f.code) {
                    report::warn(format!(
                        "firmware bridge on {}: the board reports fault {} (detail {:#x})",
                        self.port.path(),
                        f.code,
                        f.detail
                    ));
                }
            }
            McuMessage::Hello(_) | McuMessage::Encoders(_) | McuMessage::Heartbeat(_) => {}
        }
    }

    fn on_hello(&mut self, hello: &Hello, seq: u16) {
        let b = &self.stats.bridge;
        b.board_protocol_version.store(u32::from(hello.protocol_version), Relaxed);
        let [major, minor, patch] = hello.firmware_version.map(u32::from);
        b.firmware_version.store(major << 16 | minor << 8 | patch, Relaxed);
        let accepted = hello.protocol_version == PROTOCOL_VERSION;
        let was = self.state;
        if accepted {
            // The board may have rebooted: its sequence and clock restart.
            self.seq.restart();
            self.seq.observe(seq);
            self.timesync.reset();
            self.last_imu_mcu_us = None;
            b.timesync_converged.store(false, Relaxed);
            self.sink.restart();
            self.set_state(LinkState::Streaming);
            self.next_ping_ns = 0;
            if was != LinkState::Streaming {
                report::info(format!(
                    "firmware bridge on {}: board {:?} firmware {major}.{minor}.{patch}, protocol {}",
                    self.port.path(),
                    hello.name().unwrap_or("?"),
                    hello.protocol_version
                ));
            }
        } else {
            b.version_mismatches.fetch_add(1, Relaxed);
            self.set_state(LinkState::Refused);
            if was != LinkState::Refused {
                report::error(format!(
                    "firmware bridge on {}: the board speaks protocol version {}, this locod speaks version {}; \
                     its data is ignored. Flash the board with firmware built from this locod's firmware-bridge \
                     crate (protocol {}), or run the locod that matches the firmware",
                    self.port.path(),
                    hello.protocol_version,
                    PROTOCOL_VERSION,
                    PROTOCOL_VERSION
                ));
            }
        }
        let ack = HostMessage::HelloAck { protocol_version: PROTOCOL_VERSION, accepted };
        self.send(ack, monotonic_ns());
    }

    fn publish_timesync(&self, mcu_us: u64) {
        let b = self.bridge();
        b.timesync_exchanges.fetch_add(1, Relaxed);
        if let (Some(host_ns), Some(bound_ns)) = (self.timesync.to_host_ns(mcu_us), self.timesync.error_bound_ns()) {
            b.timesync_offset_ns.store(host_ns as i64 - (mcu_us as i64).saturating_mul(1000), Relaxed);
            b.timesync_bound_ns.store(bound_ns.max(1), Relaxed);
        }
        if let Some(skew) = self.timesync.skew_ppm() {
            b.timesync_skew_ppb.store((skew * 1e3).round() as i64, Relaxed);
        }
        b.timesync_converged.store(self.timesync.len() >= CONVERGED_EXCHANGES, Relaxed);
    }

    /// The host time of an MCU timestamp: mapped once time sync has converged (and never after the
    /// arrival), the arrival time before.
    fn sample_time(&self, mcu_us: u64, arrival_ns: u64) -> (u64, Option<u64>) {
        if self.timesync.len() < CONVERGED_EXCHANGES {
            return (arrival_ns, None);
        }
        match self.timesync.to_host_ns(mcu_us) {
            Some(t) => (t.min(arrival_ns), self.timesync.error_bound_at_ns(mcu_us)),
            None => (arrival_ns, None),
        }
    }

    fn on_imu(&mut self, imu: &firmware_bridge::Imu, mcu_us: u64, arrival_ns: u64) {
        let (t_ns, bound_ns) = self.sample_time(mcu_us, arrival_ns);
        let dt_s = match self.last_imu_mcu_us {
            Some(last) if mcu_us > last => (mcu_us - last) as f64 * 1e-6,
            _ => 0.0,
        };
        self.last_imu_mcu_us = Some(mcu_us);
        let raw = RawImu {
            accel_imu_mps2: imu.accel_mps2.map(f64::from),
            gyro_imu_radps: imu.gyro_radps.map(f64::from),
            device_quat_wxyz: imu.quat_wxyz.map(|q| q.map(f64::from)),
            dt_s,
            t_ns,
        };
        if self.sink.imu(&raw) != Delivery::Used {
            return;
        }
        self.stats.imu.samples.fetch_add(1, Relaxed);
        self.last_imu = Some(ImuTiming { mcu_time_us: mcu_us, arrival_ns, t_ns, bound_ns });
    }

    fn on_depth(&mut self, depth: &Depth, mcu_us: u64, arrival_ns: u64) {
        let (t_ns, _) = self.sample_time(mcu_us, arrival_ns);
        depth_zones(depth, t_ns, &mut self.zones);
        if self.sink.depth(depth.sensor, &self.zones) == Delivery::UnknownSensor {
            self.stats.bridge.unknown_sensor.fetch_add(1, Relaxed);
        }
    }
}

/// A depth frame as `DepthZones` measured at `t_ns`: distances in metres, zones the sensor did not
/// report as valid marked invalid. Allocation-free.
pub(crate) fn depth_zones(depth: &Depth, t_ns: u64, zones: &mut DepthZones) {
    zones.t_ns = t_ns;
    zones.zones = depth.zone_count() as u8;
    for i in 0..MAX_ZONES {
        match depth.zone_valid(i) {
            Some(mm) => {
                zones.distance_m[i] = f32::from(mm) * 1e-3;
                zones.valid[i] = true;
            }
            None => {
                zones.distance_m[i] = f32::from(depth.distance_mm[i]) * 1e-3;
                zones.valid[i] = false;
            }
        }
    }
}

/// Runs `link` on its own thread until `stop` is set.
pub fn spawn<S: SensorSink + 'static>(
    mut link: BridgeLink<S>,
    stop: Arc<AtomicBool>,
    rt: RtSpec,
) -> Result<JoinHandle<()>, SpawnError> {
    // Sensor arrivals are stamped here: run just below the control thread, like the CAN receive
    // threads, so that ordinary load cannot make fresh samples look stale.
    thread::spawn("locod-bridge", "firmware-bridge", Setup::Rt(rt), move |_| {
        while !stop.load(Relaxed) {
            link.step(POLL_TIMEOUT);
        }
    })
}
