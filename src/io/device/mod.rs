//! Devices: the configured motors on their buses (`can_motors`, with `motors` mapping joints to
//! motors and routing replies), the WitMotion IMU's receive thread (`witmotion_imu`), the firmware
//! bridge link (`bridge`), and their health counters (`stats`). Sensor devices deliver raw
//! readings to a `types::SensorSink`; the robot assembly (`robot`) composes them with estimation.
//!
//! Not for: estimation, or deciding anything.

pub mod bridge;
pub mod can_motors;
pub mod motors;
pub mod stats;
pub(crate) mod witmotion_imu;
