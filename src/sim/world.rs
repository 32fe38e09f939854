//! The physics: a MuJoCo scene with the robot, stepped at `[sim] physics_hz`, with the joints in the
//! configuration's order, the IMU site's sensors and the ToF rangefinders. Perturbations (mass,
//! payload, friction) are applied to the model once, at load.
//!
//! Not for: protocols (motors and board turn this into wire traffic) or timing (the real-time and
//! lock-step runners decide when to step). The base pose it exposes is privileged: only the
//! simulator's own reports and tests read it, never the daemon.

use super::SimError;
use crate::config::sim::{Perturbation, Sim};
use crate::config::Config;
use mujoco_rs::prelude::*;
use std::path::{Path, PathBuf};

/// Rays per ToF sensor (8x8 zones).
pub(crate) const TOF_ZONES: usize = 64;

#[derive(Clone, Copy, Debug)]
struct JointAddr {
    qpos: usize,
    dof: usize,
    actuator: usize,
}

/// What the IMU site measures, in its own frame (MuJoCo's accelerometer reads +g on z when still).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImuTruth {
    pub gyro_radps: [f64; 3],
    pub accel_mps2: [f64; 3],
    pub quat_wxyz: [f64; 4],
}

pub struct World {
    data: MjData<Box<MjModel>>,
    joints: Vec<JointAddr>,
    imu: [usize; 3],
    /// Sensor-data address of each ToF sensor's first ray, by bridge index.
    tof: Vec<usize>,
    root_qpos: usize,
    root_dof: usize,
    held: Option<[f64; 7]>,
    path: PathBuf,
}

fn id(model: &MjModel, kind: MjtObjBase, name: &str, what: &str) -> Result<usize, SimError> {
    model.name_to_id(kind, name).ok_or_else(|| SimError::Model(format!("the model has no {what} named \"{name}\"")))
}

impl World {
    /// Loads the scene `sim.model` (or the perturbation's) for the robot `config` describes.
    pub fn load(config: &Config, sim: &Sim, perturbation: &Perturbation) -> Result<Self, SimError> {
        let rel = perturbation.model.as_deref().unwrap_or(&sim.model);
        let path = config.resolve(rel);
        let mut model = MjModel::from_xml(&path)
            .map_err(|e| SimError::Model(format!("{}: cannot load the scene: {e}", path.display())))?;
        model.opt_mut().timestep = 1.0 / f64::from(sim.physics_hz);
        Self::perturb(&mut model, perturbation)?;

        let mut joints = Vec::new();
        for j in &config.joints {
            let jid = id(&model, MjtObjBase::mjOBJ_JOINT, &j.name, "joint")?;
            let actuator = id(&model, MjtObjBase::mjOBJ_ACTUATOR, &j.name, "actuator")?;
            joints.push(JointAddr {
                qpos: model.jnt_qposadr()[jid] as usize,
                dof: model.jnt_dofadr()[jid] as usize,
                actuator,
            });
        }
        let sensor = |name: &str| -> Result<usize, SimError> {
            let sid = id(&model, MjtObjBase::mjOBJ_SENSOR, name, "sensor")?;
            Ok(model.sensor_adr()[sid] as usize)
        };
        let imu = [sensor("imu_gyro")?, sensor("imu_accel")?, sensor("imu_quat")?];
        let mut tof = Vec::new();
        if let Some(depth) = &config.depth {
            for s in &depth.sensors {
                tof.push((s.bridge_sensor, sensor(&format!("tof{}_00", s.bridge_sensor))?));
            }
        }
        tof.sort();
        let tof = tof.into_iter().map(|(_, adr)| adr).collect();
        let root = id(&model, MjtObjBase::mjOBJ_JOINT, "root", "free joint")?;
        let (root_qpos, root_dof) = (model.jnt_qposadr()[root] as usize, model.jnt_dofadr()[root] as usize);
        let key = id(&model, MjtObjBase::mjOBJ_KEY, &sim.keyframe, "keyframe")?;

        let mut data = MjData::new(Box::new(model));
        data.reset_keyframe(key).map_err(|e| SimError::Model(e.to_string()))?;
        data.forward();
        let held = sim.hold_until_commanded.then(|| {
            let q = data.qpos();
            std::array::from_fn(|i| q[root_qpos + i])
        });
        Ok(Self { data, joints, imu, tof, root_qpos, root_dof, held, path })
    }

