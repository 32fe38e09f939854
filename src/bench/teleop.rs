//! `locod bench teleop`: over real zenoh sessions on loopback, with the in-memory robot,
//! (1) latency from a teleop publish to the control tick that applies the command, next to
//! zenoh's own publish → subscriber delivery between two sessions measured in the same run, and
//! (2) the control loop's timing with telemetry published at the full control rate, next to the
//! same loop without teleop, in the same run.
//!
//! The tick that applies a command is found through a snapshot reader; the command's
//! acceleration limit is lifted for the run so that the applied command equals the one sent.
//! The resolution is one control period (a message waits for the next tick).

use super::Percentiles;
use crate::config::Config;
use crate::control::inputs::inbox;
use crate::control::messages::ModeRequest;
use crate::control::{ControlLoop, LoopOutputs, LoopTiming};
use crate::rt::clock::{monotonic_ns, NS_PER_S};
use crate::rt::hist::Histogram;
use crate::rt::thread::{self, RtSpec};
use crate::teleop::client::{Link, Outgoing};
use crate::teleop::session::{self, Role};
use crate::teleop::{Server, TelemetryFeed};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::Wait;

#[derive(Debug, Serialize)]
pub struct TeleopReport {
    pub bench: &'static str,
    pub rate_hz: u32,
    pub(crate) seconds_per_phase: u64,
    pub(crate) control_thread: String,
    pub latency: Latency,
    pub telemetry: TelemetryCost,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    /// Commands sent (one every `send_interval_ms`).
    pub sent: u64,
    /// Commands seen applied by the control loop.
    pub applied: u64,
    pub(crate) send_interval_ms: f64,
    /// Publish → first control tick whose arbitrated command is the one sent.
    pub(crate) publish_to_applied_us: Percentiles,
    /// Publish → delivery to a plain subscriber in another session (zenoh alone).
    pub reference: &'static str,
    pub reference_us: Percentiles,
    /// p50 over the reference's p50; the difference is mostly waiting for the next tick.
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct LoopFigures {
    pub(crate) wake_us: Percentiles,
    pub compute_us: Percentiles,
    pub skipped: u64,
    pub(crate) overruns: u64,
}

#[derive(Debug, Serialize)]
pub struct TelemetryCost {
    /// `state` messages per second published (the control rate).
    pub(crate) state_hz: f64,
    /// `state` messages an operator's session received.
    pub(crate) states_received: u64,
    pub(crate) with_telemetry: LoopFigures,
    /// The same loop, teleop off.
    pub reference: LoopFigures,
    /// with / without, wake-up p99 and compute p99.
    pub(crate) ratio_wake_p99: f64,
    pub(crate) ratio_compute_p99: f64,
}

fn figures(t: &LoopTiming) -> LoopFigures {
    LoopFigures {
        wake_us: t.wake.summary().into(),
        compute_us: t.compute.summary().into(),
        skipped: t.skipped,
        overruns: t.overruns,
    }
}

/// A free loopback TCP port for this run's zenoh listener.
pub(crate) fn free_endpoint() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok(format!("tcp/127.0.0.1:{port}"))
}

struct Rig {
    control: JoinHandle<(LoopTiming, crate::rt::thread::RtOutcome)>,
    outputs: LoopOutputs,
    server: Option<(Server, TelemetryFeed)>,
    observer: Option<crate::rt::triple::Reader<crate::control::messages::Snapshot>>,
}

impl Rig {
    /// The loop standing on the in-memory robot for `seconds`, with teleop when `teleop`.
    fn start(config: &Config, seconds: u64, spec: RtSpec, teleop: bool) -> Result<Rig, String> {
        let hw = crate::robot::open(config).map_err(|e| crate::report::chain(&e))?.hardware;
        let (commander, inputs) = inbox();
        let (mut lp, outputs, mut readers) = ControlLoop::new(config, hw, inputs, 2);
        let observer = readers.pop().ok_or("no snapshot reader")?;
        let server = if teleop {
            let reader = readers.pop().ok_or("no snapshot reader")?;
            Some(Server::start(config, commander.clone(), reader, None).map_err(|e| e.to_string())?)
        } else {
            None
        };
        lp.start()?;
        commander.request_mode(ModeRequest::StandUp);
        let period_ns = config.rate.control_period_ns();
        let control = super::run_control_thread(lp, spec, period_ns, seconds)?;
        Ok(Rig { control, outputs, server, observer: Some(observer) })
    }

