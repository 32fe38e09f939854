//! Multi-zone time-of-flight returns → 3-D points → the robot-centred elevation map.
//!
//! Zone geometry: a sensor looks along its own +x (y left, z up). A `rows x cols` grid spans
//! `fov_deg` on each axis, zones equally spaced in angle; zone (row 0, col 0) is the top-left one
//! as seen from behind the sensor (up = +z, left = +y), rows run downwards and columns to the
//! right. A zone's ray passes through its centre: elevation `(0.5 - (row + 0.5) / rows) * fov`,
//! azimuth `(0.5 - (col + 0.5) / cols) * fov`, direction `normalize(1, tan(azimuth),
//! tan(elevation))`. The distance is measured along that ray (what the emulator sends; VL53L8CX
//! "distance" in its default mode).
//!
//! Chain: sensor frame → body frame through the mounting pose (`position_m`, `rpy_deg`, with
//! `R = Rz(yaw) Ry(pitch) Rx(roll)`, so a positive pitch looks down) → map frame (see
//! `terrain`: gravity-aligned, yaw-free) through the IMU's roll and pitch only. The map holds the
//! latest valid returns of every sensor, the highest point per cell; cells nobody measured are
//! NaN. Returns with an invalid status or beyond the sensor's `max_range_m` are ignored.
//!
//! Not for: reading the wire (io::device::bridge converts frames to `DepthZones`) or filtering over time.

use super::mahony::quat_from_wxyz;
use crate::config::{Depth, DepthSensor};
use crate::types::terrain::{DepthZones, ElevationMap, Perception, MAP_CELLS, MAX_DEPTH_SENSORS, MAX_ZONES};
use nalgebra::{UnitQuaternion, Vector3};

/// Unit ray of zone (`row`, `col`) of a `rows x cols` grid spanning `fov_rad`, in the sensor frame.
pub(crate) fn zone_ray_sensor(row: usize, col: usize, rows: usize, cols: usize, fov_rad: f64) -> Vector3<f64> {
    let elevation = (0.5 - (row as f64 + 0.5) / rows as f64) * fov_rad;
    let azimuth = (0.5 - (col as f64 + 0.5) / cols as f64) * fov_rad;
    Vector3::new(1.0, azimuth.tan(), elevation.tan()).normalize()
}

/// One sensor's mounting and its zones' rays in the body frame, precomputed per grid size.
#[derive(Clone, Debug)]
pub struct SensorGeometry {
    pub name: String,
    pub(crate) bridge_sensor: u8,
    origin_body_m: Vector3<f64>,
    max_range_m: f64,
    /// Rays for a square grid of `side x side` zones (`side` = 4 or 8), in the body frame.
    rays_4_body: [Vector3<f64>; 16],
    rays_8_body: [Vector3<f64>; 64],
}

impl SensorGeometry {
    pub fn new(s: &DepthSensor) -> Self {
        let [r, p, y] = s.rpy_deg.map(f64::to_radians);
        let mount = UnitQuaternion::from_euler_angles(r, p, y);
        let fov = s.fov_deg.to_radians();
        let ray = |i: usize, side: usize| mount * zone_ray_sensor(i / side, i % side, side, side, fov);
        Self {
            name: s.name.clone(),
            bridge_sensor: s.bridge_sensor,
            origin_body_m: Vector3::from(s.position_m),
            max_range_m: s.max_range_m,
            rays_4_body: std::array::from_fn(|i| ray(i, 4)),
            rays_8_body: std::array::from_fn(|i| ray(i, 8)),
        }
    }

    /// The body-frame point of zone `i` of a `zones`-zone grid (16 or 64) at `distance_m`, or
    /// `None` for another grid size or a return beyond the sensor's range.
    pub(crate) fn point_body(&self, zones: usize, i: usize, distance_m: f64) -> Option<Vector3<f64>> {
        let ray = match zones {
            16 => self.rays_4_body.get(i)?,
            64 => self.rays_8_body.get(i)?,
            _ => return None,
        };
        (distance_m.is_finite() && distance_m >= 0.0 && distance_m <= self.max_range_m)
            .then(|| self.origin_body_m + ray * distance_m)
    }
}

