//! The WitMotion IMU's receive thread: port, parser and accumulator, delivering each complete
//! reading raw (IMU axes) to a `SensorSink`, which the robot assembly composes with the filter.
//!
//! Timestamps are CLOCK_MONOTONIC at the arrival of the bytes that completed a sample (the
//! bridge passes its time-synced MCU time instead). After start the receive thread allocates
//! nothing. Not for: parsing (`witmotion`), the bridge link (`bridge`), mounting and filtering
//! (`estimate::imu`), judging staleness.

use super::stats::SensorStats;
use crate::config;
use crate::io::protocol::witmotion::{self, WitAccumulator, WitParser};
use crate::io::transport::serial::{LinkEvent, ReconnectingPort};
use crate::rt::clock::monotonic_ns;
use crate::rt::thread::{self, RtSpec, Setup, SpawnError};
use crate::types::{Delivery, RawImu, SensorSink};
use nalgebra::UnitQuaternion;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a receive thread waits for bytes before checking its stop flag.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// The WitMotion receive loop's state: port, parser, accumulator, and where readings go.
pub(crate) struct WitmotionReceiver<S: SensorSink> {
    port: ReconnectingPort,
    parser: WitParser,
    accumulator: WitAccumulator,
    sink: S,
    stats: Arc<SensorStats>,
    last_sample_ns: u64,
    buf: [u8; 512],
}

impl<S: SensorSink> WitmotionReceiver<S> {
    pub fn new(config: &config::Imu, sink: S, stats: Arc<SensorStats>) -> Result<Self, String> {
        let port = config.port.as_deref().ok_or("a witmotion IMU needs [imu] port")?;
        Ok(Self {
            port: ReconnectingPort::new(port, config.baud),
            parser: WitParser::new(),
            // The WT901's default output includes 0x53 (angles) every period; the filter ignores
            // them but they mark a complete sample.
            accumulator: WitAccumulator::new(witmotion::OrientationSource::Angle),
            sink,
            stats,
            last_sample_ns: 0,
            buf: [0; 512],
        })
    }

    /// Waits up to `timeout` for bytes and publishes the samples they complete.
    pub fn step(&mut self, timeout: Duration) {
        let n = match self.port.read(&mut self.buf, timeout) {
            LinkEvent::Data(n) => n,
            LinkEvent::Idle => return,
            LinkEvent::Connected => {
                self.stats.imu.connects.fetch_add(1, Relaxed);
                self.stats.imu.connected.store(true, Relaxed);
                self.accumulator.reset();
                return;
            }
            LinkEvent::Disconnected => {
                self.stats.imu.disconnects.fetch_add(1, Relaxed);
                self.stats.imu.connected.store(false, Relaxed);
                self.accumulator.reset();
                return;
            }
        };
        let arrival_ns = monotonic_ns();
        let (parser, accumulator, sink) = (&mut self.parser, &mut self.accumulator, &mut self.sink);
        for msg in parser.parse(&self.buf[..n]) {
            let Some(s) = accumulator.push(&msg) else { continue };
            let dt_s = if self.last_sample_ns == 0 { 0.0 } else { (arrival_ns - self.last_sample_ns) as f64 * 1e-9 };
            self.last_sample_ns = arrival_ns;
            let device_quat = s.quat_wxyz.map(|q| q.map(f64::from)).or_else(|| {
                s.angle_rad.map(|[r, p, y]| {
                    let q = UnitQuaternion::from_euler_angles(f64::from(r), f64::from(p), f64::from(y));
                    [q.w, q.i, q.j, q.k]
                })
            });
            let raw = RawImu {
                accel_imu_mps2: s.accel_imu_mps2.map(f64::from),
                gyro_imu_radps: s.ang_vel_imu_radps.map(f64::from),
                device_quat_wxyz: device_quat,
                dt_s,
                t_ns: arrival_ns,
            };
            if sink.imu(&raw) == Delivery::Used {
                self.stats.imu.samples.fetch_add(1, Relaxed);
            }
        }
        let imu = &self.stats.imu;
        imu.frames.store(self.parser.frames(), Relaxed);
        imu.checksum_errors.store(self.parser.checksum_errors(), Relaxed);
        imu.skipped_bytes.store(self.parser.skipped_bytes(), Relaxed);
        imu.incomplete_sets.store(self.accumulator.incomplete_sets(), Relaxed);
    }
}

/// Runs `receiver` on its own thread until `stop` is set.
pub(crate) fn spawn_witmotion<S: SensorSink + 'static>(
    mut receiver: WitmotionReceiver<S>,
    stop: Arc<AtomicBool>,
    rt: RtSpec,
) -> Result<JoinHandle<()>, SpawnError> {
    // Sensor arrivals are stamped here: run just below the control thread, like the CAN receive
    // threads, so that ordinary load cannot make fresh samples look stale.
    thread::spawn("locod-imu", "IMU", Setup::Rt(rt), move |_| {
        while !stop.load(Relaxed) {
            receiver.step(POLL_TIMEOUT);
        }
    })
}
