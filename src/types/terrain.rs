//! What the robot perceives of the terrain: a robot-centred elevation map and the latest depth
//! zones of each sensor. Built off the control thread (depth arrives at 15-60 Hz) and handed to
//! the policy thread through its own triple buffer; the control loop never carries it.
//!
//! Frame: origin at the base, z up along gravity, x forward along the body's heading (yaw-aligned,
//! not rolled or pitched). Heights are terrain z relative to the base origin, so flat ground under a
//! base standing 0.4 m high reads -0.4.

/// Cells per side of the elevation map.
pub(crate) const MAP_CELLS: usize = 64;
pub(crate) const MAX_DEPTH_SENSORS: usize = 4;
/// Zones of the largest multi-zone sensor (8x8).
pub(crate) const MAX_ZONES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElevationMap {
    /// When the newest data in the map was measured; 0 = empty.
    pub t_ns: u64,
    pub(crate) resolution_m: f32,
    /// `height_m[row][col]`: row along +x, column along +y, the base at the centre; NaN = no data.
    pub height_m: [[f32; MAP_CELLS]; MAP_CELLS],
}

impl Default for ElevationMap {
    fn default() -> Self {
        Self { t_ns: 0, resolution_m: 0.05, height_m: [[f32::NAN; MAP_CELLS]; MAP_CELLS] }
    }
}

impl ElevationMap {
    fn cell(&self, x_m: f32, y_m: f32) -> Option<(usize, usize)> {
        let half = MAP_CELLS as f32 / 2.0;
        let r = (x_m / self.resolution_m + half).floor();
        let c = (y_m / self.resolution_m + half).floor();
        let in_range = |v: f32| v >= 0.0 && v < MAP_CELLS as f32;
        (in_range(r) && in_range(c)).then_some((r as usize, c as usize))
    }

    /// Terrain height at (x, y) in the map frame, if the map has data there.
    pub(crate) fn height_at(&self, x_m: f32, y_m: f32) -> Option<f32> {
        let (r, c) = self.cell(x_m, y_m)?;
        let h = self.height_m[r][c];
        h.is_finite().then_some(h)
    }

    /// Sets the cell containing (x, y); points outside the map are ignored.
    pub fn set(&mut self, x_m: f32, y_m: f32, height_m: f32) {
        if let Some((r, c)) = self.cell(x_m, y_m) {
            self.height_m[r][c] = height_m;
        }
    }
}

/// One multi-zone time-of-flight reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthZones {
    /// Arrival time; 0 = never.
    pub t_ns: u64,
    /// Zones in use (16 for 4x4, 64 for 8x8).
    pub zones: u8,
    pub(crate) distance_m: [f32; MAX_ZONES],
    pub valid: [bool; MAX_ZONES],
}

impl Default for DepthZones {
    fn default() -> Self {
        Self { t_ns: 0, zones: 0, distance_m: [0.0; MAX_ZONES], valid: [false; MAX_ZONES] }
    }
}

/// Everything perceived, as handed to the policy thread. Depth sensors are in the order of the
/// configuration's `[[depth.sensor]]` entries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Perception {
    pub map: ElevationMap,
    pub depth: [DepthZones; MAX_DEPTH_SENSORS],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_robot_centred() {
        let mut m = ElevationMap::default();
        assert_eq!(m.height_at(0.0, 0.0), None);
        m.set(0.31, -0.12, -0.25);
        assert_eq!(m.height_at(0.32, -0.11), Some(-0.25));
        assert_eq!(m.height_at(-0.31, -0.12), None);
        m.set(100.0, 0.0, 1.0); // outside: ignored
        assert_eq!(m.height_at(1.59, 1.59), None);
        assert_eq!(m.height_at(1.61, 0.0), None);
    }
}
