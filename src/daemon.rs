//! The daemon: sets up the threads, runs until told to stop, and reports.
//!
//! Threads: the control thread (SCHED_FIFO, pinned, runs `ControlLoop::tick` on absolute
//! deadlines), the policy thread when a policy is configured (lower SCHED_FIFO priority), the
//! logger thread when `[log] enabled` (ordinary priority, tick records into MCAP files), teleop's
//! runtime when `[teleop]` is configured, the reload thread with a learned controller (ordinary
//! priority, `policy::reload`), a signal thread (SIGINT/SIGTERM set the stop flag, SIGHUP asks
//! for a reload), and the calling thread as supervisor: it drains the loop's events into the log
//! (and forwards each to teleop's telemetry), journals reloads, prints status, tells systemd
//! READY, and pings the watchdog only while the control loop's heartbeat advances.

mod journal;

use crate::config::Config;
use crate::control::goal::GoalSequencer;
use crate::control::inputs::{inbox, Commander};
use crate::control::messages::{EventKind, LevelCounts, Mode, Snapshot};
use crate::control::{ControlLoop, LoopTiming, TimingSummary};
use crate::io::device::can_motors::BusWatch;
use crate::io::transport::bus::BusCounts;
use crate::io::OpenError;
use crate::log::writer::{self as log_writer, LogStats, Logger};
use crate::policy::{self, reload, BuildError, Policy, PolicyStats};
use crate::report;
use crate::rt::clock::{monotonic_ns, MonotonicClock, NS_PER_MS, NS_PER_S};
use crate::rt::hist::Summary;
use crate::rt::sched::run_periodic;
use crate::rt::systemd::{self, Notifier};
use crate::rt::thread::{self, RtOutcome, Setup, SpawnError};
use crate::rt::triple::Reader;
use crate::teleop::{self, TelemetryFeed, TeleopError};
use crate::types::provenance::ModelProvenance;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Shadow steps the policy thread can queue ahead of the logger (a few seconds at 50 Hz).
pub(crate) const SHADOW_RING: usize = 256;

/// How long `--goal` waits quietly for faults (sensors still connecting) to clear.
const GOAL_PATIENCE_NS: u64 = 2 * NS_PER_S;

/// Why the daemon could not run. Each variant names the step that failed; `source()` leads to the
/// leaf error, and `report::chain` shows the whole chain in the journal.
#[derive(Debug)]
pub enum DaemonError {
    /// The robot's hardware would not open.
    Open(OpenError),
    /// The configured controller could not be checked or built.
    Policy(BuildError),
    /// Teleop could not start listening.
    Teleop(TeleopError),
    /// `Hardware::start` failed.
    HardwareStart(String),
    /// A thread could not be started.
    Thread(SpawnError),
    /// A thread panicked (which one).
    Panicked(&'static str),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Open(e) => e.fmt(f),
            DaemonError::Policy(e) => e.fmt(f),
            DaemonError::Teleop(_) => f.write_str("teleop"),
            DaemonError::HardwareStart(e) => write!(f, "hardware did not start: {e}"),
            DaemonError::Thread(e) => e.fmt(f),
            DaemonError::Panicked(which) => write!(f, "the {which} thread panicked"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Open(e) => e.source(),
            DaemonError::Policy(e) => e.source(),
            DaemonError::Teleop(e) => Some(e),
            DaemonError::Thread(e) => e.source(),
            DaemonError::HardwareStart(_) | DaemonError::Panicked(_) => None,
        }
    }
}

impl From<OpenError> for DaemonError {
    fn from(e: OpenError) -> Self {
        DaemonError::Open(e)
    }
}

impl From<BuildError> for DaemonError {
    fn from(e: BuildError) -> Self {
        DaemonError::Policy(e)
    }
}

impl From<SpawnError> for DaemonError {
    fn from(e: SpawnError) -> Self {
        DaemonError::Thread(e)
    }
}

pub use crate::control::goal::Goal;

