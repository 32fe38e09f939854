//! Protocols: pure, allocation-free codecs with typed errors. MIT-mode motor frames (`mit`), the
//! slcan (Lawicel) line format (`slcan`), WitMotion IMU frames (`witmotion`); the firmware bridge's
//! wire format is its own crate (`firmware_bridge`).
//!
//! Not for: I/O, timing, or deciding anything.

pub mod mit;
pub mod slcan;
pub mod witmotion;
