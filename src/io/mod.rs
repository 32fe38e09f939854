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

/// Why the robot's I/O could not be opened. `source()` is the leaf error where there is one, so
/// the journal (`report::chain`) shows the whole chain.
#[derive(Debug)]
pub enum OpenError {
    /// A configured bus would not open.
    Bus { bus: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// The configuration asks for something this I/O cannot do (a missing port, a motor without
    /// its table, an IMU kind without a device).
    Config(String),
    /// A receive thread could not be started.
    Thread(crate::rt::thread::SpawnError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Bus { bus, .. } => write!(f, "bus {bus}"),
            OpenError::Config(message) => f.write_str(message),
            OpenError::Thread(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Bus { source, .. } => Some(source.as_ref()),
            OpenError::Config(_) => None,
            OpenError::Thread(e) => e.source(),
        }
    }
}

impl From<crate::rt::thread::SpawnError> for OpenError {
    fn from(e: crate::rt::thread::SpawnError) -> Self {
        OpenError::Thread(e)
    }
}
