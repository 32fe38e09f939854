//! The `[sim]` table: what the MuJoCo simulator (`locod sim`) simulates and how far it departs from
//! the nominal robot. The daemon ignores it; the simulator reads the rest of the same file to know
//! which motors, ids, directions and ports the "hardware" must have, so both ends always agree.
//!
//! Not for: anything MuJoCo-specific (that is `sim`, behind the cargo feature); this is only what
//! the user asked for.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sim {
    /// The scene's MJCF file, relative to the configuration file.
    pub model: String,
    /// The keyframe the robot starts from.
    pub(crate) keyframe: String,
    /// Physics rate; the motors' PD laws run at this rate too.
    pub(crate) physics_hz: u32,
    /// Hold the base still (a gantry) until the first leg command with position gain arrives, so
    /// the robot does not fall while the daemon starts.
    pub(crate) hold_until_commanded: bool,
    /// Seed of every noise source and drop-out.
    pub seed: u64,
    /// Where lock-step (`locod sim --lockstep`, `locod eval`) takes the attitude from: the IMU's
    /// truth, as a converged filter would report it, or the daemon's own filter (`[imu]`
    /// orientation and filter_gains) on the board's noisy gyro and accelerometer, as the robot
    /// does. The real-time simulator always sends raw readings to the daemon's filter.
    pub(crate) lockstep_attitude: LockstepAttitude,
    pub imu: SimImu,
    pub depth: SimDepth,
    pub motors: SimMotors,
    /// The "real world" that `locod sim --real-world` simulates instead of the nominal robot.
    pub real_world: Perturbation,
}

impl Default for Sim {
    fn default() -> Self {
        Self {
            model: "../models/robots/biwheel/scene_flat.xml".into(),
            keyframe: "crouch".into(),
            physics_hz: 1000,
            hold_until_commanded: true,
            seed: 1,
            lockstep_attitude: LockstepAttitude::Truth,
            imu: SimImu::default(),
            depth: SimDepth::default(),
            motors: SimMotors::default(),
            real_world: Perturbation::real_world(),
        }
    }
}

/// See `Sim::lockstep_attitude`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LockstepAttitude {
    Truth,
    Filter,
}

/// The IMU on the bridge board.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimImu {
    pub rate_hz: u32,
    /// White noise, standard deviation per sample.
    pub(crate) gyro_noise_radps: f64,
    pub(crate) accel_noise_mps2: f64,
    /// Constant gyro bias, body axes.
    #[serde(deserialize_with = "super::exactly")]
    pub(crate) gyro_bias_radps: [f64; 3],
    /// From measurement to the frame leaving the board.
    pub latency_ms: f64,
    /// Probability that a sample is not sent.
    pub(crate) dropout: f64,
    /// Send the true attitude (a fusing IMU) besides gyro and accelerometer.
    pub(crate) send_quaternion: bool,
}

impl Default for SimImu {
    fn default() -> Self {
        Self {
            rate_hz: 500,
            gyro_noise_radps: 0.004,
            accel_noise_mps2: 0.04,
            gyro_bias_radps: [0.0; 3],
            latency_ms: 0.5,
            dropout: 0.0,
            send_quaternion: false,
        }
    }
}

/// The two ToF sensors on the bridge board (their rays are in the MJCF).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimDepth {
    /// Per sensor (VL53L8CX at 8x8: up to 15 Hz).
    pub rate_hz: u32,
    pub(crate) noise_m: f64,
    /// Probability that a zone reads "no target".
    pub(crate) dropout: f64,
}

impl Default for SimDepth {
    fn default() -> Self {
        Self { rate_hz: 15, noise_m: 0.01, dropout: 0.02 }
    }
}

/// The motors' own imperfections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimMotors {
    /// Encoder noise before the wire's quantisation.
    pub(crate) encoder_noise_rad: f64,
    /// Probability that a motor does not answer one command.
    pub(crate) reply_dropout: f64,
    /// From a command arriving to the motor applying it.
    pub latency_ms: f64,
}

impl Default for SimMotors {
    fn default() -> Self {
        Self { encoder_noise_rad: 0.0, reply_dropout: 0.0, latency_ms: 0.0 }
    }
}

/// Departures from the nominal model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Perturbation {
    /// A scene replacing `model` (e.g. the soft floor), relative to the configuration file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Every body's mass (and inertia) times this.
    pub(crate) mass_scale: f64,
    /// Payload added to the base, kg.
    pub(crate) base_payload_kg: f64,
    /// Every geom's sliding friction times this.
    pub(crate) friction_scale: f64,
    /// Every motor's torque times this (weaker or stronger motors than their data sheet).
    pub(crate) motor_strength: f64,
    /// Added to the motors' and the IMU's latency.
    pub(crate) extra_latency_ms: f64,
    /// Sensor noise times this.
    pub(crate) noise_scale: f64,
}

impl Perturbation {
    /// No departure at all.
    pub fn nominal() -> Self {
        Self {
            model: None,
            mass_scale: 1.0,
            base_payload_kg: 0.0,
            friction_scale: 1.0,
            motor_strength: 1.0,
            extra_latency_ms: 0.0,
            noise_scale: 1.0,
        }
    }

    /// The default "real world": heavier, more slippery, weaker, later and noisier than nominal.
    pub fn real_world() -> Self {
        Self {
            model: None,
            mass_scale: 1.08,
            base_payload_kg: 0.8,
            friction_scale: 0.7,
            motor_strength: 0.9,
            extra_latency_ms: 2.0,
            noise_scale: 2.0,
        }
    }
}

impl Default for Perturbation {
    fn default() -> Self {
        Self::real_world()
    }
}
