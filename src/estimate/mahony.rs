//! The Mahony attitude filter: body orientation from a gyroscope and an accelerometer.
//!
//! The gyro is integrated; the accelerometer, when it reads close to 1 g, pulls the estimated
//! "up" direction towards the measured one through a PI correction (`kp`, `ki` =
//! `[imu] filter_gains`). The integral term learns a constant gyro bias. Yaw is not observable
//! from gravity: it is the integrated gyro yaw, starting at 0.
//!
//! Frames: inputs in the body frame (x forward, y left, z up; the accelerometer reads +9.81 on z
//! when level and still), output the body's orientation in the world frame (z up).
//! Not for: mounting rotations (the caller applies them first) or magnetometers.

use nalgebra::{UnitQuaternion, Vector3};

/// Standard gravity, m/s².
pub(crate) const STANDARD_GRAVITY_MPS2: f64 = 9.80665;

/// Accelerometer readings whose magnitude is outside `[1 - x, 1 + x]` g are not trusted as a
/// gravity reference (the body is accelerating or being hit).
const ACCEL_TRUST_BAND: f64 = 0.3;

/// Integration steps longer than this are clamped (a gap in the stream is not a rotation).
pub(crate) const MAX_DT_S: f64 = 0.1;

#[derive(Clone, Debug)]
pub struct Mahony {
    kp: f64,
    ki: f64,
    /// Body → world.
    q: UnitQuaternion<f64>,
    /// Integral of the correction: the gyro bias estimate, negated, rad/s.
    integral_body_radps: Vector3<f64>,
    aligned: bool,
}

impl Mahony {
    /// A filter that takes its roll and pitch from the first trusted accelerometer reading.
    pub fn new(kp: f64, ki: f64) -> Self {
        Self { kp, ki, q: UnitQuaternion::identity(), integral_body_radps: Vector3::zeros(), aligned: false }
    }

    /// A filter starting at `quat_wxyz` (body → world), without the initial alignment.
    pub fn with_attitude(kp: f64, ki: f64, quat_wxyz: [f64; 4]) -> Self {
        Self { q: quat_from_wxyz(quat_wxyz), aligned: true, ..Self::new(kp, ki) }
    }

    /// Forgets the attitude and the bias (e.g. after the IMU restarted).
    pub fn reset(&mut self) {
        *self = Self::new(self.kp, self.ki);
    }

    /// Body orientation in the world frame, [w, x, y, z].
    pub fn quat_wxyz(&self) -> [f64; 4] {
        quat_to_wxyz(&self.q)
    }

    pub fn is_aligned(&self) -> bool {
        self.aligned
    }

    /// Current gyro bias estimate, rad/s in the body frame (the negated integral term).
    pub fn gyro_bias_body_radps(&self) -> [f64; 3] {
        (-self.integral_body_radps).into()
    }

    /// One step of `dt_s` seconds; returns the new orientation.
    pub(crate) fn update(&mut self, gyro_body_radps: [f64; 3], accel_body_mps2: [f64; 3], dt_s: f64) -> [f64; 4] {
        let gyro = Vector3::from(gyro_body_radps);
        let accel = Vector3::from(accel_body_mps2);
        if !gyro.iter().chain(accel.iter()).all(|v| v.is_finite()) {
            return self.quat_wxyz();
        }
        let g = accel.norm() / STANDARD_GRAVITY_MPS2;
        let trusted = (g - 1.0).abs() <= ACCEL_TRUST_BAND;
        if !self.aligned {
            if trusted {
                self.q = level_from_accel(&accel);
                self.aligned = true;
            }
            return self.quat_wxyz();
        }
        let dt = if dt_s.is_finite() { dt_s.clamp(0.0, MAX_DT_S) } else { 0.0 };
        // Predict with the gyro first, so the correction compares the accelerometer with the
        // attitude at the same instant (no one-sample lag while rotating).
        self.q *= UnitQuaternion::from_scaled_axis((gyro + self.integral_body_radps) * dt);
        if trusted {
            let measured_up = accel / accel.norm();
            let estimated_up = self.q.inverse_transform_vector(&Vector3::z());
            let error = measured_up.cross(&estimated_up);
            if self.ki > 0.0 {
                self.integral_body_radps += error * (self.ki * dt);
            }
            self.q *= UnitQuaternion::from_scaled_axis(error * (self.kp * dt));
        }
        self.q.renormalize();
        self.quat_wxyz()
    }
}

/// The orientation with zero yaw whose "up" matches the accelerometer.
fn level_from_accel(accel: &Vector3<f64>) -> UnitQuaternion<f64> {
    let roll = accel.y.atan2(accel.z);
    let pitch = (-accel.x).atan2((accel.y * accel.y + accel.z * accel.z).sqrt());
    UnitQuaternion::from_euler_angles(roll, pitch, 0.0)
}

