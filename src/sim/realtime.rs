//! `locod sim`: the simulator as a process, in real time, behind the robot's real protocols.
//!
//! One thread does everything, in the order a robot's hardware would: it waits (poll) on both
//! pseudo-terminals until the next physics step is due, answers every CAN frame as soon as it
//! arrives (the motors reply to each command at once, with their state at the last step), feeds
//! host bytes to the sensor board, steps the physics on absolute deadlines, and writes what the
//! board has due. The ports' slave ends are linked at the configured `[[bus]] device` (kind
//! "slcan") and `[bridge] port`; the links are removed on exit. SIGINT/SIGTERM stop it.
//!
//! Not for: the daemon (it runs as its own process and sees only the ports) or lock-step runs.

use super::board::Board;
use super::motors::SimMotors;
use super::world::World;
use super::{settings, FaultKind, ScheduledFault, SimError};
use crate::config::{BusKind, Config};
use crate::io::protocol::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::io::transport::serial::Port;
use crate::report;
use crate::rt::clock::{monotonic_ns, NS_PER_S};
use serde::Serialize;
use serialport::SerialPort;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Clone, Debug, Default)]
pub struct RealtimeOptions {
    /// Stop after this much simulated time.
    pub duration_s: Option<f64>,
    pub real_world: bool,
    pub faults: Vec<ScheduledFault>,
    /// Seconds between status lines (0 = none).
    pub status_interval_s: f64,
}

/// What a run did, printed at exit.
#[derive(Clone, Debug, Serialize)]
pub struct RealtimeSummary {
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    pub steps: u64,
    /// Steps whose deadline had passed by more than a step when they ran.
    pub(crate) late_steps: u64,
    pub(crate) can_frames_in: u64,
    pub(crate) can_replies: u64,
    pub(crate) bridge_frames_out: u64,
    /// Bridge bytes dropped because nobody read the port.
    pub(crate) bridge_bytes_dropped: u64,
    pub stopped_by: String,
}

/// A pseudo-terminal whose slave end is linked at a stable path for as long as it lives.
pub(crate) struct LinkedPty {
    pub master: Port,
    _slave: serialport::TTYPort,
    link: PathBuf,
}

impl LinkedPty {
    pub fn open(link: &Path) -> Result<Self, SimError> {
        let (master, slave) =
            serialport::TTYPort::pair().map_err(|e| SimError::Port(format!("cannot open a pseudo-terminal: {e}")))?;
        let name = slave.name().ok_or_else(|| SimError::Port("the pseudo-terminal has no name".into()))?;
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SimError::Port(format!("{}: {e}", dir.display())))?;
        }
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => {
                let _ = std::fs::remove_file(link);
            }
            Ok(_) => {
                return Err(SimError::Port(format!("{} exists and is not a link; not replacing it", link.display())))
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&name, link)
            .map_err(|e| SimError::Port(format!("cannot link {} -> {name}: {e}", link.display())))?;
        let master = Port::from_tty(master).map_err(|e| SimError::Port(e.to_string()))?;
        Ok(Self { master, _slave: slave, link: link.to_path_buf() })
    }

    pub fn link(&self) -> &Path {
        &self.link
    }
}

impl Drop for LinkedPty {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}

/// The port paths the configuration gives the daemon: the slcan bus and the bridge.
pub(crate) fn port_paths(config: &Config) -> Result<(PathBuf, PathBuf), SimError> {
    if config.buses.len() != 1 || config.buses[0].kind != BusKind::Slcan {
        return Err(SimError::Config(
            "the simulator emulates one slcan bus: expected one [[bus]] with kind = \"slcan\"".into(),
        ));
    }
    let can = config.buses[0].device.clone().ok_or_else(|| SimError::Config("[[bus]] device is missing".into()))?;
    let bridge =
        config.bridge.as_ref().ok_or_else(|| SimError::Config("the simulator needs a [bridge] port".into()))?;
    Ok((PathBuf::from(can), PathBuf::from(&bridge.port)))
}

