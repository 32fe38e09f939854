//! The robot's I/O, by layer: `transport` (what carries frames and bytes), `protocol` (pure
//! codecs), `device` (motors on their buses, sensor links) and `doubles` (the in-memory robot, a
//! motor emulator). Values leaving `io` are joint-side and body-frame, as the ground-floor types
//! (`types`) define them; device-specific conversions (direction, offset, gear) happen here.
//! Sensor devices deliver raw readings; mounting and filtering are `estimate`'s.
//!
//! Not for: estimation, policies, or deciding anything.

pub mod device;
pub mod doubles;
pub mod protocol;
pub mod transport;

/// Receive threads (CAN buses, IMU, firmware bridge) run one SCHED_FIFO step below the control
/// thread (when it has one): they stamp arrivals, and ordinary load must not make fresh data stale.
pub(crate) fn receive_rt(config: &crate::config::Config) -> crate::rt::thread::RtSpec {
    crate::rt::thread::RtSpec { fifo_priority: (config.rate.priority > 1).then(|| config.rate.priority - 1), cpu: None }
}
