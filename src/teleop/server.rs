//! The daemon's side of teleop: subscribers that turn zenoh messages into `Commander` calls, and
//! publishers of `state` (from a snapshot reader of its own, at `[teleop] state_hz`) and `diag`
//! (control-loop events forwarded by the supervisor, rejections and counters).
//!
//! Runs on its own multi-thread tokio runtime ("locod-teleop" threads, normal priority); zenoh's
//! callbacks run on zenoh's threads. Neither ever touches the control thread except through the
//! `Commander`'s lock-free inbox. Not for: arbitration or validation beyond the message itself
//! (the loop's `Arbiter` still checks every command).

use super::session::{self, Role, TeleopError};
use super::wire::{
    self, BusMsg, Counters, DecodeError, DiagMsg, EstopAction, EventMsg, RejectMsg, ReloadMsg, StateMsg,
};
use super::Keys;
use crate::config::{Config, ControllerKind};
use crate::control::inputs::Commander;
use crate::control::messages::{Event, Snapshot};
use crate::control::TimingSummary;
use crate::io::transport::bus::BusCounts;
use crate::policy::reload;
use crate::report;
use crate::rt::triple::Reader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events waiting for `diag`: far more than arrive between two `diag` messages.
const EVENT_QUEUE: usize = 4096;
/// How often `diag` goes out when there is news, and at the latest when there is none.
const DIAG_PERIOD: Duration = Duration::from_millis(100);
const DIAG_IDLE_EVERY: u32 = 10;
/// Rejections listed individually per `diag` (the counters have them all).
const REJECTS_LISTED: usize = 16;

/// Per-key counters, updated from zenoh's callback threads.
#[derive(Default)]
struct KeyCounters {
    accepted: AtomicU64,
    oversized: AtomicU64,
    malformed: AtomicU64,
    non_finite: AtomicU64,
    out_of_range: AtomicU64,
}