/// What `run` would open beyond the configuration and the model, checked without opening it
/// (`locod check`): an error for what would stop `run` anywhere (a zenoh file, a certificate),
/// warnings for what depends on the machine (a device not plugged in here, a log directory that
/// cannot be created here). Errors and warnings name the configuration key.
pub fn preflight(config: &Config) -> Result<Vec<String>, String> {
    use crate::config::{BusKind, ImuKind};
    crate::teleop::session::check_files(config).map_err(|(key, e)| format!("{key}: {}", report::chain(&e)))?;
    let mut warnings = Vec::new();
    let absent = |key: String, what: &str, path: &std::path::Path| {
        format!("{key}: {what} {} is not present on this machine: `locod run` would fail here", path.display())
    };
    for (i, b) in config.buses.iter().enumerate() {
        let Some(dev) = &b.device else { continue };
        let (what, path) = match b.kind {
            BusKind::Mem => continue,
            BusKind::Socketcan => ("CAN interface", std::path::Path::new("/sys/class/net").join(dev)),
            BusKind::Slcan => ("serial port", std::path::PathBuf::from(dev)),
        };
        if !path.exists() {
            warnings.push(absent(format!("bus[{i}].device"), what, &path));
        }
    }
    if let (ImuKind::Witmotion, Some(port)) = (config.imu.kind, &config.imu.port) {
        if !std::path::Path::new(port).exists() {
            warnings.push(absent("imu.port".into(), "serial port", std::path::Path::new(port)));
        }
    }
    if let Some(b) = &config.bridge {
        if !std::path::Path::new(&b.port).exists() {
            warnings.push(absent("bridge.port".into(), "serial port", std::path::Path::new(&b.port)));
        }
    }
    if config.log.enabled {
        // The logger creates the directory: its nearest existing ancestor must be writable.
        let dir = &config.log.dir;
        let existing = dir.ancestors().find(|p| p.as_os_str().is_empty() || p.exists());
        let existing = match existing {
            Some(p) if p.as_os_str().is_empty() => std::path::Path::new("."),
            Some(p) => p,
            None => std::path::Path::new("/"),
        };
        if !writable_dir(existing) {
            warnings.push(format!(
                "log.dir: {} cannot be created or written here ({} is not a writable directory): the robot would run without logs",
                dir.display(),
                existing.display()
            ));
        }
    }
    Ok(warnings)
}

/// Whether this process may create entries in `dir` (access(2) with W_OK | X_OK).
fn writable_dir(dir: &std::path::Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    let r = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) };
    dir.is_dir() && r == 0
}

#[derive(Default)]
pub struct RunOptions {
    /// How long to control: counted from the control loop's start, after the models have loaded
    /// and warmed up, so that a slow start on a loaded machine does not shorten the run.
    pub duration: Option<Duration>,
    pub goal: Goal,
    /// A policy built by the caller (tests) instead of the configured controller; the logs then
    /// name no model.
    pub policy: Option<Box<dyn Policy>>,
    /// Set to stop the daemon as SIGTERM would (for embedding and tests).
    pub stop: Option<Arc<AtomicBool>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub seconds: f64,
    pub stopped_by: String,
    pub final_mode: Mode,
    pub faults_raised: u64,
    pub(crate) events_dropped: u64,
    pub(crate) control_thread: String,
    pub timing: TimingSummary,
    /// The policy thread's tick from its wake-up to the action published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_compute: Option<Summary>,
    /// The same from the deadline: the tick plus the wake-up latency and a late warm-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_latency: Option<Summary>,
    pub policy_errors: u64,
    /// Models the policy thread switched to by a reload.
    pub policy_swaps: u64,
    /// The shadow model's time per step (`[controller] shadow`), and steps the logger had no
    /// room for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_compute: Option<Summary>,
    pub shadow_dropped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSummary>,
    /// Per bus: frames and lines the receive side could not use (empty for the in-memory robot).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buses: Vec<BusSummary>,
}

/// One bus's receive-side counters at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct BusSummary {
    pub bus: String,
    #[serde(flatten)]
    pub counts: BusCounts,
}

