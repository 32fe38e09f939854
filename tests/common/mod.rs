//! Shared by the integration tests: the firmware-bridge emulator process, and emulated motors
//! behind an slcan adapter on a pseudo-terminal.
#![allow(dead_code)] // each test file uses part of it

pub mod alloc;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Tests that run a real-time daemon against emulated devices take this first: one at a time,
/// they neither starve each other's emulators on a 2-core machine nor inherit each other's
/// pseudo-terminals through concurrent spawns.
pub fn one_daemon_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The variables `cargo test` sets for a test process that a build started from the test must not
/// see: build scripts track some of them with `rerun-if-env-changed` (ring's: `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...), so a build that inherited them would not be the build `make run`
/// makes from the shell, and the two would rebuild ring, rustls and zenoh in turn.
pub fn set_by_cargo_test(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_CFG_", "CARGO_FEATURE_"]
        .iter()
        .any(|p| name.starts_with(p))
        || matches!(name, "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR")
}

/// `cmd` with the environment of the shell that ran `cargo test`: without what `cargo test` added.
pub fn shell_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_test) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// `cargo`, in this workspace, as the shell that ran the tests would run it.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    shell_env(&mut cmd).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// `target/PROFILE/NAME` of this workspace, after `cargo build ARGS` (skipped when `always` is
/// false and the binary exists).
fn cargo_built(profile: &str, name: &str, args: &[&str], always: bool) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join(profile).join(name);
    if always || !path.exists() {
        let status = cargo().arg("build").args(args).status().expect("run cargo build");
        assert!(status.success(), "cargo build {args:?} failed");
    }
    path
}

/// The `bridge-emu` binary, built if `cargo test` did not build it (`make test` does).
pub fn bridge_emu() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| cargo_built("debug", "bridge-emu", &["-p", "firmware-bridge", "--bin", "bridge-emu"], false))
}

pub struct Emu(pub Child);

impl Emu {
    pub fn spawn(link: &Path, args: &[&str]) -> Emu {
        let mut child = Command::new(bridge_emu())
            .args(["--link", link.to_str().unwrap(), "--duration", "60"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bridge-emu");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("PTY /dev/"), "bad first line {line:?}");
        Emu(child)
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Emulated MIT-mode motors behind an emulated slcan adapter whose tty is reachable at `link`.
pub struct SlcanMotors {
    pub faults: std::sync::Arc<locod::io::doubles::motor_emulator::EmulatorFaults>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlcanMotors {
    pub fn start(config: &locod::config::Config, link: &Path) -> SlcanMotors {
        Self::start_at(config, link, &[])
    }

    /// The motors with some resting at other (motor-side) angles than zero: `(joint, q_rad)`.
    pub fn start_at(config: &locod::config::Config, link: &Path, positions: &[(usize, f32)]) -> SlcanMotors {
        use serialport::SerialPort as _;
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave); // it holds serialport's exclusive flock, which the daemon must get
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&name, link).unwrap();
        // A plain handle (no lock) keeps the pty's slave side open between the daemon's opens.
        std::mem::forget(std::fs::File::open(&name).unwrap());
        let (mut emu, faults) = locod::io::doubles::motor_emulator::MotorEmulator::new(config, 0).unwrap();
        for &(joint, q_rad) in positions {
            emu.set_position(joint, q_rad);
        }
        let thread = emu.serve_slcan(locod::io::transport::serial::Port::from_tty(master).unwrap());
        SlcanMotors { faults, thread: Some(thread) }
    }
}

impl Drop for SlcanMotors {
    fn drop(&mut self) {
        self.faults.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The release `locod`: the simulator runs from an optimised build (an unoptimised one cannot keep
/// 1 kHz physics and prompt motor replies next to the daemon on a 2-core machine). Built here if
/// `make test` did not build it.
pub fn release_locod() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    // Always built: an existing release binary may be older than the sources (cargo is quick when
    // it is not).
    PATH.get_or_init(|| cargo_built("release", "locod", &["--release", "--bin", "locod"], true))
}

/// config/sim.toml made private to one test: its ports in a temporary directory (not
/// /tmp/locod-sim, which `make run` uses), teleop on `teleop_port` (0: any free port), the models
/// found from anywhere.
pub struct SimRig {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl SimRig {
    pub fn new(teleop_port: u16) -> SimRig {
        let dir = tempfile::tempdir().unwrap();
        let sim_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml");
        let text = std::fs::read_to_string(sim_toml).unwrap();
        assert!(text.contains("/tmp/locod-sim/") && text.contains("tcp/127.0.0.1:7447"), "config/sim.toml changed");
        let text = text
            .replace("/tmp/locod-sim/", &format!("{}/", dir.path().display()))
            .replace("\"../models/", concat!("\"", env!("CARGO_MANIFEST_DIR"), "/models/"))
            .replace("tcp/127.0.0.1:7447", &format!("tcp/127.0.0.1:{teleop_port}"));
        let config = dir.path().join("sim.toml");
        std::fs::write(&config, text).unwrap();
        SimRig { dir, config }
    }

    /// A 100 ms motor timeout instead of config/sim.toml's 20 ms. The real-time tests are about the
    /// ports, the modes and teleop, not this shared host's clock: a stall of it (CI saw 21 ms
    /// between two replies, wake-up max 12.7 ms) must not end StandUp on a "silent" motor. The
    /// product's 20 ms is what `scripts/field-check.sh` measures.
    pub fn patient_motors(self) -> SimRig {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let key = "motor_timeout_ms = 20.0 ";
        assert!(text.contains(key), "config/sim.toml changed");
        std::fs::write(&self.config, text.replace(key, "motor_timeout_ms = 100.0 ")).unwrap();
        self
    }

    /// Starts `locod sim` on the rig's configuration and waits until its ports exist.
    pub fn start_sim(&self, args: &[&str], stderr: Stdio) -> Child {
        let child = Command::new(release_locod())
            .args(["sim", "--config"])
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(self.dir.path().join("can0").exists() && self.dir.path().join("bridge").exists()) {
            assert!(std::time::Instant::now() < deadline, "the simulator did not link its ports");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }
}
