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
use crate::estimate::terrain::{ElevationMap, Perception};

struct Slot {
    term: ObsTerm,
    offset: usize,
    /// For depth terms: index of each named sensor in `Perception::depth`.
    depth_index: Vec<usize>,
}

pub struct ObsBuilder {
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
    pub fn set_last_action(&mut self, action: &[f32]) {
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