/// What the transition log recorded during the run.
#[derive(Clone, Debug, Serialize)]
pub struct LogSummary {
    #[serde(flatten)]
    pub stats: LogStats,
    /// Records the control thread could not queue because the logger fell behind.
    pub records_dropped: u64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.timing;
        writeln!(f, "stopped after {:.1} s ({}), final mode {:?}", self.seconds, self.stopped_by, self.final_mode)?;
        writeln!(f, "  control thread: {}", self.control_thread)?;
        writeln!(f, "  ticks {}  skipped {}  overruns {}", t.ticks, t.skipped, t.overruns)?;
        writeln!(f, "  wake-up latency  {}", t.wake)?;
        writeln!(f, "  compute          {}", t.compute)?;
        writeln!(f, "  period           {}", t.period)?;
        if let Some(p) = &self.policy_compute {
            writeln!(
                f,
                "  policy compute   {p}  errors {}  models switched {}",
                self.policy_errors, self.policy_swaps
            )?;
        }
        if let Some(l) = &self.policy_latency {
            writeln!(f, "  policy latency   {l}  (from the deadline to the action)")?;
        }
        if let Some(s) = &self.shadow_compute {
            writeln!(f, "  shadow compute   {s}  steps not logged (ring full) {}", self.shadow_dropped)?;
        }
        if let Some(l) = &self.log {
            let s = &l.stats;
            writeln!(
                f,
                "  log: {} records in {} files ({:.1} MB), {} dropped by the ring, {} lost to errors",
                s.records_written,
                s.files_closed,
                s.bytes_closed as f64 / 1e6,
                l.records_dropped,
                s.records_lost
            )?;
        }
        for b in &self.buses {
            writeln!(f, "  bus {}: {}", b.bus, b.counts)?;
        }
        write!(f, "  faults raised {}  events dropped {}", self.faults_raised, self.events_dropped)
    }
}

/// SIGINT and SIGTERM (stop) and SIGHUP (reload the model), blocked in every thread and taken by
/// one thread with `sigtimedwait`.
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> Self {
        // SAFETY: sigset_t is plain data; the sig* calls only write into it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; blocking in this thread is inherited by the threads
        // it spawns afterwards, so no other thread receives these signals asynchronously.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        Self { set }
    }

    /// Waits up to `timeout` for one of the signals; returns its number.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: `set` and `ts` are valid; the siginfo pointer may be null.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

struct ControlResult {
    timing: LoopTiming,
    rt: RtOutcome,
    final_mode: Mode,
    events_dropped: u64,
    log_dropped: u64,
}

/// The control thread's body (after its real-time set-up, `rt`): ticks until stopped, then
/// `shutdown_ns` more of damping.
fn control_thread(
    mut lp: ControlLoop,
    rt: RtOutcome,
    period_ns: u64,
    shutdown_ns: u64,
    stop_at_ns: Option<u64>,
    stop: Arc<AtomicBool>,
) -> ControlResult {
    let clock = MonotonicClock;
    let mut exit_at: Option<u64> = None;
    run_periodic(&clock, period_ns, |release| {
        lp.tick(release, &clock);
        let now = release.woke_ns;
        match exit_at {
            None => {
                if stop.load(Ordering::Relaxed) || stop_at_ns.is_some_and(|t| now >= t) {
                    lp.begin_shutdown(now);
                    stop.store(true, Ordering::Relaxed);
                    exit_at = Some(now + shutdown_ns);
                }
                true
            }
            Some(t) => now < t,
        }
    });
    lp.finish();
    ControlResult {
        timing: lp.timing().clone(),
        rt,
        final_mode: lp.mode(),
        events_dropped: lp.events_dropped(),
        log_dropped: lp.log_dropped(),
    }
}

