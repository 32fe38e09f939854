//! The hardware boundary: what the control loop reads from the robot and writes to it.
//!
//! `Hardware` is the ros2_control split: `read` fills a sensor frame, `write` sends motor
//! commands, and neither knows what a policy or a mode is. Implementations: the in-memory robot
//! (`mem`), and real transports and devices as they are added. Values here are joint-side and
//! body-frame; device-specific conversions (direction, offset, gear, mounting) happen inside the
//! implementation. Not for: deciding anything.

pub mod bridge;
pub mod bus;
pub mod can;
pub mod can_motors;
pub mod imu;
pub mod mem;
pub mod membus;
pub mod mit;
pub mod motor_emulator;
pub mod motors;
pub mod serial;
pub mod slcan;
pub mod slcan_bus;
pub mod socketcan;
pub mod stats;
pub mod witmotion;

/// Receive threads (CAN buses, IMU, firmware bridge) run one SCHED_FIFO step below the control
/// thread (when it has one): they stamp arrivals, and ordinary load must not make fresh data stale.
pub(crate) fn receive_rt(config: &crate::config::Config) -> crate::rt::thread::RtSpec {
    crate::rt::thread::RtSpec { fifo_priority: (config.rate.priority > 1).then(|| config.rate.priority - 1), cpu: None }
}