pub fn quat_from_wxyz(q: [f64; 4]) -> UnitQuaternion<f64> {
    UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(q[0], q[1], q[2], q[3]))
}

pub(crate) fn quat_to_wxyz(q: &UnitQuaternion<f64>) -> [f64; 4] {
    [q.w, q.i, q.j, q.k]
}

/// Roll, pitch, yaw (rad) of a body → world orientation, `R = Rz(yaw) Ry(pitch) Rx(roll)`.
pub fn rpy_from_wxyz(q: [f64; 4]) -> [f64; 3] {
    let (r, p, y) = quat_from_wxyz(q).euler_angles();
    [r, p, y]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a still accelerometer reads in the body frame for orientation `q`.
    fn still_accel(q: &UnitQuaternion<f64>) -> [f64; 3] {
        (q.inverse_transform_vector(&Vector3::z()) * STANDARD_GRAVITY_MPS2).into()
    }

    fn angle_between(a: &UnitQuaternion<f64>, b: [f64; 4]) -> f64 {
        a.angle_to(&quat_from_wxyz(b))
    }

    #[test]
    fn aligns_roll_and_pitch_from_the_first_accel_reading() {
        let truth = UnitQuaternion::from_euler_angles(0.2, -0.3, 0.0);
        let mut f = Mahony::new(1.0, 0.0);
        let q = f.update([0.0; 3], still_accel(&truth), 0.005);
        assert!(f.is_aligned());
        assert!(angle_between(&truth, q) < 1e-12);
    }

    #[test]
    fn converges_to_a_static_tilt_from_level() {
        let truth = UnitQuaternion::from_euler_angles(0.35, -0.2, 0.0);
        let mut f = Mahony::with_attitude(1.0, 0.0, [1.0, 0.0, 0.0, 0.0]);
        let accel = still_accel(&truth);
        let start = angle_between(&truth, f.quat_wxyz());
        let mut q = f.quat_wxyz();
        for _ in 0..200 * 15 {
            q = f.update([0.0; 3], accel, 0.005);
        }
        let [roll, pitch, _] = rpy_from_wxyz(q);
        assert!(start > 0.3);
        assert!((roll - 0.35).abs() < 1e-3 && (pitch + 0.2).abs() < 1e-3, "roll {roll} pitch {pitch}");
    }

    #[test]
    fn tracks_a_constant_rotation_rate() {
        // Rolling at 0.5 rad/s while yawing at 0.3 rad/s (body rates), the accelerometer consistent.
        let rate = Vector3::new(0.5, 0.0, 0.3);
        let dt = 0.005;
        let mut truth = UnitQuaternion::from_euler_angles(0.0, 0.1, 0.0);
        let mut f = Mahony::with_attitude(1.0, 0.0, quat_to_wxyz(&truth));
        let mut worst: f64 = 0.0;
        for _ in 0..2000 {
            truth *= UnitQuaternion::from_scaled_axis(rate * dt);
            let q = f.update(rate.into(), still_accel(&truth), dt);
            worst = worst.max(angle_between(&truth, q));
        }
        assert!(worst < 1e-9, "worst attitude error {worst} rad over 10 s");
    }

    #[test]
    fn the_integral_term_learns_a_gyro_bias() {
        let bias = [0.02, -0.01, 0.0];
        let mut f = Mahony::with_attitude(1.0, 0.3, [1.0, 0.0, 0.0, 0.0]);
        let accel = [0.0, 0.0, STANDARD_GRAVITY_MPS2];
        for _ in 0..200 * 60 {
            f.update(bias, accel, 0.005);
        }
        let learned = f.gyro_bias_body_radps();
        assert!((learned[0] - 0.02).abs() < 1e-4 && (learned[1] + 0.01).abs() < 1e-4, "{learned:?}");
        let [roll, pitch, _] = rpy_from_wxyz(f.quat_wxyz());
        assert!(roll.abs() < 1e-3 && pitch.abs() < 1e-3);
    }

    #[test]
    fn untrusted_or_non_finite_accel_leaves_the_gyro_in_charge() {
        let mut f = Mahony::with_attitude(5.0, 0.0, [1.0, 0.0, 0.0, 0.0]);
        // 3 g sideways: a bump, not gravity. Only the gyro (zero) counts: the attitude stays level.
        let q = f.update([0.0; 3], [29.0, 0.0, 9.8], 0.01);
        assert_eq!(q, [1.0, 0.0, 0.0, 0.0]);
        let q = f.update([f64::NAN, 0.0, 0.0], [0.0, 0.0, 9.8], 0.01);
        assert_eq!(q, [1.0, 0.0, 0.0, 0.0]);
        // A long gap is clamped to MAX_DT_S.
        let q = f.update([1.0, 0.0, 0.0], [0.0, 0.0, 0.0], 10.0);
        assert!((rpy_from_wxyz(q)[0] - MAX_DT_S).abs() < 1e-12);
    }
}
