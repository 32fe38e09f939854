//! The observation builder: the contract's terms, in its order, from the control snapshot and the
//! perceived terrain, with scales, clips and history. Built once per model; `build` writes into a
//! buffer it owns and allocates nothing.
//!
//! History: a term with `history = h` keeps its last `h` frames oldest first. After construction
//! and after `reset` (every mode change) the first frame fills the whole history, as at the start of
//! a training episode. `last_action` is zero until the policy reports one.
//!
//! Not for: running the model or deciding what an action means (`action`).

use super::contract::{Contract, DepthTerm, HeightScan, ObsTerm, Term};
use crate::config::Config;
use crate::control::messages::Snapshot;
use crate::types::terrain::{ElevationMap, Perception};

struct Slot {
    term: ObsTerm,
    offset: usize,
    /// For depth terms: index of each named sensor in `Perception::depth`.
    depth_index: Vec<usize>,
}

pub(crate) struct ObsBuilder {
    slots: Vec<Slot>,
    /// Contract joint order → configuration index.
    joint_index: Vec<usize>,
    default_pos_rad: Vec<f64>,
    is_velocity: Vec<bool>,
    obs: Vec<f32>,
    frame: Vec<f32>,
    last_action: Vec<f32>,
    primed: bool,
}

impl ObsBuilder {
    /// A builder for `contract` on `config`. `depth_sensors` are the configured depth sensors in
    /// `Perception::depth` order; the contract has been checked against them (`check_config`).
    pub fn new(contract: &Contract, config: &Config, depth_sensors: &[String]) -> Result<Self, String> {
        let mut slots = Vec::with_capacity(contract.obs.len());
        let mut offset = 0;
        let mut widest = 0;
        for t in &contract.obs {
            let depth_index = match &t.term {
                Term::Depth(d) => d
                    .sensors
                    .iter()
                    .map(|s| depth_sensors.iter().position(|c| c == s).ok_or_else(|| format!("depth sensor {s:?}")))
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            slots.push(Slot { term: t.clone(), offset, depth_index });
            offset += t.dim * t.history;
            widest = widest.max(t.dim);
        }
        let mut joint_index = Vec::with_capacity(contract.joints.len());
        for j in &contract.joints {
            joint_index.push(config.joint_index(&j.name).ok_or_else(|| format!("joint {:?}", j.name))?);
        }
        Ok(Self {
            slots,
            joint_index,
            default_pos_rad: contract.joints.iter().map(|j| j.default_pos_rad).collect(),
            is_velocity: contract.joints.iter().map(|j| j.mode == crate::config::JointMode::Velocity).collect(),
            obs: vec![0.0; offset],
            frame: vec![0.0; widest],
            last_action: vec![0.0; contract.action_dim],
            primed: false,
        })
    }

    pub fn dim(&self) -> usize {
        self.obs.len()
    }

    /// Forgets the history and the last action (a mode change starts a new episode).
    pub fn reset(&mut self) {
        self.primed = false;
        self.last_action.fill(0.0);
    }

    /// The action the policy applied, after clipping and before scaling (the `last_action` term).
    pub(crate) fn set_last_action(&mut self, action: &[f32]) {
        self.last_action.copy_from_slice(action);
    }

    /// Builds the observation for `snapshot` and returns it.
    pub fn build(&mut self, snapshot: &Snapshot, perception: Option<&Perception>) -> &[f32] {
        for i in 0..self.slots.len() {
            let dim = self.slots[i].term.dim;
            self.raw(i, snapshot, perception);
            let slot = &self.slots[i];
            let frame = &mut self.frame[..dim];
            for (v, s) in frame.iter_mut().zip(&slot.term.scale) {
                *v *= s;
                if let Some((lo, hi)) = slot.term.clip {
                    *v = v.clamp(lo, hi);
                }
            }
            let h = slot.term.history;
            let region = &mut self.obs[slot.offset..slot.offset + dim * h];
            if self.primed {
                region.copy_within(dim.., 0);
                region[(h - 1) * dim..].copy_from_slice(frame);
            } else {
                for k in 0..h {
                    region[k * dim..(k + 1) * dim].copy_from_slice(frame);
                }
            }
        }
        self.primed = true;
        &self.obs
    }

    /// The last observation built.
    pub fn current(&self) -> &[f32] {
        &self.obs
    }

    /// The raw (unscaled) frame of slot `i` into `self.frame[..dim]`.
    fn raw(&mut self, i: usize, snapshot: &Snapshot, perception: Option<&Perception>) {
        let s = &snapshot.state;
        let slot = &self.slots[i];
        let out = &mut self.frame[..slot.term.dim];
        match &slot.term.term {
            Term::BaseAngVel => fill3(out, s.ang_vel_body_radps),
            Term::ProjectedGravity => fill3(out, s.projected_gravity_body),
            Term::Command => fill3(out, snapshot.command),
            Term::JointPos => {
                for (k, v) in out.iter_mut().enumerate() {
                    *v = if self.is_velocity[k] {
                        0.0
                    } else {
                        (s.joints[self.joint_index[k]].q_rad - self.default_pos_rad[k]) as f32
                    };
                }
            }
            Term::JointVel => {
                for (k, v) in out.iter_mut().enumerate() {
                    *v = s.joints[self.joint_index[k]].qd_radps as f32;
                }
            }
            Term::LastAction => out.copy_from_slice(&self.last_action),
            Term::HeightScan(h) => height_scan(h, perception.map(|p| &p.map), out),
            Term::Depth(d) => depth(d, &slot.depth_index, perception, out),
        }
    }
}

fn fill3(out: &mut [f32], v: [f64; 3]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o = x as f32;
    }
}