/// Builds the elevation map from the latest zones of every configured sensor.
#[derive(Clone, Debug)]
pub struct DepthMapper {
    sensors: Vec<SensorGeometry>,
    resolution_m: f32,
}

impl DepthMapper {
    pub fn new(config: &Depth) -> Self {
        let sensors = config.sensors.iter().take(MAX_DEPTH_SENSORS).map(SensorGeometry::new).collect();
        Self { sensors, resolution_m: config.map_resolution_m as f32 }
    }

    pub fn sensors(&self) -> &[SensorGeometry] {
        &self.sensors
    }

    /// Index (in configuration order, as in `Perception::depth`) of the sensor the bridge calls
    /// `bridge_sensor`.
    pub(crate) fn sensor_index(&self, bridge_sensor: u8) -> Option<usize> {
        self.sensors.iter().position(|s| s.bridge_sensor == bridge_sensor)
    }

    /// Rebuilds `p.map` from `p.depth` with the body attitude `quat_wxyz` (its yaw is ignored).
    /// Allocation-free.
    pub fn rebuild(&self, quat_wxyz: [f64; 4], p: &mut Perception) {
        let (roll, pitch, _) = quat_from_wxyz(quat_wxyz).euler_angles();
        let level = UnitQuaternion::from_euler_angles(roll, pitch, 0.0);
        let map = &mut p.map;
        map.resolution_m = self.resolution_m;
        map.height_m = [[f32::NAN; MAP_CELLS]; MAP_CELLS];
        map.t_ns = 0;
        for (geometry, zones) in self.sensors.iter().zip(&p.depth) {
            if zones.t_ns == 0 {
                continue;
            }
            map.t_ns = map.t_ns.max(zones.t_ns);
            add_points(geometry, zones, &level, map);
        }
    }
}

