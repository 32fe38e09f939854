//! IMU samples into the body frame: the mounting rotation, the choice between the device's
//! orientation and the Mahony filter, the publisher that hands samples to their readers, and the
//! WitMotion receive thread.
//!
//! Timestamps are CLOCK_MONOTONIC at the arrival of the bytes that completed a sample (the
//! bridge passes its time-synced MCU time instead). After start the receive thread allocates
//! nothing. Not for: parsing (`witmotion`), the bridge link (`bridge`), judging staleness.

use super::sensors::SensorStats;
use super::serial::{LinkEvent, ReconnectingPort};
use super::witmotion::{self, WitAccumulator, WitParser};
use super::ImuSample;
use crate::config::{self, OrientationSource};
use crate::estimate::mahony::{quat_from_wxyz, quat_to_wxyz, Mahony};
use crate::rt::clock::monotonic_ns;
use crate::rt::triple::Writer;
use nalgebra::{UnitQuaternion, Vector3};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a receive thread waits for bytes before checking its stop flag.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// The rotation from the IMU's axes to the body's (`[imu] mounting_rpy_deg`).
#[derive(Clone, Copy, Debug)]
pub struct Mounting {
    body_from_imu: UnitQuaternion<f64>,
}

impl Mounting {
    pub fn from_rpy_deg(rpy_deg: [f64; 3]) -> Self {
        let [r, p, y] = rpy_deg.map(f64::to_radians);
        Self { body_from_imu: UnitQuaternion::from_euler_angles(r, p, y) }
    }

    /// A vector measured in the IMU's axes, in the body's.
    pub fn to_body(&self, v_imu: [f64; 3]) -> [f64; 3] {
        (self.body_from_imu * Vector3::from(v_imu)).into()
    }

    /// The body's orientation in the world, from the IMU's (both [w, x, y, z]).
    pub fn body_orientation(&self, quat_world_imu_wxyz: [f64; 4]) -> [f64; 4] {
        quat_to_wxyz(&(quat_from_wxyz(quat_world_imu_wxyz) * self.body_from_imu.inverse()))
    }
}

/// Raw IMU readings → a body-frame `ImuSample` with an orientation.
#[derive(Clone, Debug)]
pub struct ImuFilter {
    mounting: Mounting,
    source: OrientationSource,
    mahony: Mahony,
}

impl ImuFilter {
    pub fn new(config: &config::Imu) -> Self {
        let [kp, ki] = config.filter_gains;
        Self {
            mounting: Mounting::from_rpy_deg(config.mounting_rpy_deg),
            source: config.orientation,
            mahony: Mahony::new(kp, ki),
        }
    }

    /// Forgets the filter's state (the device restarted).
    pub fn reset(&mut self) {
        self.mahony.reset();
    }

    /// The latest body orientation.
    pub fn quat_wxyz(&self) -> [f64; 4] {
        self.mahony.quat_wxyz()
    }

    /// One sample in the IMU's axes. `device_quat_wxyz` is used when the configuration says
    /// `orientation = "device"` and the device sent one; otherwise Mahony integrates `dt_s`.
    pub fn sample(
        &mut self,
        accel_imu_mps2: [f64; 3],
        gyro_imu_radps: [f64; 3],
        device_quat_wxyz: Option<[f64; 4]>,
        dt_s: f64,
        t_ns: u64,
    ) -> ImuSample {
        let accel_body_mps2 = self.mounting.to_body(accel_imu_mps2);
        let gyro_body_radps = self.mounting.to_body(gyro_imu_radps);
        let filtered = self.mahony.update(gyro_body_radps, accel_body_mps2, dt_s);
        let quat_wxyz = match (self.source, device_quat_wxyz) {
            (OrientationSource::Device, Some(q)) => self.mounting.body_orientation(q),
            _ => filtered,
        };
        ImuSample { quat_wxyz, gyro_body_radps, accel_body_mps2, t_ns }
    }
}

/// Hands each sample to the control loop's reader and, optionally, to a second one (the depth
/// mapper's attitude).
pub struct ImuPublisher {
    control: Writer<ImuSample>,
    second: Option<Writer<ImuSample>>,
}

impl ImuPublisher {
    pub fn new(control: Writer<ImuSample>, second: Option<Writer<ImuSample>>) -> Self {
        Self { control, second }
    }

    pub fn publish(&mut self, sample: ImuSample) {
        self.control.write(sample);
        if let Some(w) = &mut self.second {
            w.write(sample);
        }
    }
}

/// The WitMotion receive loop's state: port, parser, accumulator, filter, publisher.
pub struct WitmotionReceiver {
    port: ReconnectingPort,
    parser: WitParser,
    accumulator: WitAccumulator,
    filter: ImuFilter,
    publisher: ImuPublisher,
    stats: Arc<SensorStats>,
    last_sample_ns: u64,
    buf: [u8; 512],
}