impl KeyCounters {
    fn read(&self) -> Counters {
        Counters {
            accepted: self.accepted.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            non_finite: self.non_finite.load(Ordering::Relaxed),
            out_of_range: self.out_of_range.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Stats {
    vel: KeyCounters,
    auto_vel: KeyCounters,
    ros_cmd_vel: KeyCounters,
    mode: KeyCounters,
    estop: KeyCounters,
    reload: KeyCounters,
    controller: KeyCounters,
    rejects: Mutex<Vec<RejectMsg>>,
    /// Reload outcomes not yet in a `diag`.
    reloads: Mutex<Vec<ReloadMsg>>,
    events_dropped: AtomicU64,
    /// The buses' receive-side counters as the supervisor last saw them.
    buses: Mutex<Vec<BusMsg>>,
}

impl Stats {
    fn outcome<T>(&self, which: &KeyCounters, key: &str, r: Result<T, DecodeError>) -> Option<T> {
        match r {
            Ok(v) => {
                which.accepted.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(e) => {
                let counter = match e.counter() {
                    wire::RejectReason::Oversized => &which.oversized,
                    wire::RejectReason::Malformed => &which.malformed,
                    wire::RejectReason::NonFinite => &which.non_finite,
                    wire::RejectReason::OutOfRange => &which.out_of_range,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut list = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
                if list.len() < REJECTS_LISTED {
                    list.push(RejectMsg { key: key.to_string(), reason: e.to_string() });
                }
                None
            }
        }
    }
}

/// What a subscriber does with each payload (on zenoh's threads).
type OnPayload = Box<dyn Fn(&[u8]) + Send + Sync>;

/// What the supervisor hands the telemetry: every event it drains, and the newest loop timing.
#[derive(Clone)]
pub struct TelemetryFeed {
    events: SyncSender<Event>,
    timing: Arc<Mutex<TimingSummary>>,
    stats: Arc<Stats>,
    controller: Arc<Mutex<String>>,
}

impl TelemetryFeed {
    /// Queues `e` for `diag`; never blocks (a full queue counts the event as dropped).
    pub fn event(&self, e: &Event) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.events.try_send(*e) {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn timing(&self, t: &TimingSummary) {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner()) = *t;
    }

    /// The controller now walking, for `state` (after a switch: `kind` is "student" or "mppi").
    pub fn controller(&self, kind: ControllerKind) {
        *self.controller.lock().unwrap_or_else(|p| p.into_inner()) = controller_name(kind);
    }

    /// A model reload's outcome (`status`: ready, switched or refused), for the next `diag`.
    pub fn reload(&self, status: &str, message: &str) {
        let mut list = self.stats.reloads.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() < REJECTS_LISTED {
            list.push(ReloadMsg { status: status.to_string(), message: message.to_string() });
        }
    }

    /// The buses' receive-side counters, for `diag`.
    pub fn buses(&self, counts: Vec<(String, BusCounts)>) {
        let msgs = counts.into_iter().map(|(bus, counts)| BusMsg { bus, counts }).collect();
        *self.stats.buses.lock().unwrap_or_else(|p| p.into_inner()) = msgs;
    }
}

/// The running teleop side of the daemon. `shutdown` publishes a last `state` and `diag`.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    session: zenoh::Session,
    publisher: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
    keys: Keys,
}

impl Server {
    /// Opens the session from `[teleop]`, declares every key, and starts publishing.
    /// `reloads` takes `cmd/reload` and `cmd/controller` requests (`None`: no learned controller,
    /// each is refused).
    pub fn start(
        config: &Config,
        commander: Commander,
        snapshots: Reader<Snapshot>,
        reloads: Option<Sender<reload::Request>>,
    ) -> Result<(Server, TelemetryFeed), TeleopError> {
        let zc = session::zenoh_config(config, Role::Robot)?;
        Self::start_with(config, zc, commander, snapshots, reloads)
    }

    /// As `start`, with an explicit zenoh configuration (tests, benchmarks).
    pub(crate) fn start_with(
        config: &Config,
        zc: zenoh::Config,
        commander: Commander,
        snapshots: Reader<Snapshot>,
        reloads: Option<Sender<reload::Request>>,
    ) -> Result<(Server, TelemetryFeed), TeleopError> {
        let t = config.teleop.clone().ok_or(TeleopError::NotConfigured)?;
        let keys = Keys::of(config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("locod-teleop")
            .enable_all()
            .build()
            .map_err(TeleopError::Runtime)?;
        let session =
            runtime.block_on(async { zenoh::open(zc).await }).map_err(|e| TeleopError::Open(e.to_string()))?;

        let stats = Arc::new(Stats::default());
        let max_bytes = t.max_payload_bytes;
        let max_vel = config.command.max_vel;
        let declare = |key: &str, f: OnPayload| -> Result<(), TeleopError> {
            runtime
                .block_on(async {
                    session
                        .declare_subscriber(key.to_string())
                        .callback(move |s| f(&s.payload().to_bytes()))
                        .background()
                        .await
                })
                .map_err(|e| TeleopError::Declare { key: key.to_string(), message: e.to_string() })
        };
        {
            let (st, c, k) = (stats.clone(), commander.clone(), keys.vel.clone());
            declare(
                &keys.vel,
                Box::new(move |p| {
                    if let Some(v) = st.outcome(&st.vel, &k, wire::decode_vel(p, max_bytes, &max_vel)) {
                        c.teleop_velocity(v);
                    }
                }),
            )?;
        }
        {
            let (st, c, k) = (stats.clone(), commander.clone(), keys.auto_vel.clone());
            declare(
                &keys.auto_vel,
                Box::new(move |p| {
                    if let Some(v) = st.outcome(&st.auto_vel, &k, wire::decode_vel(p, max_bytes, &max_vel)) {
                        c.autonomy_velocity(v);
                    }
                }),
            )?;
        }
        if let Some(ros) = &keys.ros_cmd_vel {
            let (st, c, k) = (stats.clone(), commander.clone(), ros.clone());
            declare(
                ros,
                Box::new(move |p| {
                    let r = if p.len() > max_bytes {
                        Err(DecodeError::Oversized { bytes: p.len(), max: max_bytes })
                    } else {
                        wire::decode_twist(p, &max_vel)
                    };
                    if let Some(v) = st.outcome(&st.ros_cmd_vel, &k, r) {
                        c.teleop_velocity(v);
                    }
                }),
            )?;
        }
        {
            let (st, c, k) = (stats.clone(), commander.clone(), keys.mode.clone());
            declare(
                &keys.mode,
                Box::new(move |p| {
                    if let Some(m) = st.outcome(&st.mode, &k, wire::decode_mode(p, max_bytes)) {
                        c.request_mode(m);
                    }
                }),
            )?;
        }
        {
            let (st, c, k) = (stats.clone(), commander, keys.estop.clone());
            declare(
                &keys.estop,
                Box::new(move |p| match st.outcome(&st.estop, &k, wire::decode_estop(p, max_bytes)) {
                    Some(EstopAction::Stop) => c.estop(),
                    Some(EstopAction::Reset) => c.request_mode(crate::control::messages::ModeRequest::Reset),
                    None => {}
                }),
            )?;
        }

        // `cmd/reload` and `cmd/controller` are sent on to the reload thread, which loads off the
        // real-time threads and reports through the supervisor; a daemon without a learned
        // controller refuses here.
        let request = {
            let st = stats.clone();
            move |request: reload::Request| {
                let source = request.source;
                if !matches!(reloads.as_ref().map(|r| r.send(request)), Some(Ok(()))) {
                    let message = format!("controller: reload ({source}) refused: no learned controller is running");
                    report::warn(&message);
                    let mut list = st.reloads.lock().unwrap_or_else(|p| p.into_inner());
                    if list.len() < REJECTS_LISTED {
                        list.push(ReloadMsg { status: "refused".into(), message });
                    }
                }
            }
        };
        {
            let (st, k, request) = (stats.clone(), keys.reload.clone(), request.clone());
            declare(
                &keys.reload,
                Box::new(move |p| {
                    if let Some(model) = st.outcome(&st.reload, &k, wire::decode_reload(p, max_bytes)) {
                        request(reload::Request { model, controller: None, source: "cmd/reload" });
                    }
                }),
            )?;
        }
        {
            let (st, k) = (stats.clone(), keys.controller.clone());
            declare(
                &keys.controller,
                Box::new(move |p| {
                    if let Some(name) = st.outcome(&st.controller, &k, wire::decode_controller(p, max_bytes)) {
                        request(reload::Request { model: None, controller: Some(name), source: "cmd/controller" });
                    }
                }),
            )?;
        }

        let (events_tx, events_rx) = sync_channel(EVENT_QUEUE);
        let timing = Arc::new(Mutex::new(TimingSummary::default()));
        let controller = Arc::new(Mutex::new(controller_name(config.controller.kind)));
        let feed = TelemetryFeed {
            events: events_tx,
            timing: timing.clone(),
            stats: stats.clone(),
            controller: controller.clone(),
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        let telemetry = Telemetry {
            snapshots,
            events: events_rx,
            timing,
            stats,
            joints: config.joint_names(),
            controller,
            diag_seq: 0,
        };
        let publisher = runtime.spawn(publish(
            session.clone(),
            keys.clone(),
            telemetry,
            Duration::from_secs_f64(1.0 / t.state_hz),
            stop.clone(),
        ));
        Ok((Server { runtime, session, publisher, stop, keys }, feed))
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Publishes a last `state` and `diag`, then closes the session and the runtime.
    pub fn shutdown(self) {
        self.stop.notify_one();
        let Server { runtime, session, publisher, .. } = self;
        runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), publisher).await;
            let _ = session.close().await;
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

fn controller_name(kind: ControllerKind) -> String {
    kind.as_str().to_string()
}

/// What the publishing task owns.
struct Telemetry {
    snapshots: Reader<Snapshot>,
    events: Receiver<Event>,
    timing: Arc<Mutex<TimingSummary>>,
    stats: Arc<Stats>,
    /// Joint names in configuration order.
    joints: Vec<String>,
    controller: Arc<Mutex<String>>,
    diag_seq: u64,
}

impl Telemetry {
    fn state(&mut self) -> Vec<u8> {
        let timing = *self.timing.lock().unwrap_or_else(|p| p.into_inner());
        let controller = self.controller.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let msg = StateMsg::new(self.snapshots.latest(), &self.joints, &controller, &timing);
        serde_json::to_vec(&msg).unwrap_or_default()
    }

    /// The next `diag`, or `None` when there is no news and `force` is false.
    fn diag(&mut self, force: bool) -> Option<Vec<u8>> {
        let events: Vec<EventMsg> = self.events.try_iter().map(|e| EventMsg::new(&e, &self.joints)).collect();
        let rejects = std::mem::take(&mut *self.stats.rejects.lock().unwrap_or_else(|p| p.into_inner()));
        let reloads = std::mem::take(&mut *self.stats.reloads.lock().unwrap_or_else(|p| p.into_inner()));
        if events.is_empty() && rejects.is_empty() && reloads.is_empty() && !force {
            return None;
        }
        self.diag_seq += 1;
        let s = &self.stats;
        let msg = DiagMsg {
            seq: self.diag_seq,
            events,
            rejects,
            vel: s.vel.read(),
            auto_vel: s.auto_vel.read(),
            ros_cmd_vel: s.ros_cmd_vel.read(),
            mode: s.mode.read(),
            estop: s.estop.read(),
            reload: s.reload.read(),
            controller: s.controller.read(),
            reloads,
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
            buses: s.buses.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        Some(serde_json::to_vec(&msg).unwrap_or_default())
    }
}

async fn publish(
    session: zenoh::Session,
    keys: Keys,
    mut t: Telemetry,
    state_period: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let (state_pub, diag_pub) =
        match (session.declare_publisher(keys.state.clone()).await, session.declare_publisher(keys.diag.clone()).await)
        {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => {
                report::error(format!("teleop: cannot declare the telemetry publishers: {e}"));
                return;
            }
        };
    let mut state_tick = tokio::time::interval(state_period);
    state_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut diag_tick = tokio::time::interval(DIAG_PERIOD);
    diag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut idle = 0u32;
    let mut warned = false;
    loop {
        let result = tokio::select! {
            _ = state_tick.tick() => state_pub.put(t.state()).await,
            _ = diag_tick.tick() => {
                idle += 1;
                match t.diag(idle >= DIAG_IDLE_EVERY) {
                    Some(d) => {
                        idle = 0;
                        diag_pub.put(d).await
                    }
                    None => Ok(()),
                }
            }
            _ = stop.notified() => {
                let _ = state_pub.put(t.state()).await;
                if let Some(d) = t.diag(true) {
                    let _ = diag_pub.put(d).await;
                }
                return;
            }
        };
        if let Err(e) = result {
            if !warned {
                report::warn(format!("teleop: telemetry publish failed: {e}"));
                warned = true;
            }
        }
    }
}
