//! Teleop and telemetry over zenoh: the daemon's side (`server`) and the operator's client
//! (`client`, `locod teleop`; `script`, its scripted drives), with the payloads both speak (`wire`).
//!
//! The zenoh session runs on its own multi-thread tokio runtime at normal priority. Commands
//! reach the control thread only through `control::inputs::Commander`; telemetry comes from a
//! snapshot reader of its own and from the supervisor, which forwards events and loop timing. A
//! slow or broken network therefore never delays a control tick.
//!
//! Not for: arbitration (the control loop's `Arbiter` decides; this module only drops what is
//! malformed before it gets there) or deciding modes.

pub mod client;
pub mod script;
pub mod server;
pub mod session;
pub mod wire;

pub use server::{Server, TelemetryFeed};
pub use session::TeleopError;

/// The keys under the prefix, as one place names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub vel: String,
    pub auto_vel: String,
    pub mode: String,
    pub estop: String,
    pub reload: String,
    pub controller: String,
    pub state: String,
    pub diag: String,
    /// The ROS 2 Twist key; `None` when turned off.
    pub ros_cmd_vel: Option<String>,
}

impl Keys {
    pub fn new(prefix: &str, ros_cmd_vel: &str) -> Self {
        Self {
            vel: format!("{prefix}/cmd/vel"),
            auto_vel: format!("{prefix}/cmd/auto/vel"),
            mode: format!("{prefix}/cmd/mode"),
            estop: format!("{prefix}/cmd/estop"),
            reload: format!("{prefix}/cmd/reload"),
            controller: format!("{prefix}/cmd/controller"),
            state: format!("{prefix}/state"),
            diag: format!("{prefix}/diag"),
            ros_cmd_vel: (!ros_cmd_vel.is_empty()).then(|| ros_cmd_vel.to_string()),
        }
    }

    pub fn of(config: &crate::config::Config) -> Self {
        let ros = config.teleop.as_ref().map_or("", |t| t.ros_cmd_vel_key.as_str());
        Self::new(&config.teleop_prefix(), ros)
    }
}
