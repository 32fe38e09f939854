//! Actions to motor commands, per the contract: clip to `[-clip, clip]`, then
//! position joints `q = default_pos + scale * a` with the contract's gains, velocity joints
//! `qd = scale * a`, `kp = 0`. The control loop's limiter applies the configuration's limits after.
//!
//! Not for: limits (the control loop's `Limiter` is always last) or the observation.

use super::contract::Contract;
use super::PolicyError;
use crate::config::{Joint, JointMode};
use crate::types::MotorCommand;
use crate::types::MAX_JOINTS;

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
pub(crate) struct ActionMap {
    joints: Vec<JointMap>,
    clip: f32,
}

impl ActionMap {
    /// `configured`: the configuration's joints, which the contract's joints are looked up in by
    /// name.
    pub fn new(contract: &Contract, configured: &[Joint]) -> Result<Self, String> {
        let mut joints = Vec::with_capacity(contract.joints.len());
        for j in &contract.joints {
            joints.push(JointMap {
                index: configured.iter().position(|c| c.name == j.name).ok_or_else(|| format!("joint {:?}", j.name))?,
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

    pub(crate) fn clip_bound(&self) -> f32 {
        self.clip
    }

    /// Clips `action` in place; a non-finite value is an error (the loop's fallback takes over).
    pub(crate) fn clip(&self, action: &mut [f32]) -> Result<(), PolicyError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn actions_map_to_position_and_velocity_commands_with_contract_gains() {
        let config =
            Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap();
        let mut s = crate::policy::contract::tests::spec();
        s["joints"][5]["action_scale"] = serde_json::json!(8.0);
        s["joints"][5]["kd"] = serde_json::json!(0.3);
        let c = Contract::parse(&s.to_string()).unwrap();
        let map = ActionMap::new(&c, &config.joints).unwrap();
        let mut a = [0.5f32, -2.0, 1.0, 0.0, 0.25, -0.5];
        map.clip(&mut a).unwrap();
        assert_eq!(a[1], -1.0);
        let mut targets = [MotorCommand::default(); MAX_JOINTS];
        map.apply(&a, &mut targets);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
        // left_hip: 0.6 + 0.25 * 0.5
        assert!(close(targets[0].q_rad, 0.725) && targets[0].kp == 40.0 && targets[0].kd == 1.0);
        assert_eq!(targets[0].qd_radps, 0.0);
        // left_knee: -1.2 + 0.25 * (-1, clipped)
        assert!(close(targets[1].q_rad, -1.45));
        // left_wheel: velocity 0.25 * 1.0, no stiffness
        assert!(close(targets[2].qd_radps, 0.25) && targets[2].kp == 0.0 && targets[2].kd == 1.0);
        // right_wheel: scale 8, kd 0.3
        assert!(close(targets[5].qd_radps, -4.0) && targets[5].kp == 0.0 && targets[5].kd == 0.3);
        assert!(close(targets[4].q_rad, -1.2 + 0.0625));
        let mut bad = [0.0f32, f32::NAN, 0.0, 0.0, 0.0, 0.0];
        assert!(map.clip(&mut bad).is_err());
    }
}