impl WitmotionReceiver {
    pub fn new(config: &config::Imu, publisher: ImuPublisher, stats: Arc<SensorStats>) -> Result<Self, String> {
        let port = config.port.as_deref().ok_or("a witmotion IMU needs [imu] port")?;
        Ok(Self {
            port: ReconnectingPort::new(port, config.baud),
            parser: WitParser::new(),
            // The WT901's default output includes 0x53 (angles) every period; the filter ignores
            // them but they mark a complete sample.
            accumulator: WitAccumulator::new(witmotion::OrientationSource::Angle),
            filter: ImuFilter::new(config),
            publisher,
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
        let (parser, accumulator, filter, publisher) =
            (&mut self.parser, &mut self.accumulator, &mut self.filter, &mut self.publisher);
        for msg in parser.parse(&self.buf[..n]) {
            let Some(s) = accumulator.push(&msg) else { continue };
            let dt_s = if self.last_sample_ns == 0 { 0.0 } else { (arrival_ns - self.last_sample_ns) as f64 * 1e-9 };
            self.last_sample_ns = arrival_ns;
            let device_quat = s.quat_wxyz.map(|q| q.map(f64::from)).or_else(|| {
                s.angle_rad.map(|[r, p, y]| {
                    quat_to_wxyz(&UnitQuaternion::from_euler_angles(f64::from(r), f64::from(p), f64::from(y)))
                })
            });
            let sample = filter.sample(
                s.accel_imu_mps2.map(f64::from),
                s.ang_vel_imu_radps.map(f64::from),
                device_quat,
                dt_s,
                arrival_ns,
            );
            publisher.publish(sample);
            self.stats.imu.samples.fetch_add(1, Relaxed);
        }
        let imu = &self.stats.imu;
        imu.frames.store(self.parser.frames(), Relaxed);
        imu.checksum_errors.store(self.parser.checksum_errors(), Relaxed);
        imu.skipped_bytes.store(self.parser.skipped_bytes(), Relaxed);
        imu.incomplete_sets.store(self.accumulator.incomplete_sets(), Relaxed);
    }
}

/// Runs `receiver` on its own thread until `stop` is set.
pub fn spawn_witmotion(
    mut receiver: WitmotionReceiver,
    stop: Arc<AtomicBool>,
    rt: crate::rt::thread::RtSpec,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("locod-imu".into())
        .spawn(move || {
            // Sensor arrivals are stamped here: run just below the control thread, like the CAN
            // receive threads, so that ordinary load cannot make fresh samples look stale.
            crate::rt::thread::apply(rt);
            while !stop.load(Relaxed) {
                receiver.step(POLL_TIMEOUT);
            }
        })
        .map_err(|e| format!("cannot start the IMU thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounting_rotates_vectors_and_orientation_into_the_body() {
        // IMU mounted upside down (rolled 180° about x): its z reads -g when the body is level.
        let m = Mounting::from_rpy_deg([180.0, 0.0, 0.0]);
        let a = m.to_body([0.0, 0.0, -9.8]);
        assert!((a[2] - 9.8).abs() < 1e-12 && a[0].abs() < 1e-12 && a[1].abs() < 1e-12);
        // The device reports itself rolled 180° while the body is level.
        let q_world_imu = quat_to_wxyz(&UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0));
        let q = quat_from_wxyz(m.body_orientation(q_world_imu));
        assert!(q.angle() < 1e-12, "{q:?}");
    }

    #[test]
    fn device_orientation_or_filter_as_configured() {
        let mut cfg = config::Imu {
            kind: config::ImuKind::Witmotion,
            port: Some("/dev/null".into()),
            baud: 115_200,
            mounting_rpy_deg: [0.0, 0.0, 90.0],
            orientation: OrientationSource::Device,
            filter_gains: [1.0, 0.0],
        };
        let device = quat_to_wxyz(&UnitQuaternion::from_euler_angles(0.0, 0.0, 0.5));
        let mut f = ImuFilter::new(&cfg);
        let s = f.sample([1.0, 0.0, 9.8], [0.1, 0.0, 0.0], Some(device), 0.0, 7);
        // Mounting yawed 90°: IMU x is body y.
        assert!((s.accel_body_mps2[1] - 1.0).abs() < 1e-12 && (s.gyro_body_radps[1] - 0.1).abs() < 1e-12);
        let yaw = UnitQuaternion::from_euler_angles(0.0, 0.0, 0.5 - std::f64::consts::FRAC_PI_2);
        assert!(quat_from_wxyz(s.quat_wxyz).angle_to(&yaw) < 1e-12);
        assert_eq!(s.t_ns, 7);
        cfg.orientation = OrientationSource::Filter;
        let mut f = ImuFilter::new(&cfg);
        let s = f.sample([0.0, 0.0, 9.8], [0.0; 3], Some(device), 0.0, 8);
        assert_eq!(s.quat_wxyz, [1.0, 0.0, 0.0, 0.0]);
    }
}