fn add_points(geometry: &SensorGeometry, zones: &DepthZones, level: &UnitQuaternion<f64>, map: &mut ElevationMap) {
    let n = usize::from(zones.zones).min(MAX_ZONES);
    for i in 0..n {
        if !zones.valid[i] {
            continue;
        }
        let Some(body) = geometry.point_body(n, i, f64::from(zones.distance_m[i])) else {
            continue;
        };
        let p = level * body;
        let (x, y, z) = (p.x as f32, p.y as f32, p.z as f32);
        let height = map.height_at(x, y).map_or(z, |old| old.max(z));
        map.set(x, y, height);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOV_DEG: f64 = 45.0;

    fn sensor(position_m: [f64; 3], pitch_deg: f64) -> DepthSensor {
        DepthSensor {
            name: "front".into(),
            bridge_sensor: 0,
            position_m,
            rpy_deg: [0.0, pitch_deg, 0.0],
            fov_deg: FOV_DEG,
            max_range_m: 4.0,
        }
    }

    fn mapper(sensors: Vec<DepthSensor>) -> DepthMapper {
        DepthMapper::new(&Depth { map_resolution_m: 0.05, timeout_ms: 200.0, sensors })
    }

    /// Ray of zone (r, c) of an 8x8 grid for a sensor pitched `down_deg` below horizontal, in a level
    /// frame, computed with plain trigonometry: (forward, left, up) components.
    fn ray_by_hand(r: usize, c: usize, down_deg: f64) -> (f64, f64, f64) {
        let fov = FOV_DEG.to_radians();
        let el = (0.5 - (r as f64 + 0.5) / 8.0) * fov;
        let az = (0.5 - (c as f64 + 0.5) / 8.0) * fov;
        let (x, y, z) = (1.0, az.tan(), el.tan());
        let len = (x * x + y * y + z * z).sqrt();
        let (x, y, z) = (x / len, y / len, z / len);
        let (s, co) = down_deg.to_radians().sin_cos();
        // Pitching down by p: forward' = x cos p + z sin p, up' = -x sin p + z cos p.
        (x * co + z * s, y, -x * s + z * co)
    }

    /// Distances a sensor at height `h` (above the floor) sees over a floor with a step of
    /// `step_m` starting `step_x_m` ahead of the sensor.
    fn cast(down_deg: f64, h: f64, step_x_m: f64, step_m: f64) -> DepthZones {
        let mut z = DepthZones { t_ns: 1, zones: 64, ..Default::default() };
        for r in 0..8 {
            for c in 0..8 {
                let (fx, _, up) = ray_by_hand(r, c, down_deg);
                let i = r * 8 + c;
                if up >= 0.0 {
                    continue;
                }
                let t_floor = h / -up;
                let t = if fx * t_floor < step_x_m {
                    t_floor
                } else {
                    let t_face = step_x_m / fx;
                    let z_face = h + up * t_face; // height above the floor where the ray meets x = step
                    if z_face <= step_m {
                        t_face
                    } else {
                        (h - step_m) / -up
                    }
                };
                z.distance_m[i] = t as f32;
                z.valid[i] = true;
            }
        }
        z
    }

    #[test]
    fn zone_rays_follow_the_documented_convention() {
        let fov = FOV_DEG.to_radians();
        let top_left = zone_ray_sensor(0, 0, 8, 8, fov);
        assert!(top_left.x > 0.0 && top_left.y > 0.0 && top_left.z > 0.0, "{top_left:?}");
        let bottom_right = zone_ray_sensor(7, 7, 8, 8, fov);
        assert!(bottom_right.y < 0.0 && bottom_right.z < 0.0);
        // Outer zone centres are 7/16 of the field of view from the axis.
        let el = top_left.z.atan2(top_left.x);
        assert!((el - 7.0 / 16.0 * fov).abs() < 1e-12);
    }

    #[test]
    fn a_sensor_pitched_30_degrees_down_sees_flat_floor_at_its_height() {
        // The base is 0.2 m above the floor; the sensor is mounted 0.1 m above the base origin and
        // 0.15 m forward, so it is 0.3 m above the floor: the floor reads -0.3 + 0.1 = -0.2.
        let m = mapper(vec![sensor([0.15, 0.0, 0.1], 30.0)]);
        let mut p = Perception::default();
        p.depth[0] = cast(30.0, 0.3, f64::INFINITY, 0.0);
        m.rebuild([1.0, 0.0, 0.0, 0.0], &mut p);
        let heights: Vec<f32> = p.map.height_m.iter().flatten().copied().filter(|h| h.is_finite()).collect();
        assert!(heights.len() >= 40, "{} cells", heights.len());
        assert!(heights.iter().all(|h| (h + 0.2).abs() < 1e-5), "{heights:?}");

        // Zone (row 4, col 3) by hand: elevation -1/16 fov, azimuth +1/16 fov, then 30° down.
        let (fx, left, up) = ray_by_hand(4, 3, 30.0);
        let t = 0.3 / -up;
        let (x, y) = (0.15 + fx * t, left * t);
        assert!(x > 0.4 && x < 0.8 && y > 0.0, "({x}, {y})");
        assert!((p.map.height_at(x as f32, y as f32).unwrap() + 0.2).abs() < 1e-5);
        assert_eq!(p.map.t_ns, 1);
        // Nothing behind the robot.
        assert_eq!(p.map.height_at(-0.5, 0.0), None);
    }

    #[test]
    fn the_imu_attitude_levels_the_points() {
        // Body pitched 10° nose down, sensor pitched 20° on the body: 30° down in the world, same floor.
        let m = mapper(vec![sensor([0.0, 0.0, 0.1], 20.0)]);
        let mut p = Perception::default();
        p.depth[0] = cast(30.0, 0.3, f64::INFINITY, 0.0);
        let pitch = 10f64.to_radians();
        // Yaw must not matter: the map is yaw-free.
        let q = UnitQuaternion::from_euler_angles(0.0, pitch, 1.2);
        m.rebuild(crate::estimate::mahony::quat_to_wxyz(&q), &mut p);
        // Sensor origin in the level frame: the body rotation moves it.
        let origin = UnitQuaternion::from_euler_angles(0.0, pitch, 0.0) * Vector3::new(0.0, 0.0, 0.1);
        let expected = (origin.z - 0.3) as f32;
        let heights: Vec<f32> = p.map.height_m.iter().flatten().copied().filter(|h| h.is_finite()).collect();
        assert!(heights.len() >= 40);
        assert!(heights.iter().all(|h| (h - expected).abs() < 1e-5), "expected {expected}: {heights:?}");
    }

    #[test]
    fn a_step_in_front_shows_up_at_the_right_cells() {
        // Sensor 0.3 m above the floor (base origin 0.3 m up, sensor at the origin), 30° down; a
        // 0.12 m step starts 0.6 m ahead.
        let m = mapper(vec![sensor([0.0, 0.0, 0.0], 30.0)]);
        let mut p = Perception::default();
        p.depth[0] = cast(30.0, 0.3, 0.6, 0.12);
        m.rebuild([1.0, 0.0, 0.0, 0.0], &mut p);
        let mut floor = 0;
        let mut top = 0;
        for (r, row) in p.map.height_m.iter().enumerate() {
            for h in row.iter().filter(|h| h.is_finite()) {
                let x_lo = (r as f32 - 32.0) * 0.05;
                if x_lo + 0.05 <= 0.6 {
                    // Cells entirely before the step: floor, or the step's face in the cell next to it.
                    assert!(*h >= -0.3 - 1e-5 && *h <= -0.18 + 1e-5, "cell x {x_lo}: {h}");
                    if (h + 0.3).abs() < 1e-5 {
                        floor += 1;
                    }
                } else if x_lo >= 0.6 {
                    assert!((h + 0.18).abs() < 1e-5, "cell x {x_lo} on the step: {h}");
                    top += 1;
                }
            }
        }
        assert!(floor >= 10 && top >= 10, "floor {floor} cells, step top {top} cells");
    }

    #[test]
    fn invalid_and_far_returns_are_ignored_and_sensors_are_merged() {
        let mut far = sensor([0.0, 0.0, 0.0], 30.0);
        far.max_range_m = 0.5;
        let mut second = sensor([0.0, 0.0, 0.0], 30.0);
        second.bridge_sensor = 3;
        second.name = "second".into();
        second.rpy_deg = [0.0, 30.0, 180.0]; // looking backwards
        let m = mapper(vec![far, second]);
        assert_eq!(m.sensor_index(3), Some(1));
        assert_eq!(m.sensor_index(1), None);
        let mut p = Perception::default();
        p.depth[0] = cast(30.0, 0.3, f64::INFINITY, 0.0);
        p.depth[0].valid[..32].fill(false); // upper half invalid
        p.depth[1] = cast(30.0, 0.3, f64::INFINITY, 0.0);
        p.depth[1].t_ns = 7;
        m.rebuild([1.0, 0.0, 0.0, 0.0], &mut p);
        let mut ahead = 0;
        let mut behind = 0;
        for (r, row) in p.map.height_m.iter().enumerate() {
            for h in row.iter().filter(|h| h.is_finite()) {
                assert!((h + 0.3).abs() < 1e-5);
                if r >= 32 {
                    ahead += 1;
                    // Only the lower rows within 0.5 m: at most 0.5 m · cos(30°) + a cell ahead.
                    assert!((r as f32 - 32.0) * 0.05 < 0.5);
                } else {
                    behind += 1;
                }
            }
        }
        assert!(ahead > 0 && behind > 0);
        assert_eq!(p.map.t_ns, 7);
        // An unknown grid size contributes nothing.
        p.depth[1].zones = 9;
        p.depth[0].zones = 0;
        m.rebuild([1.0, 0.0, 0.0, 0.0], &mut p);
        assert!(p.map.height_m.iter().flatten().all(|h| h.is_nan()));
    }
}
