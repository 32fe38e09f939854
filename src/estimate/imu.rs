//! IMU readings into the body frame: the mounting rotation, and the choice between the device's
//! own orientation and the Mahony filter. Runs on the sensor's receive thread, composed with its
//! driver by the robot assembly; allocation-free.
//!
//! Not for: parsing or timestamps (the drivers in `io`), judging staleness (`control::safety`).

use super::mahony::{quat_from_wxyz, quat_to_wxyz, Mahony};
use crate::config::{self, OrientationSource};
use crate::types::{ImuSample, RawImu};
use nalgebra::{UnitQuaternion, Vector3};

/// The rotation from the IMU's axes to the body's (`[imu] mounting_rpy_deg`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mounting {
    body_from_imu: UnitQuaternion<f64>,
}

impl Mounting {
    pub(crate) fn from_rpy_deg(rpy_deg: [f64; 3]) -> Self {
        let [r, p, y] = rpy_deg.map(f64::to_radians);
        Self { body_from_imu: UnitQuaternion::from_euler_angles(r, p, y) }
    }

    /// A vector measured in the IMU's axes, in the body's.
    pub(crate) fn to_body(self, v_imu: [f64; 3]) -> [f64; 3] {
        (self.body_from_imu * Vector3::from(v_imu)).into()
    }

    /// The body's orientation in the world, from the IMU's (both [w, x, y, z]).
    pub(crate) fn body_orientation(&self, quat_world_imu_wxyz: [f64; 4]) -> [f64; 4] {
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

    /// One reading in the IMU's axes. Its `device_quat_wxyz` is used when the configuration says
    /// `orientation = "device"` and the device sent one; otherwise Mahony integrates `dt_s`.
    pub fn sample(&mut self, raw: &RawImu) -> ImuSample {
        let accel_body_mps2 = self.mounting.to_body(raw.accel_imu_mps2);
        let gyro_body_radps = self.mounting.to_body(raw.gyro_imu_radps);
        let filtered = self.mahony.update(gyro_body_radps, accel_body_mps2, raw.dt_s);
        let quat_wxyz = match (self.source, raw.device_quat_wxyz) {
            (OrientationSource::Device, Some(q)) => self.mounting.body_orientation(q),
            _ => filtered,
        };
        ImuSample { quat_wxyz, gyro_body_radps, accel_body_mps2, t_ns: raw.t_ns }
    }
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
        let raw = |accel_imu_mps2, gyro_imu_radps, t_ns| RawImu {
            accel_imu_mps2,
            gyro_imu_radps,
            device_quat_wxyz: Some(device),
            dt_s: 0.0,
            t_ns,
        };
        let s = f.sample(&raw([1.0, 0.0, 9.8], [0.1, 0.0, 0.0], 7));
        // Mounting yawed 90°: IMU x is body y.
        assert!((s.accel_body_mps2[1] - 1.0).abs() < 1e-12 && (s.gyro_body_radps[1] - 0.1).abs() < 1e-12);
        let yaw = UnitQuaternion::from_euler_angles(0.0, 0.0, 0.5 - std::f64::consts::FRAC_PI_2);
        assert!(quat_from_wxyz(s.quat_wxyz).angle_to(&yaw) < 1e-12);
        assert_eq!(s.t_ns, 7);
        cfg.orientation = OrientationSource::Filter;
        let mut f = ImuFilter::new(&cfg);
        let s = f.sample(&raw([0.0, 0.0, 9.8], [0.0; 3], 8));
        assert_eq!(s.quat_wxyz, [1.0, 0.0, 0.0, 0.0]);
    }
}