/// Runs the daemon in the foreground until SIGINT/SIGTERM or `duration`.
pub fn run(config: &Config, opts: RunOptions) -> Result<RunSummary, DaemonError> {
    let started_ns = monotonic_ns();
    let signals = Signals::block();
    let stop = opts.stop.clone().unwrap_or_default();
    let caught = Arc::new(AtomicI32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Reload requests (SIGHUP, teleop's cmd/reload) for the reload thread; with no learned
    // controller there is none, and a request is refused where it arrives.
    let (reload_tx, reload_rx) = mpsc::channel::<reload::Request>();
    let signal_thread = {
        let (stop, caught, done, reloads) = (stop.clone(), caught.clone(), done.clone(), reload_tx.clone());
        thread::spawn("locod-signals", "signal", Setup::Plain, move |_| {
            while !done.load(Ordering::Relaxed) {
                match signals.wait(Duration::from_millis(100)) {
                    Some(libc::SIGHUP) => {
                        let request = reload::Request { model: None, controller: None, source: "SIGHUP" };
                        reloads.send(request).unwrap_or_else(|_| {
                            report::warn("controller: reload (SIGHUP) refused: no learned controller is running")
                        });
                    }
                    Some(sig) => {
                        caught.store(sig, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
        })?
    };

    if config.rate.lock_memory {
        if let Err(e) = thread::lock_memory() {
            report::warn(format!("memory not locked ({e}); page faults may delay the control loop"));
        }
    }

    let robot = crate::robot::open(config)?;
    let hw = robot.hardware;
    let buses = robot.buses;
    let perception = robot.perception;
    // The configured controller, checked and warmed up before READY; it reads the terrain the
    // sensors perceive. A policy given by the caller (tests) takes precedence.
    let mut models = Vec::new();
    let mut policy = match opts.policy {
        Some(p) => Some(p),
        None => match crate::policy::build(config, perception.is_some())? {
            Some(built) => {
                for w in built.warnings {
                    report::warn(w);
                }
                report::info(format!(
                    "controller: {} ({} sha256:{})",
                    built.policy.name(),
                    built.model.path.display(),
                    &built.model.sha256[..12]
                ));
                models.push(built.model);
                Some(built.policy)
            }
            None => None,
        },
    };
    // A shadow model beside a learned controller (`[controller] shadow`), built and warmed up the
    // same way; its steps go to the logger on their own ring.
    let shadow = match (&policy, config.shadow_path()) {
        (Some(_), Some(_)) => policy::build_shadow(config, perception.is_some())?.map(|built| {
            for w in &built.warnings {
                report::warn(format!("shadow: {w}"));
            }
            report::info(format!(
                "shadow: {} ({} sha256:{}) runs beside the controller on the same observations, logged, never actuated",
                built.policy.name(),
                built.model.path.display(),
                &built.model.sha256[..12]
            ));
            models.push(built.model);
            built.policy
        }),
        _ => None,
    };
    let (commander, mut inputs) = inbox();
    let action_writer = policy.as_ref().map(|_| inputs.connect_policy());
    let readers = 1 + usize::from(policy.is_some()) + usize::from(config.teleop.is_some());
    let (mut lp, mut outputs, mut snapshot_readers) = ControlLoop::new(config, hw, inputs, readers);
    lp.watch_depth(policy.as_ref().is_some_and(|p| p.observes_terrain()));
    // Before the hardware starts: a teleop that cannot listen stops the daemon with a reason.
    // The reload thread exists while a learned controller runs; without it, requests are refused.
    let reloads = policy.as_ref().map(|p| {
        let handoff = Arc::new(reload::Handoff::default());
        (reload::Reloader::new(config, perception.is_some(), p.observes_terrain(), handoff.clone()), handoff)
    });
    let (reload_tx, reload_rx) = match reloads {
        Some(_) => (Some(reload_tx), Some(reload_rx)),
        None => (None, None),
    };
    let teleop = match &config.teleop {
        Some(_) => {
            let reader = snapshot_readers.pop().expect("a reader for teleop");
            let (server, feed) = teleop::Server::start(config, commander.clone(), reader, reload_tx.clone())
                .map_err(DaemonError::Teleop)?;
            report::info(format!("teleop: listening for {}/cmd/**", config.teleop_prefix()));
            Some((server, feed))
        }
        None => None,
    };
    lp.start().map_err(DaemonError::HardwareStart)?;
    let log_stop = Arc::new(AtomicBool::new(false));
    let (metadata_tx, metadata_rx) = mpsc::channel();
    let (shadow_tap, shadow_ring) = match &shadow {
        Some(_) => {
            let (tap, ring) = crate::rt::spsc::spsc(SHADOW_RING);
            (Some(tap), Some(ring))
        }
        None => (None, None),
    };
    let logger = if config.log.enabled {
        let (tap, ring) = crate::control::record::ring(config.log.ring_records, config.joints.len());
        lp.attach_log(tap);
        let mut logger = Logger::new(&config.log, log_writer::metadata(config, &models));
        if shadow.is_some() {
            logger = logger.with_shadow();
        }
        let inputs = log_writer::LoggerInputs { switches: Some(metadata_rx), shadow: shadow_ring };
        Some(log_writer::spawn(logger, ring, inputs, log_stop.clone())?)
    } else {
        None
    };

    let period_ns = config.rate.control_period_ns();
    let stop_at_ns = opts.duration.map(|d| monotonic_ns() + d.as_nanos() as u64);
    let shutdown_ns = (config.safety.shutdown_damp_ms * NS_PER_MS as f64) as u64;
    let control_spec = config.rate.control_rt();
    let control = {
        let stop = stop.clone();
        thread::spawn("locod-control", "control", Setup::RtPrefaulted(control_spec), move |rt| {
            control_thread(lp, rt, period_ns, shutdown_ns, stop_at_ns, stop)
        })?
    };

    let (outcome_tx, outcome_rx) = mpsc::channel();
    let mut handoff = None;
    let mut reload_thread = None;
    if let (Some((reloader, h)), Some(requests)) = (reloads, reload_rx) {
        let stop = stop.clone();
        handoff = Some(h);
        reload_thread = Some(thread::spawn("locod-reload", "reload", Setup::Plain, move |_| {
            reloader.run(requests, outcome_tx, &stop)
        })?);
    }
    let policy_thread = match (policy.take(), action_writer) {
        (Some(p), Some(mut writer)) => {
            let mut snapshots = snapshot_readers.pop().expect("a reader per consumer");
            let spec = config.rate.policy_rt();
            let policy_period = config.rate.policy_period_ns();
            let stop = stop.clone();
            let mut cycle = policy::Cycle::new(perception, handoff.clone());
            if let (Some(s), Some(tap)) = (shadow, shadow_tap) {
                cycle = cycle.with_shadow(policy::Shadow::new(s, tap));
            }
            Some(thread::spawn("locod-policy", "policy", Setup::RtPrefaulted(spec), move |rt| {
                if !rt.all_granted() {
                    report::warn(format!("policy thread: {rt}"));
                }
                policy::run(p, cycle, &mut snapshots, &mut writer, &MonotonicClock, policy_period, &stop)
            })?)
        }
        _ => None,
    };
    drop(reload_tx); // the reload thread ends with its last sender once stopped

    let status = snapshot_readers.pop().expect("a reader for the supervisor");
    let feed = teleop.as_ref().map(|(_, f)| f);
    let view = ControlView { thread: &control, outputs: &mut outputs, status };
    let models =
        Models { outcomes: outcome_rx, handoff, logger: logger.is_some().then_some(metadata_tx), provenance: models };
    let mut supervised = supervise(config, &commander, view, opts.goal, feed, &buses, models);
    let journal = &mut supervised.journal;

    let result = control.join().map_err(|_| DaemonError::Panicked("control"))?;
    stop.store(true, Ordering::Relaxed);
    log_stop.store(true, Ordering::Release);
    let log = match logger {
        Some(h) => Some(LogSummary {
            stats: h.join().map_err(|_| DaemonError::Panicked("logger"))?,
            records_dropped: result.log_dropped,
        }),
        None => None,
    };
    let policy_stats: Option<PolicyStats> = match policy_thread {
        Some(h) => Some(h.join().map_err(|_| DaemonError::Panicked("policy"))?),
        None => None,
    };
    if let Some(h) = reload_thread {
        h.join().map_err(|_| DaemonError::Panicked("reload"))?;
    }
    // Events emitted during shutdown.
    let mut faults_raised = supervised.faults_raised;
    let joints = config.joint_names();
    while let Some(e) = outputs.events.pop() {
        faults_raised += u64::from(matches!(e.kind, EventKind::FaultRaised(_)));
        if let Some(f) = feed {
            f.event(&e);
        }
        if journal.admit(e.t_ns, &e.kind) {
            report::info(e.kind.named(&joints));
        }
    }
    for line in journal.flush(monotonic_ns(), true) {
        report::warn(line);
    }
    if let Some((server, _)) = teleop {
        server.shutdown();
    }
    done.store(true, Ordering::Relaxed);
    let _ = signal_thread.join();

    let stopped_by = match caught.load(Ordering::Relaxed) {
        libc::SIGINT => "SIGINT".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        _ if opts.duration.is_some() => "duration elapsed".to_string(),
        _ => "stop requested".to_string(),
    };
    Ok(RunSummary {
        seconds: (monotonic_ns() - started_ns) as f64 / NS_PER_S as f64,
        stopped_by,
        final_mode: result.final_mode,
        faults_raised,
        events_dropped: result.events_dropped,
        control_thread: result.rt.to_string(),
        timing: result.timing.summary(),
        policy_compute: policy_stats.as_ref().map(|s| s.compute.summary()),
        policy_latency: policy_stats.as_ref().map(|s| s.latency.summary()),
        policy_errors: policy_stats.as_ref().map_or(0, |s| s.errors),
        policy_swaps: policy_stats.as_ref().map_or(0, |s| s.swaps),
        shadow_compute: policy_stats
            .as_ref()
            .filter(|s| s.shadow_compute.count() > 0)
            .map(|s| s.shadow_compute.summary()),
        shadow_dropped: policy_stats.map_or(0, |s| s.shadow_dropped),
        log,
        buses: buses.counts().into_iter().map(|(bus, counts)| BusSummary { bus, counts }).collect(),
    })
}

struct Supervised {
    faults_raised: u64,
    /// Repeats it still holds back, to be counted at exit.
    journal: journal::Journal,
}

/// The control thread as the supervisor sees it: its handle, its outputs and its status.
struct ControlView<'a> {
    thread: &'a std::thread::JoinHandle<ControlResult>,
    outputs: &'a mut crate::control::LoopOutputs,
    status: Reader<Snapshot>,
}

/// Model reloads as the supervisor sees them: the reload thread's outcomes, the switches the
/// policy thread made, and the logger to tell.
struct Models {
    outcomes: mpsc::Receiver<reload::Outcome>,
    handoff: Option<Arc<reload::Handoff>>,
    logger: Option<mpsc::Sender<log_writer::MetadataSwitch>>,
    /// The provenance the logs carry: the controller's first, replaced at each switch.
    provenance: Vec<ModelProvenance>,
}

impl Models {
    /// Journals and reports every reload outcome and switch since the last call; a switch also
    /// gives the logs the new model's provenance from the snapshot it first acted on.
    fn drain(&mut self, config: &Config, telemetry: Option<&TelemetryFeed>) {
        while let Ok(outcome) = self.outcomes.try_recv() {
            let line = outcome.to_string();
            let status = match outcome {
                reload::Outcome::Ready { .. } => {
                    report::info(&line);
                    "ready"
                }
                reload::Outcome::Refused { .. } => {
                    report::error(&line);
                    "refused"
                }
            };
            if let Some(t) = telemetry {
                t.reload(status, &line);
            }
        }
        let Some(switched) = self.handoff.as_ref().and_then(|h| h.take_switched()) else { return };
        let reload::Switched { from_t_ns, model, controller, kind } = switched;
        let line = format!(
            "controller: switched to {controller} ({}: {}, sha256:{}) from the snapshot at t={:.3} s; history, recurrent state and warm start restarted",
            kind.as_str(),
            model.path.display(),
            model.sha256.get(..12).unwrap_or(&model.sha256),
            from_t_ns as f64 / NS_PER_S as f64
        );
        report::info(&line);
        if let Some(t) = telemetry {
            t.controller(kind);
            t.reload("switched", &line);
        }
        self.provenance.retain(|m| m.role != model.role);
        self.provenance.insert(0, model);
        if let Some(l) = &self.logger {
            // The configuration as written, and which of its controllers now acts.
            let mut meta = log_writer::metadata(config, &self.provenance);
            meta.insert("controller.active".into(), controller);
            meta.insert("controller.kind".into(), kind.as_str().into());
            let _ = l.send((from_t_ns, meta));
        }
    }
}

/// The supervisor's loop, on the calling thread, until the control thread ends.
fn supervise(
    config: &Config,
    commander: &Commander,
    control: ControlView,
    goal: Goal,
    telemetry: Option<&TelemetryFeed>,
    buses: &BusWatch,
    mut models: Models,
) -> Supervised {
    let ControlView { thread: control, outputs, mut status } = control;
    let mut journal = journal::Journal::default();
    let notifier = Notifier::from_env();
    let watchdog_ns = systemd::watchdog_timeout().map(|d| d.as_nanos() as u64 / 2);
    let status_ns = (config.rate.status_interval_s * NS_PER_S as f64) as u64;
    let mut ready = false;
    let mut last_ping = (monotonic_ns(), 0u64);
    let mut last_status = monotonic_ns();
    let mut last_levels = LevelCounts::default();
    let mut goals = GoalSequencer::new(goal);
    let mut faults_raised = 0;
    let mut warned_stall = false;
    let mut warned_waiting = false;
    let mut ready_ns = 0;
    let joints = config.joint_names();

    while !control.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        let now = monotonic_ns();
        while let Some(e) = outputs.events.pop() {
            faults_raised += u64::from(matches!(e.kind, EventKind::FaultRaised(_)));
            let level = match e.kind {
                EventKind::FaultRaised(_) => report::Level::Error,
                EventKind::Refused { .. } | EventKind::FallbackSwitched { .. } | EventKind::CommandRejected { .. } => {
                    report::Level::Warning
                }
                _ => report::Level::Info,
            };
            // Every event goes to telemetry (and the log); repeats reach the journal counted.
            if journal.admit(e.t_ns, &e.kind) {
                report::log(level, e.kind.named(&joints));
            }
            if let Some(t) = telemetry {
                t.event(&e);
            }
        }
        for line in journal.flush(now, false) {
            report::warn(line);
        }
        models.drain(config, telemetry);
        if let Some(t) = telemetry {
            t.timing(outputs.stats.latest());
            t.buses(buses.counts());
        }
        let heartbeat = outputs.heartbeat.load(Ordering::Acquire);
        let snap = *status.latest();

        if !ready && heartbeat > 0 {
            ready = true;
            ready_ns = now;
            let msg = format!("control loop running at {} Hz", config.rate.control_hz);
            notifier.ready(&msg);
            report::info(msg);
        }
        // The goal waits for a robot without faults (sensors and motors answering), and says once
        // what it waits for if that takes a while.
        if ready && goals.wants_standup() {
            match snap.fault {
                None => goals.stand_up(commander),
                Some(f) if !warned_waiting && now - ready_ns > GOAL_PATIENCE_NS => {
                    report::warn(format!(
                        "--goal {goal:?}: waiting for a fault to clear before standing up: {}",
                        f.named(&joints)
                    ));
                    warned_waiting = true;
                }
                Some(_) => {}
            }
        }
        goals.follow(&snap, commander);

        if let Some(interval) = watchdog_ns {
            if now - last_ping.0 >= interval {
                if heartbeat != last_ping.1 {
                    notifier.watchdog();
                    warned_stall = false;
                } else if !warned_stall {
                    report::error("control loop made no progress: withholding the watchdog ping");
                    warned_stall = true;
                }
                last_ping = (now, heartbeat);
            }
        }
        if status_ns > 0 && now - last_status >= status_ns {
            last_status = now;
            let t = *outputs.stats.latest();
            let fault = snap.fault.map_or("none".to_string(), |f| f.named(&joints).to_string());
            // Walk's level shares since the last line: a planner that often falls back to its
            // prior shows here, not only in the level at this instant.
            let walked = snap.walk_levels.since(&last_levels);
            last_levels = snap.walk_levels;
            let shares = if walked.total() > 0 { format!(" (walk ticks: {walked})") } else { String::new() };
            let line = format!(
                "mode {:?}, controller {:?}{shares}, command {:?} from {:?}, fault {fault}; wake p99 {:.0} us, max {:.0} us, skipped {}",
                snap.mode, snap.level, snap.command, snap.source, t.wake.p99_us, t.wake.max_us, t.skipped
            );
            let line = match buses.summary() {
                Some(counts) => format!("{line}; {counts}"),
                None => line,
            };
            notifier.status(&line);
            report::info(line);
        }
    }
    notifier.stopping();
    Supervised { faults_raised, journal }
}
