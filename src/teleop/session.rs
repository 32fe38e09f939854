//! Opening zenoh sessions the way locod wants them: the daemon listens on `[teleop] listen`
//! (loopback by default) or uses a complete zenoh file; a client connects and listens nowhere.
//! Multicast scouting is off unless a zenoh file turns it on.
//!
//! Not for: keys and payloads (`wire`, `Keys`).

use crate::config::Config;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum TeleopError {
    /// The zenoh configuration (file or generated) is not valid.
    Config { file: Option<PathBuf>, message: String },
    /// The session could not open (an endpoint in use, a certificate missing, ...).
    Open(String),
    /// A publisher or subscriber could not be declared.
    Declare { key: String, message: String },
    /// The tokio runtime could not start.
    Runtime(std::io::Error),
    /// `[teleop]` is absent from the robot's configuration.
    NotConfigured,
}

impl fmt::Display for TeleopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeleopError::Config { file: Some(p), message } => {
                write!(f, "zenoh configuration {}: {message}", p.display())
            }
            TeleopError::Config { file: None, message } => write!(f, "zenoh configuration: {message}"),
            TeleopError::Open(m) => write!(f, "cannot open the zenoh session: {m}"),
            TeleopError::Declare { key, message } => write!(f, "cannot declare {key}: {message}"),
            TeleopError::Runtime(e) => write!(f, "cannot start the teleop runtime: {e}"),
            TeleopError::NotConfigured => f.write_str("the configuration has no [teleop] section"),
        }
    }
}

impl std::error::Error for TeleopError {}

/// Which end of the link a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The daemon: listens.
    Robot,
    /// An operator or tool: connects, listens nowhere.
    Operator,
}

fn insert(c: &mut zenoh::Config, key: &str, value: &str) -> Result<(), TeleopError> {
    c.insert_json5(key, value).map_err(|e| TeleopError::Config { file: None, message: format!("{key}: {e}") })
}

/// The zenoh configuration for `role` from the robot's configuration.
pub fn zenoh_config(config: &Config, role: Role) -> Result<zenoh::Config, TeleopError> {
    let t = config.teleop.as_ref().ok_or(TeleopError::NotConfigured)?;
    let file = match role {
        Role::Robot => t.zenoh_config.as_deref(),
        Role::Operator => t.client_zenoh_config.as_deref(),
    };
    if let Some(file) = file {
        let path = config.resolve(file);
        return zenoh::Config::from_file(&path)
            .map_err(|e| TeleopError::Config { file: Some(path.clone()), message: e.to_string() });
    }
    let endpoints = serde_json::to_string(&t.listen).unwrap_or_default();
    let mut c = zenoh::Config::default();
    insert(&mut c, "mode", "\"peer\"")?;
    insert(&mut c, "scouting/multicast/enabled", "false")?;
    match role {
        Role::Robot => insert(&mut c, "listen/endpoints", &endpoints)?,
        Role::Operator => {
            insert(&mut c, "listen/endpoints", "[]")?;
            insert(&mut c, "connect/endpoints", &endpoints)?;
        }
    }
    Ok(c)
}

/// The TLS files a zenoh configuration may name (`transport/link/tls/...`).
const TLS_FILES: [&str; 5] =
    ["root_ca_certificate", "listen_certificate", "listen_private_key", "connect_certificate", "connect_private_key"];

/// What the daemon (`Role::Robot`) and `locod teleop` (`Role::Operator`) would open of the
/// zenoh side, checked without opening a session: each configured zenoh file exists and parses,
/// and every TLS certificate or key it names can be read. What `locod check` runs; an error
/// comes with the `[teleop]` key that names the file.
pub(crate) fn check_files(config: &Config) -> Result<(), (&'static str, TeleopError)> {
    let Some(t) = &config.teleop else { return Ok(()) };
    for (role, key, file) in [
        (Role::Robot, "teleop.zenoh_config", &t.zenoh_config),
        (Role::Operator, "teleop.client_zenoh_config", &t.client_zenoh_config),
    ] {
        let Some(file) = file else { continue };
        let path = config.resolve(file);
        if !path.is_file() {
            return Err((key, TeleopError::Config { file: Some(path), message: "no such file".into() }));
        }
        let c = zenoh_config(config, role).map_err(|e| (key, e))?;
        for name in TLS_FILES {
            let tls_key = format!("transport/link/tls/{name}");
            let Ok(json) = c.get_json(&tls_key) else { continue };
            let Ok(serde_json::Value::String(tls)) = serde_json::from_str::<serde_json::Value>(&json) else {
                continue;
            };
            // zenoh reads these relative to the daemon's working directory.
            if let Err(e) = std::fs::File::open(&tls) {
                let message = format!("{tls_key}: {tls}: {e}");
                return Err((key, TeleopError::Config { file: Some(path), message }));
            }
        }
    }
    Ok(())
}

/// Opens a session (blocking; for code outside an async context).
pub fn open_blocking(c: zenoh::Config) -> Result<zenoh::Session, TeleopError> {
    use zenoh::Wait;
    zenoh::open(c).wait().map_err(|e| TeleopError::Open(e.to_string()))
}