    /// Does the supervisor's forwarding until the loop ends; returns its timing.
    fn finish(mut self) -> Result<(LoopTiming, String), String> {
        while !self.control.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
            self.forward();
        }
        self.forward();
        let (timing, rt) = self.control.join().map_err(|_| "the control thread panicked".to_string())?;
        let r = (timing, rt.to_string());
        if let Some((server, _)) = self.server {
            server.shutdown();
        }
        Ok(r)
    }

    fn forward(&mut self) {
        while let Some(e) = self.outputs.events.pop() {
            if let Some((_, feed)) = &self.server {
                feed.event(&e);
            }
        }
        if let Some((_, feed)) = &self.server {
            feed.timing(self.outputs.stats.latest());
        }
    }
}

pub fn run(config: &Config, seconds: u64) -> Result<TeleopReport, String> {
    let mut config = config.clone();
    // The configured [teleop] (payload limit, prefix), else the defaults, on a free port.
    let mut t = config.teleop.clone().unwrap_or_default();
    t.listen = vec![free_endpoint()?];
    t.zenoh_config = None;
    t.client_zenoh_config = None;
    config.teleop = Some(t);
    // The applied command equals the one sent (see the module header).
    config.command.max_accel = [1e9; 3];
    let cpu = config.rate.cpu.or(Some(thread::online_cpus() - 1));
    let spec = RtSpec { fifo_priority: (config.rate.priority > 0).then_some(config.rate.priority), cpu };
    let _ = thread::lock_memory();

    // (2) reference: the loop without teleop.
    let (reference, control_thread) = Rig::start(&config, seconds, spec, false)?.finish()?;

    // (2) with telemetry at the control rate, an operator subscribed.
    let mut full = config.clone();
    let state_hz = full.rate.control_hz as f64;
    if let Some(t) = full.teleop.as_mut() {
        t.state_hz = state_hz;
    }
    let rig = Rig::start(&full, seconds, spec, true)?;
    let link = Link::connect(&full).map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let watcher = session::open_blocking(session::zenoh_config(&full, Role::Operator).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    watcher
        .declare_subscriber(link.keys().state.clone())
        .callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .background()
        .wait()
        .map_err(|e| e.to_string())?;
    let (with_telemetry, _) = rig.finish()?;
    let states_received = received.load(Ordering::Relaxed);
    let _ = watcher.close().wait();
    link.close();

    // (1) latency, telemetry at its configured rate.
    let latency = measure_latency(&config, seconds, spec)?;

    let w = figures(&with_telemetry);
    let r = figures(&reference);
    Ok(TeleopReport {
        bench: "teleop",
        rate_hz: config.rate.control_hz,
        seconds_per_phase: seconds,
        control_thread,
        latency,
        telemetry: TelemetryCost {
            state_hz,
            states_received,
            ratio_wake_p99: w.wake_us.p99.max(1.0) / r.wake_us.p99.max(1.0),
            ratio_compute_p99: w.compute_us.p99.max(0.1) / r.compute_us.p99.max(0.1),
            with_telemetry: w,
            reference: r,
        },
    })
}

const SEND_INTERVAL: Duration = Duration::from_millis(20);

fn measure_latency(config: &Config, seconds: u64, spec: RtSpec) -> Result<Latency, String> {
    let mut rig = Rig::start(config, seconds, spec, true)?;
    // The reference: a plain subscriber in a session of its own that the operator's session also
    // connects to (peers do not route for each other), on the same key.
    let arrivals: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = arrivals.clone();
    let floor_endpoint = free_endpoint()?;
    let mut floor_config = session::zenoh_config(config, Role::Robot).map_err(|e| e.to_string())?;
    floor_config.insert_json5("listen/endpoints", &format!("[\"{floor_endpoint}\"]")).map_err(|e| e.to_string())?;
    let floor = session::open_blocking(floor_config).map_err(|e| e.to_string())?;
    let mut link_config = session::zenoh_config(config, Role::Operator).map_err(|e| e.to_string())?;
    let daemon_endpoint = config.teleop.as_ref().map(|t| t.listen[0].clone()).unwrap_or_default();
    link_config
        .insert_json5("connect/endpoints", &format!("[\"{daemon_endpoint}\", \"{floor_endpoint}\"]"))
        .map_err(|e| e.to_string())?;
    let link = Link::connect_with(config, link_config).map_err(|e| e.to_string())?;
    floor
        .declare_subscriber(link.keys().vel.clone())
        .callback(move |s| {
            let now = monotonic_ns();
            if let Ok(v) = serde_json::from_slice::<crate::teleop::wire::VelCmd>(&s.payload().to_bytes()) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push((v.vx.to_bits(), now));
            }
        })
        .background()
        .wait()
        .map_err(|e| e.to_string())?;

    // The observer: every control tick's arbitrated command, from its own snapshot reader.
    let stop = Arc::new(AtomicBool::new(false));
    let mut observer = rig.observer.take().ok_or("no snapshot reader")?;
    let observed = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let mut last_tick = 0;
            while !stop.load(Ordering::Relaxed) {
                let s = *observer.latest();
                if s.tick != last_tick {
                    last_tick = s.tick;
                    if seen.last().is_none_or(|(bits, _)| *bits != s.command[0].to_bits()) {
                        seen.push((s.command[0].to_bits(), s.state.t_ns));
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            seen
        })
    };

    // Let the robot stand and every session connect, then send distinct commands.
    std::thread::sleep(Duration::from_millis(500));
    let mut sent: Vec<(u64, u64)> = Vec::new();
    let end = monotonic_ns() + seconds.saturating_sub(1) * NS_PER_S;
    let mut k = 0u64;
    while monotonic_ns() < end {
        let vx = 0.001 * (1 + k % 500) as f64;
        k += 1;
        let t = monotonic_ns();
        link.send(Outgoing::Vel([vx, 0.0, 0.0])).map_err(|e| e.to_string())?;
        sent.push((vx.to_bits(), t));
        std::thread::sleep(SEND_INTERVAL);
        rig.forward();
    }
    stop.store(true, Ordering::Relaxed);
    let seen = observed.join().map_err(|_| "the observer panicked".to_string())?;
    rig.finish()?;
    let _ = floor.close().wait();
    link.close();

    let mut applied = Histogram::new();
    let mut from = 0;
    for (bits, t_pub) in &sent {
        if let Some(i) =
            seen[from..].iter().position(|(b, t)| b == bits && *t + 2 * SEND_INTERVAL.as_nanos() as u64 > *t_pub)
        {
            let (_, t_tick) = seen[from + i];
            applied.record(t_tick.saturating_sub(*t_pub));
            from += i + 1;
        }
    }
    let mut reference = Histogram::new();
    let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut j = 0;
    for (bits, t_pub) in &sent {
        if let Some(i) = arrivals[j..].iter().position(|(b, _)| b == bits) {
            reference.record(arrivals[j + i].1.saturating_sub(*t_pub));
            j += i + 1;
        }
    }
    let a: Percentiles = applied.summary().into();
    let r: Percentiles = reference.summary().into();
    Ok(Latency {
        sent: sent.len() as u64,
        applied: a.count,
        send_interval_ms: SEND_INTERVAL.as_secs_f64() * 1e3,
        publish_to_applied_us: a,
        reference: "zenoh alone: the same publish -> a plain subscriber callback in another session",
        reference_us: r,
        ratio: a.p50.max(1.0) / r.p50.max(1.0),
    })
}

impl std::fmt::Display for TeleopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency;
        writeln!(
            f,
            "teleop publish -> applied: p50 {:.0} us p99 {:.0} us ({} of {} sent); zenoh alone p50 {:.0} us p99 {:.0} us; ratio {:.2}",
            l.publish_to_applied_us.p50, l.publish_to_applied_us.p99, l.applied, l.sent, l.reference_us.p50, l.reference_us.p99, l.ratio
        )?;
        let t = &self.telemetry;
        writeln!(
            f,
            "loop with state at {} Hz: wake p99 {:.1} us, compute p99 {:.1} us; without teleop: wake p99 {:.1} us, compute p99 {:.1} us; ratios {:.2} / {:.2}",
            t.state_hz, t.with_telemetry.wake_us.p99, t.with_telemetry.compute_us.p99, t.reference.wake_us.p99, t.reference.compute_us.p99, t.ratio_wake_p99, t.ratio_compute_p99
        )
    }
}
