//! Robot state from raw sensors: joint states, body attitude, projected gravity, tilt, and the
//! age of every input.
//!
//! Not for: judging the state (that is `control::safety`). The IMU threads use `mahony` to turn raw
//! gyro and accelerometer streams into an attitude, and the depth thread `depth` to build the map.

pub mod depth;
pub mod imu;
pub mod mahony;

use crate::config::Config;
use crate::types::terrain::MAX_DEPTH_SENSORS;
use crate::types::MAX_JOINTS;
use crate::types::{JointSample, SensorFrame};

/// What the rest of the daemon knows about the robot at one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RobotState {
    pub t_ns: u64,
    pub joints: [JointSample; MAX_JOINTS],
    /// Body orientation in the world frame [w, x, y, z].
    pub quat_wxyz: [f64; 4],
    pub ang_vel_body_radps: [f64; 3],
    /// Unit gravity direction in the body frame ([0, 0, -1] when upright).
    pub projected_gravity_body: [f64; 3],
    /// Angle between body up and world up.
    pub(crate) tilt_rad: f64,
    /// `NEVER` until the first sample.
    pub(crate) imu_age_ns: u64,
    /// Age of the stalest joint reply (`NEVER` before its first), and which joint it is.
    pub(crate) oldest_joint_age_ns: u64,
    pub(crate) oldest_joint: usize,
    /// Age of the stalest depth sensor's newest frame (`NEVER` before its first; 0 without depth
    /// sensors), and which sensor it is (`[[depth.sensor]]` order).
    pub(crate) depth_age_ns: u64,
    pub(crate) stalest_depth: usize,
}

impl Default for RobotState {
    fn default() -> Self {
        Self {
            t_ns: 0,
            joints: [JointSample::default(); MAX_JOINTS],
            quat_wxyz: [1.0, 0.0, 0.0, 0.0],
            ang_vel_body_radps: [0.0; 3],
            projected_gravity_body: [0.0, 0.0, -1.0],
            tilt_rad: 0.0,
            imu_age_ns: 0,
            oldest_joint_age_ns: 0,
            oldest_joint: 0,
            depth_age_ns: 0,
            stalest_depth: 0,
        }
    }
}

/// Rotates the world vector `v` into the body frame of orientation `q` (i.e. applies q⁻¹).
pub(crate) fn world_to_body(q: [f64; 4], v: [f64; 3]) -> [f64; 3] {
    let [w, x, y, z] = q;
    let (qx, qy, qz) = (-x, -y, -z);
    // t = 2 * (q_vec x v); v' = v + w t + q_vec x t
    let t = [2.0 * (qy * v[2] - qz * v[1]), 2.0 * (qz * v[0] - qx * v[2]), 2.0 * (qx * v[1] - qy * v[0])];
    [
        v[0] + w * t[0] + (qy * t[2] - qz * t[1]),
        v[1] + w * t[1] + (qz * t[0] - qx * t[2]),
        v[2] + w * t[2] + (qx * t[1] - qy * t[0]),
    ]
}

/// The age of an input that has never arrived.
pub(crate) const NEVER: u64 = u64::MAX;

pub struct Estimator {
    n: usize,
    depth_sensors: usize,
}

/// The age at `now_ns` of an input last seen at `t_ns` (0 = never).
fn age_ns(now_ns: u64, t_ns: u64) -> u64 {
    if t_ns == 0 {
        NEVER
    } else {
        now_ns.saturating_sub(t_ns)
    }
}

/// The stalest of `times` at `now_ns`: (index, age); (0, 0) when there are none.
fn stalest(now_ns: u64, times: impl Iterator<Item = u64>) -> (usize, u64) {
    let (mut which, mut oldest) = (0, 0);
    for (i, t) in times.enumerate() {
        let a = age_ns(now_ns, t);
        if a > oldest {
            (which, oldest) = (i, a);
        }
    }
    (which, oldest)
}

impl Estimator {
    pub fn new(config: &Config) -> Self {
        let depth_sensors = config.depth.as_ref().map_or(0, |d| d.sensors.len().min(MAX_DEPTH_SENSORS));
        Self { n: config.joints.len(), depth_sensors }
    }

    pub fn joint_count(&self) -> usize {
        self.n
    }

    pub(crate) fn update(&self, now_ns: u64, frame: &SensorFrame, state: &mut RobotState) {
        state.t_ns = now_ns;
        state.joints = frame.joints;
        let q = frame.imu.quat_wxyz;
        let norm = (q.iter().map(|c| c * c).sum::<f64>()).sqrt();
        state.quat_wxyz = q.map(|c| c / norm);
        state.ang_vel_body_radps = frame.imu.gyro_body_radps;
        state.projected_gravity_body = world_to_body(state.quat_wxyz, [0.0, 0.0, -1.0]);
        state.tilt_rad = (-state.projected_gravity_body[2]).clamp(-1.0, 1.0).acos();
        state.imu_age_ns = age_ns(now_ns, frame.imu.t_ns);
        (state.oldest_joint, state.oldest_joint_age_ns) =
            stalest(now_ns, frame.joints[..self.n].iter().map(|j| j.t_ns));
        (state.stalest_depth, state.depth_age_ns) =
            stalest(now_ns, frame.depth_t_ns[..self.depth_sensors].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upright_gravity_points_down() {
        let g = world_to_body([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0]);
        assert_eq!(g, [0.0, 0.0, -1.0]);
    }

    #[test]
    fn a_rolled_body_sees_gravity_sideways() {
        // Rolled +90 degrees about x: world down appears along body -y... check numerically.
        let half = std::f64::consts::FRAC_PI_4;
        let q = [half.cos(), half.sin(), 0.0, 0.0];
        let g = world_to_body(q, [0.0, 0.0, -1.0]);
        assert!((g[0]).abs() < 1e-12 && (g[1] + 1.0).abs() < 1e-12 && g[2].abs() < 1e-12, "{g:?}");
    }

    #[test]
    fn tilt_and_ages_are_computed() {
        let cfg = crate::config::Config::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/biwheel.toml"
        )))
        .unwrap();
        let est = Estimator::new(&cfg);
        let mut frame = SensorFrame::default();
        let roll: f64 = 0.3;
        frame.imu.quat_wxyz = [(roll / 2.0).cos(), (roll / 2.0).sin(), 0.0, 0.0];
        frame.imu.t_ns = 900;
        for j in frame.joints.iter_mut() {
            j.t_ns = 1_000;
        }
        frame.joints[3].t_ns = 400;
        let mut s = RobotState::default();
        est.update(1_000, &frame, &mut s);
        assert!((s.tilt_rad - roll).abs() < 1e-9);
        assert_eq!(s.imu_age_ns, 100);
        assert_eq!((s.oldest_joint, s.oldest_joint_age_ns), (3, 600));
    }
}
