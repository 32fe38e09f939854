//! systemd integration without libsystemd: `sd_notify` datagrams (READY, STATUS, STOPPING,
//! WATCHDOG) and the watchdog interval systemd asks for.
//!
//! Outside systemd (no NOTIFY_SOCKET) every call is a no-op. The decision *when* to ping belongs to
//! the supervisor (see `daemon`), which pings only while the control loop makes progress.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` when systemd set it.
    pub(crate) fn from_env() -> Self {
        Self::for_socket(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    /// Connects to the given socket path (`@name` for an abstract socket).
    pub(crate) fn for_socket(path: Option<&str>) -> Self {
        let target = path.and_then(|p| {
            let addr = match p.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(p).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Self { target }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification, e.g. `"READY=1"`. Failures are ignored: systemd notices on its own.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            let _ = sock.send_to_addr(state.as_bytes(), addr);
        }
    }

    pub(crate) fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    pub(crate) fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    pub fn watchdog_trigger(&self) {
        self.notify("WATCHDOG=trigger");
    }
}

/// The watchdog timeout systemd set for this process (`WatchdogSec=`), if any.
pub(crate) fn watchdog_timeout() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::for_socket(Some(path.to_str().unwrap()));
        assert!(n.is_active());
        n.ready("running");
        n.watchdog();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn without_systemd_it_is_silent() {
        let n = Notifier::for_socket(None);
        assert!(!n.is_active());
        n.ready("x");
    }
}