fn wait_readable(fds: &mut [libc::pollfd], timeout_ns: u64) {
    let ts = libc::timespec { tv_sec: (timeout_ns / NS_PER_S) as _, tv_nsec: (timeout_ns % NS_PER_S) as _ };
    // SAFETY: `fds` is a valid, writable array of pollfd of the length passed; `ts` is valid and
    // the signal mask pointer may be null.
    unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
}

/// Runs the simulator until SIGINT/SIGTERM, `duration_s`, or an `exit` fault.
pub fn run(config: &Config, opts: &RealtimeOptions) -> Result<RealtimeSummary, SimError> {
    let (sim, p) = settings(config.sim.as_ref(), opts.real_world);
    let (can_path, bridge_path) = port_paths(config)?;
    let mut world = World::load(config, &sim, &p)?;
    let mut motors = SimMotors::new(config, &sim.motors, p.motor_strength, p.extra_latency_ms, sim.seed)
        .map_err(SimError::Config)?;
    let mut faults = opts.faults.clone();
    for f in &faults {
        if let FaultKind::MotorSilent(name) = &f.kind {
            super::check_joint(&config.joints, name)?;
        }
    }
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut faults = faults.into_iter().peekable();

    let mut can = LinkedPty::open(&can_path)?;
    let mut bridge = LinkedPty::open(&bridge_path)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    report::info(format!(
        "sim: {} ({}), {} Hz physics{}; motors on slcan at {}, sensor board at {}",
        world.path().display(),
        if world.held() { "held by a gantry until the first leg command" } else { "free" },
        sim.physics_hz,
        if opts.real_world { ", real-world perturbations" } else { "" },
        can.link().display(),
        bridge.link().display()
    ));

    // Hardware is never starved by the daemon's real-time threads: neither is the simulator, when
    // it may use SCHED_FIFO (just above the daemon's control thread; it sleeps between events).
    let rt = crate::rt::thread::apply(crate::rt::thread::RtSpec {
        fifo_priority: (config.rate.priority > 0).then(|| (config.rate.priority + 1).min(99)),
        cpu: None,
    });
    if !rt.all_granted() {
        report::warn(format!("sim: {rt}; the daemon's real-time threads may delay the simulated hardware"));
    }
    let start_ns = monotonic_ns();
    let dt_ns = (world.timestep_s() * 1e9).round() as u64;
    let mut board =
        Board::new(&sim.imu, &sim.depth, p.noise_scale, p.extra_latency_ms, sim.seed, world.tof_sensors(), 0);
    let mut decoder = SlcanDecoder::new();
    let mut buf = [0u8; 4096];
    let mut line = [0u8; slcan::MAX_ENCODED_LEN];
    let mut replies_out = Vec::with_capacity(4096);
    let mut board_out = Vec::with_capacity(8192);
    let mut torques = vec![0.0; world.joint_count()];
    // The encoders read the starting pose before any step.
    let world_ref = &world;
    motors.torques(0, |j| world_ref.joint(j), &mut torques);
    let mut summary = RealtimeSummary {
        sim_seconds: 0.0,
        wall_seconds: 0.0,
        steps: 0,
        late_steps: 0,
        can_frames_in: 0,
        can_replies: 0,
        bridge_frames_out: 0,
        bridge_bytes_dropped: 0,
        stopped_by: "SIGINT/SIGTERM".into(),
    };
    let status_ns = (opts.status_interval_s * 1e9) as u64;
    let mut next_status = status_ns;
    let end_ns = opts.duration_s.map(|d| (d * 1e9) as u64);
    let mut step: u64 = 0;

    while !STOP.load(Ordering::Relaxed) {
        let sim_ns = step * dt_ns;
        if end_ns.is_some_and(|e| sim_ns >= e) {
            summary.stopped_by = "duration elapsed".into();
            break;
        }
        let deadline = start_ns + sim_ns;
        // Serve the ports until the step is due.
        loop {
            let now = monotonic_ns();
            let mut fds = [
                libc::pollfd { fd: can.master.fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: bridge.master.fd(), events: libc::POLLIN, revents: 0 },
            ];
            if now < deadline {
                wait_readable(&mut fds, deadline - now);
            } else {
                wait_readable(&mut fds, 0);
            }
            let mcu_now = monotonic_ns() - start_ns;
            if fds[0].revents & libc::POLLIN != 0 {
                if let Ok(n) = can.master.read(&mut buf, Duration::ZERO) {
                    replies_out.clear();
                    for event in decoder.decode(&buf[..n]) {
                        if let Ok(SlcanEvent::Frame(f)) = event {
                            summary.can_frames_in += 1;
                            if let Some(reply) = motors.receive(&f, mcu_now) {
                                if let Ok(len) = slcan::encode_frame(&reply, &mut line) {
                                    replies_out.extend_from_slice(&line[..len]);
                                    summary.can_replies += 1;
                                }
                            }
                        }
                    }
                    if !replies_out.is_empty() {
                        let _ = can.master.write_all(&replies_out, Duration::from_millis(5));
                    }
                }
            }
            if fds[1].revents & libc::POLLIN != 0 {
                if let Ok(n) = bridge.master.read(&mut buf, Duration::ZERO) {
                    board.receive(&buf[..n], mcu_now);
                }
            }
            if monotonic_ns() >= deadline || STOP.load(Ordering::Relaxed) {
                break;
            }
        }
        if monotonic_ns() > deadline + dt_ns {
            summary.late_steps += 1;
        }

        while let Some(f) = faults.next_if(|f| (f.at_s * 1e9) as u64 <= sim_ns) {
            report::warn(format!("sim: injecting {:?} at {:.2} s", f.kind, sim_ns as f64 * 1e-9));
            if board.inject(&f.kind, sim_ns) {
                continue;
            }
            match f.kind {
                FaultKind::ImuStop | FaultKind::ImuGap(_) | FaultKind::DepthStop | FaultKind::BridgeGarbage => {}
                FaultKind::MotorSilent(name) => motors.set_silent(super::check_joint(&config.joints, &name)?, true),
                FaultKind::Exit => {
                    report::error("sim: exiting at once (injected crash)");
                    std::process::exit(3);
                }
            }
        }

        let world_ref = &world;
        motors.torques(sim_ns, |j| world_ref.joint(j), &mut torques);
        world.step(&torques);
        if world.held() && motors.commanded() {
            world.release();
            report::info(format!("sim: the gantry let go at {:.2} s (legs commanded)", sim_ns as f64 * 1e-9));
        }
        step += 1;
        summary.steps += 1;

        board_out.clear();
        board.poll(step * dt_ns, &world, &mut board_out);
        if !board_out.is_empty() {
            match bridge.master.write_nonblocking(&board_out) {
                Ok(n) => summary.bridge_bytes_dropped += (board_out.len() - n) as u64,
                Err(_) => summary.bridge_bytes_dropped += board_out.len() as u64,
            }
        }

        if status_ns > 0 && step * dt_ns >= next_status {
            next_status += status_ns;
            let (pos, q) = world.base_pose();
            let [_, x, y, _] = q;
            let tilt = (1.0 - 2.0 * (x * x + y * y)).clamp(-1.0, 1.0).acos().to_degrees();
            let wall = (monotonic_ns() - start_ns) as f64 * 1e-9;
            report::info(format!(
                "sim: t {:.1} s (x{:.2} real time), base at ({:.2}, {:.2}, {:.3}) m, tilt {:.1} deg; CAN {} in / {} replies",
                world.time_s(),
                world.time_s() / wall.max(1e-9),
                pos[0],
                pos[1],
                pos[2],
                tilt,
                summary.can_frames_in,
                summary.can_replies
            ));
        }
    }
    summary.sim_seconds = world.time_s();
    summary.wall_seconds = (monotonic_ns() - start_ns) as f64 * 1e-9;
    summary.bridge_frames_out = board.frames_sent;
    Ok(summary)
}

impl std::fmt::Display for RealtimeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sim: stopped ({}) after {:.1} s simulated in {:.1} s; {} steps ({} late), CAN {} in / {} replies, bridge {} frames ({} bytes dropped)",
            self.stopped_by, self.sim_seconds, self.wall_seconds, self.steps, self.late_steps, self.can_frames_in,
            self.can_replies, self.bridge_frames_out, self.bridge_bytes_dropped
        )
    }
}
