//! A daemon on the in-memory robot with teleop on a free loopback port, and an operator's link
//! to it: what the teleop tests share.

#![allow(dead_code)]

use locod::config::Config;
use locod::daemon::{self, RunOptions, RunSummary};
use locod::teleop::client::Link;
use locod::teleop::wire::StateMsg;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn example() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml");
    let mut c = Config::load(std::path::Path::new(path)).unwrap();
    c.rate.lock_memory = false;
    c.rate.status_interval_s = 0.0;
    c.teleop = Some(Default::default());
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The in-memory example with teleop (defaults) listening on a free loopback port.
pub fn loopback_config() -> Config {
    let mut c = example();
    c.teleop.as_mut().unwrap().listen = vec![format!("tcp/127.0.0.1:{}", free_port())];
    c
}

pub struct Daemon {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<RunSummary, locod::daemon::DaemonError>>>,
}

impl Daemon {
    pub fn start(config: &Config) -> Daemon {
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (config.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            daemon::run(
                &c,
                RunOptions { duration: Some(Duration::from_secs(120)), stop: Some(s), ..Default::default() },
            )
        });
        Daemon { stop, handle: Some(handle) }
    }

    pub fn stop(mut self) -> RunSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `link`'s newest state until `ok` holds; panics with the last state after `within`.
pub fn wait_for(link: &Link, what: &str, within: Duration, ok: impl Fn(&StateMsg) -> bool) -> StateMsg {
    let end = Instant::now() + within;
    loop {
        let s = link.state();
        if let Some(s) = &s {
            if ok(s) {
                return s.clone();
            }
        }
        assert!(Instant::now() < end, "{what}: not reached within {within:?}; last state {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Generous: these tests check behaviour, not speed, on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);