/// Samples the elevation map on the term's grid: row r along +x, column c along +y, centred on
/// `center`; value `-h - offset` (h is terrain height relative to the base, so this is
/// `base_height - terrain - offset`), `fill` where the map has no data.
fn height_scan(h: &HeightScan, map: Option<&ElevationMap>, out: &mut [f32]) {
    let r0 = (h.rows as f32 - 1.0) / 2.0;
    let c0 = (h.cols as f32 - 1.0) / 2.0;
    for r in 0..h.rows {
        for c in 0..h.cols {
            let x = h.center_m[0] + (r as f32 - r0) * h.resolution_m;
            let y = h.center_m[1] + (c as f32 - c0) * h.resolution_m;
            out[r * h.cols + c] = match map.and_then(|m| m.height_at(x, y)) {
                Some(z) => -z - h.offset_m,
                None => h.fill,
            };
        }
    }
}

/// Zone distances of each named sensor, capped at `max_range`; invalid, missing or never-read
/// zones read `max_range`.
fn depth(d: &DepthTerm, index: &[usize], perception: Option<&Perception>, out: &mut [f32]) {
    for (k, &s) in index.iter().enumerate() {
        let zones = &mut out[k * d.zones..(k + 1) * d.zones];
        zones.fill(d.max_range_m);
        let Some(reading) = perception.map(|p| &p.depth[s]) else { continue };
        if reading.t_ns == 0 {
            continue;
        }
        for (z, v) in zones.iter_mut().enumerate().take(reading.zones as usize) {
            let m = reading.distance_m[z];
            if reading.valid[z] && m.is_finite() && m >= 0.0 {
                *v = m.min(d.max_range_m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::messages::Snapshot;
    use crate::types::terrain::{DepthZones, Perception};
    use serde_json::json;

    fn config() -> Config {
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap()
    }

    fn builder() -> ObsBuilder {
        let mut s = crate::policy::contract::tests::spec();
        s["obs"] = json!([
            {"name": "base_ang_vel", "scale": 0.25, "clip": [-0.5, 0.5]},
            {"name": "projected_gravity", "scale": 1.0},
            {"name": "command", "scale": [2.0, 2.0, 0.25]},
            {"name": "joint_pos", "scale": 1.0},
            {"name": "joint_vel", "scale": 0.1, "history": 2},
            {"name": "last_action", "scale": 1.0},
            {"name": "height_scan", "scale": 1.0, "rows": 2, "cols": 3, "resolution": 0.1,
             "center": [0.2, 0.05], "offset": 0.3, "fill": 9.0},
            {"name": "depth", "scale": 1.0, "sensors": ["front"], "zones": 4, "max_range": 2.0}
        ]);
        let c = Contract::parse(&s.to_string()).unwrap();
        ObsBuilder::new(&c, &config(), &["rear".into(), "front".into()]).unwrap()
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.state.ang_vel_body_radps = [1.0, -4.0, 0.4];
        s.state.projected_gravity_body = [0.0, 0.1, -0.99];
        s.command = [0.5, -0.1, 2.0];
        s.state.joints[0].q_rad = 0.7; // left_hip, default 0.6
        s.state.joints[1].q_rad = -1.0; // left_knee, default -1.2
        s.state.joints[2].q_rad = 5.0; // left_wheel: velocity joint, position ignored
        s.state.joints[3].q_rad = 0.6;
        s.state.joints[4].q_rad = -1.2;
        s.state.joints[2].qd_radps = 10.0;
        s.state.joints[5].qd_radps = -20.0;
        s
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-5, "value {i}: {x} != {y}\n{a:?}\n{b:?}");
        }
    }

    #[test]
    fn proprioceptive_terms_are_scaled_clipped_and_ordered() {
        let mut b = builder();
        assert_eq!(b.dim(), 3 + 3 + 3 + 6 + 12 + 6 + 6 + 4);
        let obs = b.build(&snapshot(), None).to_vec();
        close(&obs[0..3], &[0.25, -0.5, 0.1]); // -1.0 clipped to -0.5
        close(&obs[3..6], &[0.0, 0.1, -0.99]);
        close(&obs[6..9], &[1.0, -0.2, 0.5]);
        close(&obs[9..15], &[0.1, 0.2, 0.0, 0.0, 0.0, 0.0]);
        // joint_vel, history 2: the first frame fills both.
        close(&obs[15..27], &[0.0, 0.0, 1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 1.0, 0.0, 0.0, -2.0]);
        close(&obs[27..33], &[0.0; 6]);
        // Without perception: height cells read `fill`, depth zones `max_range`.
        close(&obs[33..39], &[9.0; 6]);
        close(&obs[39..43], &[2.0; 4]);
    }

    #[test]
    fn history_shifts_oldest_first_and_resets() {
        let mut b = builder();
        let mut s = snapshot();
        b.build(&s, None);
        s.state.joints[2].qd_radps = 30.0;
        b.set_last_action(&[0.5, -1.0, 0.0, 0.0, 0.25, 1.0]);
        let obs = b.build(&s, None).to_vec();
        close(&obs[15..27], &[0.0, 0.0, 1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 3.0, 0.0, 0.0, -2.0]);
        close(&obs[27..33], &[0.5, -1.0, 0.0, 0.0, 0.25, 1.0]);
        b.reset();
        let obs = b.build(&s, None).to_vec();
        close(&obs[15..27], &[0.0, 0.0, 3.0, 0.0, 0.0, -2.0, 0.0, 0.0, 3.0, 0.0, 0.0, -2.0]);
        close(&obs[27..33], &[0.0; 6]);
    }

    #[test]
    fn height_scan_samples_the_map_and_depth_reads_the_named_sensor() {
        let mut b = builder();
        let mut p = Perception::default();
        p.map.t_ns = 1;
        p.map.resolution_m = 0.1;
        // Scan points: x = 0.15, 0.25 (rows); y = -0.05, 0.05, 0.15 (columns). Map cell = floor(v / 0.1 + 32).
        p.map.height_m[33][31] = -0.4; // (0.15, -0.05): ground 0.4 m below the base
        p.map.height_m[34][33] = -0.25; // (0.25, 0.15): a step up
        p.depth[0] = DepthZones { t_ns: 5, zones: 4, distance_m: [0.1; 64], valid: [true; 64] }; // "rear"
        let mut front = DepthZones { t_ns: 5, zones: 4, ..Default::default() };
        front.distance_m[..4].copy_from_slice(&[0.5, 3.0, 1.0, 0.7]);
        front.valid[..4].copy_from_slice(&[true, true, false, true]);
        p.depth[1] = front;
        let obs = b.build(&snapshot(), Some(&p)).to_vec();
        // value = -h - offset: 0.4 - 0.3 and 0.25 - 0.3; cells without data read fill.
        close(&obs[33..39], &[0.1, 9.0, 9.0, 9.0, 9.0, -0.05]);
        // front: 3.0 capped at max_range, the invalid zone reads max_range.
        close(&obs[39..43], &[0.5, 2.0, 2.0, 0.7]);
    }

    /// The training environment's observations (models/locod_train/golden.py wrote them, with the
    /// raw values they came from: simulated states of the stairs scene, a reset, `last_action`
    /// and both ToF sensors' zones) rebuilt by this builder: order, scales, history, resets and
    /// depth handling agree between training and the daemon.
    #[test]
    fn golden_observations_match_the_training_environment() {
        use serde_json::Value;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden_obs.json");
        let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let contract = Contract::parse(&g["spec"].to_string()).unwrap();
        let config =
            Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml"))).unwrap();
        let names: Vec<String> = config.depth.as_ref().unwrap().sensors.iter().map(|s| s.name.clone()).collect();
        let mut b = ObsBuilder::new(&contract, &config, &names).unwrap();
        let floats = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
        let three = |v: &Value| -> [f64; 3] { floats(v).try_into().unwrap() };
        let steps = g["steps"].as_array().unwrap();
        assert!(steps.len() > 20);
        for (t, step) in steps.iter().enumerate() {
            if step["reset"].as_bool().unwrap() {
                b.reset();
            } else {
                let last: Vec<f32> = floats(&step["last_action"]).iter().map(|&x| x as f32).collect();
                b.set_last_action(&last);
            }
            let mut s = Snapshot::default();
            s.state.ang_vel_body_radps = three(&step["ang_vel_body_radps"]);
            s.state.projected_gravity_body = three(&step["projected_gravity_body"]);
            s.command = three(&step["command"]);
            for (j, (q, qd)) in floats(&step["q_rad"]).iter().zip(floats(&step["qd_radps"])).enumerate() {
                s.state.joints[j].q_rad = *q;
                s.state.joints[j].qd_radps = qd;
            }
            let mut p = Perception::default();
            for (k, zones) in floats(&step["depth_m"]).chunks(64).enumerate() {
                let mut z = DepthZones { t_ns: 1, zones: 64, ..Default::default() };
                for (i, &d) in zones.iter().enumerate() {
                    z.distance_m[i] = d as f32;
                    z.valid[i] = d >= 0.0;
                }
                p.depth[k] = z;
            }
            let want: Vec<f32> = floats(&step["obs"]).iter().map(|&x| x as f32).collect();
            let got = b.build(&s, Some(&p)).to_vec();
            assert_eq!(got.len(), want.len(), "step {t}");
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!((x - y).abs() < 1e-4, "step {t}, value {i}: locod {x}, training {y}");
            }
        }
    }
}
