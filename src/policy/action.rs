//! Actions to motor commands, per the contract: clip to `[-clip, clip]`, then
//! position joints `q = default_pos + scale * a` with the contract's gains, velocity joints
//! `qd = scale * a`, `kp = 0`. The control loop's limiter applies the configuration's limits after.
//!
//! Not for: limits (the control loop's `Limiter` is always last) or the observation.

use super::contract::Contract;
use super::PolicyError;
use crate::config::{Config, JointMode, MAX_JOINTS};
use crate::io::MotorCommand;

#[derive(Clone, Debug)]
struct JointMap {
    index: usize,
    velocity: bool,
    default_pos_rad: f64,
    scale: f64,
    kp: f64,
    kd: f64,
}

#[derive(Clone, Debug)]
pub struct ActionMap {
    joints: Vec<JointMap>,
    clip: f32,
}

impl ActionMap {
    pub fn new(contract: &Contract, config: &Config) -> Result<Self, String> {
        let mut joints = Vec::with_capacity(contract.joints.len());
        for j in &contract.joints {
            joints.push(JointMap {
                index: config.joint_index(&j.name).ok_or_else(|| format!("joint {:?}", j.name))?,
                velocity: j.mode == JointMode::Velocity,
                default_pos_rad: j.default_pos_rad,
                scale: j.action_scale,
                kp: j.kp,
                kd: j.kd,
            });
        }
        Ok(Self { joints, clip: contract.action_clip })
    }

    pub fn dim(&self) -> usize {
        self.joints.len()
    }

    pub fn clip_bound(&self) -> f32 {
        self.clip
    }

    /// Clips `action` in place; a non-finite value is an error (the loop's fallback takes over).
    pub fn clip(&self, action: &mut [f32]) -> Result<(), PolicyError> {
        for a in action.iter_mut() {
            if !a.is_finite() {
                return Err(PolicyError("the model produced a non-finite action"));
            }
            *a = a.clamp(-self.clip, self.clip);
        }
        Ok(())
    }

    /// Writes the command of every joint for the clipped `action`.
    pub fn apply(&self, action: &[f32], targets: &mut [MotorCommand; MAX_JOINTS]) {
        for (j, &a) in self.joints.iter().zip(action) {
            let a = a as f64;
            targets[j.index] = if j.velocity {
                MotorCommand { q_rad: 0.0, qd_radps: j.scale * a, kp: 0.0, kd: j.kd, tau_ff_nm: 0.0 }
            } else {
                MotorCommand {
                    q_rad: j.default_pos_rad + j.scale * a,
                    qd_radps: 0.0,
                    kp: j.kp,
                    kd: j.kd,
                    tau_ff_nm: 0.0,
                }
            };
        }
    }
}