    fn perturb(model: &mut MjModel, p: &Perturbation) -> Result<(), SimError> {
        if !(p.mass_scale > 0.0 && p.friction_scale > 0.0) {
            return Err(SimError::Config("[sim.real_world] scales must be positive".into()));
        }
        for m in model.body_mass_mut().iter_mut() {
            *m *= p.mass_scale;
        }
        for i in model.body_inertia_mut().iter_mut() {
            for c in i.iter_mut() {
                *c *= p.mass_scale;
            }
        }
        let base = id(model, MjtObjBase::mjOBJ_BODY, "base", "body")?;
        model.body_mass_mut()[base] += p.base_payload_kg;
        for f in model.geom_friction_mut().iter_mut() {
            f[0] *= p.friction_scale;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn timestep_s(&self) -> f64 {
        self.data.model().opt().timestep
    }

    pub(crate) fn time_s(&self) -> f64 {
        self.data.ffi().time
    }

    pub(crate) fn joint_count(&self) -> usize {
        self.joints.len()
    }

    /// Joint-side position and velocity of joint `i` (configuration order).
    pub fn joint(&self, i: usize) -> (f64, f64) {
        let a = self.joints[i];
        (self.data.qpos()[a.qpos], self.data.qvel()[a.dof])
    }

    /// Whether the gantry still holds the base.
    pub fn held(&self) -> bool {
        self.held.is_some()
    }

    /// Lets go of the base.
    pub fn release(&mut self) {
        self.held = None;
    }

    /// One physics step with joint-side torques (configuration order), saturated by the
    /// actuators' ranges.
    pub fn step(&mut self, torque_nm: &[f64]) {
        for (a, t) in self.joints.iter().zip(torque_nm) {
            self.data.ctrl_mut()[a.actuator] = *t;
        }
        self.data.step();
        if let Some(pose) = self.held {
            let (qp, dof) = (self.root_qpos, self.root_dof);
            self.data.qpos_mut()[qp..qp + 7].copy_from_slice(&pose);
            self.data.qvel_mut()[dof..dof + 6].fill(0.0);
        }
    }

    pub fn imu(&self) -> ImuTruth {
        let s = self.data.sensordata();
        let v3 = |a: usize| [s[a], s[a + 1], s[a + 2]];
        let q = self.imu[2];
        ImuTruth {
            gyro_radps: v3(self.imu[0]),
            accel_mps2: v3(self.imu[1]),
            quat_wxyz: [s[q], s[q + 1], s[q + 2], s[q + 3]],
        }
    }

    /// Ranges of ToF sensor `index` (bridge index order), m; negative = no target within range.
    pub(crate) fn tof(&self, index: usize, out: &mut [f64; TOF_ZONES]) -> bool {
        let Some(&adr) = self.tof.get(index) else { return false };
        out.copy_from_slice(&self.data.sensordata()[adr..adr + TOF_ZONES]);
        true
    }

    pub(crate) fn tof_sensors(&self) -> usize {
        self.tof.len()
    }

    /// Privileged: base position (world) and orientation [w, x, y, z].
    pub(crate) fn base_pose(&self) -> ([f64; 3], [f64; 4]) {
        let q = &self.data.qpos()[self.root_qpos..self.root_qpos + 7];
        ([q[0], q[1], q[2]], [q[3], q[4], q[5], q[6]])
    }

    /// Privileged: base linear velocity in the world frame.
    pub(crate) fn base_velocity(&self) -> [f64; 3] {
        let v = &self.data.qvel()[self.root_dof..self.root_dof + 3];
        [v[0], v[1], v[2]]
    }

    /// Privileged: base angular velocity in the base's own frame (a free joint's rotational
    /// velocity is local), what a perfect gyro on the base would read.
    pub(crate) fn base_ang_vel_body(&self) -> [f64; 3] {
        let w = &self.data.qvel()[self.root_dof + 3..self.root_dof + 6];
        [w[0], w[1], w[2]]
    }

    /// Privileged: the height of the terrain (the world body's static geoms: planes, boxes and the
    /// other primitive shapes) at (x, y), the highest surface a vertical ray from above meets;
    /// `None` where there is none. The robot's own geoms are never in the way.
    pub(crate) fn terrain_height_at(&self, x_m: f64, y_m: f64) -> Option<f64> {
        const FROM_M: f64 = 1000.0;
        let model = self.data.model();
        let (pos, mat) = (self.data.geom_xpos(), self.data.geom_xmat());
        let mut nearest: Option<f64> = None;
        for (g, (&body, &kind)) in model.geom_bodyid().iter().zip(model.geom_type()).enumerate() {
            let primitive = matches!(
                kind,
                MjtGeomBase::mjGEOM_PLANE
                    | MjtGeomBase::mjGEOM_SPHERE
                    | MjtGeomBase::mjGEOM_CAPSULE
                    | MjtGeomBase::mjGEOM_ELLIPSOID
                    | MjtGeomBase::mjGEOM_CYLINDER
                    | MjtGeomBase::mjGEOM_BOX
            );
            if body != 0 || !primitive {
                continue;
            }
            let d = mujoco_rs::wrappers::fun::mju_ray_geom(
                &pos[g],
                &mat[g],
                &model.geom_size()[g],
                &[x_m, y_m, FROM_M],
                &[0.0, 0.0, -1.0],
                kind,
                None,
            );
            if d >= 0.0 && nearest.is_none_or(|n| d < n) {
                nearest = Some(d);
            }
        }
        nearest.map(|d| FROM_M - d)
    }
}
