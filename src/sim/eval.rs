//! `locod eval`: seeded episodes of the configured controller in lock-step (`lockstep::Lockstep`:
//! the daemon's loop and its `Policy` on simulated time), measured with the simulator's truth.
//!
//! An episode: the simulator reset to its start (the gantry holds the crouched robot until the
//! first leg command), the daemon's goal sequence (`control::goal::GoalSequencer`: StandUp with the
//! built-in balance controller, then Walk with the configured controller; a refused Walk is asked
//! for again every `WALK_RETRY_S`), then `seconds` of Walk under a command profile (`profile`). It ends early when the
//! robot falls, or when Walk has not begun `controller.standup_s + 10` s after the start.
//! Episode `i` uses seed `seed + i` for the simulator's noise (`[sim] seed`), the planner's
//! sampling (`[mppi] seed`) and the random command profile.
//!
//! Definitions (the same as `models/locod_train/evaluate.py`, so the two sit side by side):
//! - fell: the loop raised a tilt fault, or the true tilt exceeded `[safety] tilt_limit_deg`, or
//!   the base came within `FALL_HEIGHT_M` of the terrain under it (after the gantry let go);
//! - success: no fall, Walk began, and on `step` / `stairs` / `slope` the base ended beyond the
//!   top (`TOP_X`, base x: the last tread of the step and the stairs, the slope's level top);
//! - over the Walk window, per control tick, until a fall: `tracking_rms_mps` (true heading-frame
//!   vx minus the loop's arbitrated command), `yaw_tracking_rms_radps` (true body yaw rate minus
//!   the command), `torque_rms_nm` (the torques the simulated motors applied, mean square over
//!   joints), `tilt_rms_deg` (the base's true tilt from upright), the time
//!   shares of the controller levels;
//! - per policy step in Walk: `jerk` = mean over joints of |a_t - 2 a_{t-1} + a_{t-2}| of the
//!   action (clipped, before scaling), from the third action in Walk;
//! - `plan_p50_ms` / `plan_p99_ms`: wall-clock compute of `Policy::act` (every period of the
//!   episode), a timing figure that depends on the machine;
//! - `progress_m`: base x at the end minus at the start.
//!
//! With `--log`, the episodes' transition logs are written as the daemon writes them, and a shadow
//! model (`[controller] shadow`) runs beside a learned controller on the same snapshots, logged on
//! its own channel (`locod report` plots live against shadow).
//!
//! Not for: timing the real-time path (`locod bench`), or the daemon's own estimates (never read
//! here: every figure but the plan time comes from the simulator).

use super::lockstep::{Lockstep, PolicyStep, Truth};
use super::profile::{Commands, Profile};
use super::SimError;
use crate::config::{Config, ControllerKind};
use crate::control::goal::{Goal, GoalSequencer};
use crate::control::messages::{ControllerLevel, EventKind, Fault, Mode, ModeRequest};
use crate::control::record;
use crate::log::writer::{self as log_writer, Logger};
use crate::rt::hist::Histogram;
use crate::rt::spsc;
use crate::types::MAX_JOINTS;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The base this close to the terrain under it has fallen, m.
pub(crate) const FALL_HEIGHT_M: f64 = 0.2;
/// The scenes `--scene` names: `scene_<name>.xml` beside the configured scene.
pub const SCENES: [&str; 5] = ["flat", "step", "stairs", "slope", "soft"];
/// Where a scene's top is, base x in m: the last tread of the step and the stairs; the level top
/// of the slope (its 2.5 m ramp rises from x = 1 m at 8 degrees to x = 3.48 m).
pub(crate) const TOP_X: [(&str, f64); 3] = [("step", 1.3), ("stairs", 2.4), ("slope", 3.48)];
/// Walk must begin this long after StandUp's nominal duration.
const WALK_GRACE_S: f64 = 10.0;
/// A refused Walk request is repeated this often.
const WALK_RETRY_S: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// A scene by name (`SCENES`), instead of `[sim] model`.
    pub scene: Option<String>,
    pub real_world: bool,
    pub episodes: u32,
    /// Walk time per episode, s.
    pub seconds: f64,
    pub seed: u64,
    /// `None`: `forward` on step, stairs and slope, `random` elsewhere (as the Python evaluation).
    pub commands: Option<Commands>,
    pub policy_latency_ms: Option<f64>,
    /// Write the episodes' MCAP transition logs here.
    pub log_dir: Option<PathBuf>,
    /// Progress on stderr: a bar on a terminal, a line per episode otherwise.
    pub progress: bool,
}

/// Mean, smallest and largest over the episodes that have the figure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: impl Iterator<Item = Option<f64>>) -> Option<Spread> {
        let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some(Spread {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One episode's figures; `None` where the episode has nothing to measure (no Walk, no policy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    pub seed: u64,
    pub fell: bool,
    /// "tilt fault", "tilt" or "base low".
    pub fall: Option<String>,
    /// Simulated time of the fall since the episode's start, s.
    pub(crate) fell_at_s: Option<f64>,
    pub success: bool,
    /// When Walk began, s since the episode's start.
    pub walk_began_s: Option<f64>,
    /// Why the control loop last refused a request (Walk while the controller had no fresh action).
    pub refused: Option<String>,
    /// Time measured in Walk (until the end or the fall), s.
    pub walk_s: f64,
    pub tracking_rms_mps: Option<f64>,
    pub yaw_tracking_rms_radps: Option<f64>,
    pub jerk_mean: Option<f64>,
    pub jerk_max: Option<f64>,
    pub torque_rms_nm: Option<f64>,
    pub tilt_rms_deg: Option<f64>,
    pub plan_p50_ms: Option<f64>,
    pub plan_p99_ms: Option<f64>,
    pub progress_m: f64,
    pub primary_share: Option<f64>,
    pub prior_share: Option<f64>,
    pub stand_share: Option<f64>,
    pub damp_share: Option<f64>,
    /// Policy periods and those whose `act` failed.
    pub policy_steps: u64,
    pub policy_errors: u64,
    /// Largest number of control ticks from a snapshot to the tick that used its action.
    pub action_delay_ticks_max: Option<u64>,
}

/// The whole evaluation: the totals, then every episode.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub config: String,
    pub controller: String,
    pub scene: String,
    pub scene_file: String,
    pub real_world: bool,
    pub commands: String,
    pub seconds: f64,
    pub seed: u64,
    pub policy_latency_ms: Option<f64>,
    pub episodes: u32,
    pub falls: u32,
    pub success_rate: f64,
    pub tracking_rms_mps: Option<Spread>,
    pub yaw_tracking_rms_radps: Option<Spread>,
    pub jerk_mean: Option<Spread>,
    pub jerk_max: Option<Spread>,
    pub torque_rms_nm: Option<Spread>,
    pub tilt_rms_deg: Option<Spread>,
    pub plan_p50_ms: Option<Spread>,
    pub plan_p99_ms: Option<Spread>,
    pub progress_m: Option<Spread>,
    pub primary_share: Option<Spread>,
    pub prior_share: Option<Spread>,
    pub stand_share: Option<Spread>,
    pub damp_share: Option<Spread>,
    pub log_dir: Option<String>,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    pub per_episode: Vec<Episode>,
}

/// The scene to simulate: its name and its MJCF path as written in the configuration.
fn scene(config: &Config, opts: &EvalOptions) -> Result<(String, String), SimError> {
    let sim = config.sim.clone().unwrap_or_default();
    match &opts.scene {
        Some(name) => {
            if !SCENES.contains(&name.as_str()) {
                return Err(SimError::Config(format!("--scene {name}: expected one of {}", SCENES.join(", "))));
            }
            let file = Path::new(&sim.model).with_file_name(format!("scene_{name}.xml")).to_string_lossy().into_owned();
            if !config.resolve(&file).is_file() {
                return Err(SimError::Model(format!(
                    "--scene {name}: {} does not exist (scenes are looked for beside [sim] model)",
                    config.resolve(&file).display()
                )));
            }
            Ok((name.clone(), file))
        }
        None => {
            let file = match (opts.real_world, &sim.real_world.model) {
                (true, Some(m)) => m.clone(),
                _ => sim.model.clone(),
            };
            let stem = Path::new(&file).file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
            Ok((stem.strip_prefix("scene_").unwrap_or(&stem).to_string(), file))
        }
    }
}

/// The configuration of episode `seed`: its seeds and, with `--scene`, its scene (which also
/// replaces `[sim.real_world] model`).
fn episode_config(config: &Config, scene_file: Option<&str>, seed: u64) -> Config {
    let mut c = config.clone();
    let mut sim = c.sim.take().unwrap_or_default();
    sim.seed = seed;
    if let Some(f) = scene_file {
        sim.model = f.to_string();
        sim.real_world.model = None;
    }
    c.sim = Some(sim);
    c.mppi.seed = seed;
    c
}

/// Figures accumulated over one episode.
#[derive(Default)]
struct Meter {
    ticks: u64,
    vx_err2: f64,
    yaw_err2: f64,
    tau2: f64,
    tilt2: f64,
    levels: [u64; 4],
    prev: Option<[f32; MAX_JOINTS]>,
    prev2: Option<[f32; MAX_JOINTS]>,
    jerk_sum: f64,
    jerk_n: u64,
    jerk_max: f64,
    plans: Histogram,
    policy_steps: u64,
    policy_errors: u64,
    delay_max: Option<u64>,
}

impl Meter {
    fn tick(&mut self, command: [f64; 3], level: ControllerLevel, truth: &Truth, joints: usize) {
        self.ticks += 1;
        self.vx_err2 += (truth.vel_heading_mps()[0] - command[0]).powi(2);
        self.yaw_err2 += (truth.base_ang_vel_body_radps[2] - command[2]).powi(2);
        let n = joints.max(1);
        self.tau2 += truth.torque_nm[..joints].iter().map(|t| t * t).sum::<f64>() / n as f64;
        self.tilt2 += truth.tilt_deg().powi(2);
        self.levels[level.index()] += 1;
    }

    fn policy(&mut self, p: &PolicyStep, walking: bool) {
        self.policy_steps += 1;
        self.plans.record(p.compute_ns);
        let Some(a) = p.action else {
            self.policy_errors += 1;
            return;
        };
        self.delay_max = Some(self.delay_max.unwrap_or(0).max(p.delay_ticks));
        if !(walking && p.mode == Mode::Walk) {
            return;
        }
        if let (Some(a1), Some(a2)) = (self.prev, self.prev2) {
            let n = p.action_len.clamp(1, MAX_JOINTS);
            let j = (0..n).map(|i| f64::from((a[i] - 2.0 * a1[i] + a2[i]).abs())).sum::<f64>() / n as f64;
            self.jerk_sum += j;
            self.jerk_n += 1;
            self.jerk_max = self.jerk_max.max(j);
        }
        self.prev2 = self.prev;
        self.prev = Some(a);
    }

    fn rms(&self, sum: f64) -> Option<f64> {
        (self.ticks > 0).then(|| (sum / self.ticks as f64).sqrt())
    }

    fn share(&self, i: usize) -> Option<f64> {
        (self.ticks > 0).then(|| self.levels[i] as f64 / self.ticks as f64)
    }
}

/// The episodes' transition logs: one logger for the run, a fresh file for every episode.
struct Logs {
    logger: Logger,
    capacity: usize,
    /// A shadow model runs beside the controller and its steps are logged.
    shadow: bool,
}

/// Progress on stderr.
struct Progress {
    on: bool,
    tty: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    fn draw(&mut self, done: u32, total: u32, falls: u32, episode_t_s: f64, end_s: f64) {
        if !(self.on && self.tty) || self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 200) {
            return;
        }
        self.last_draw = Some(Instant::now());
        const WIDTH: usize = 30;
        let frac = (f64::from(done) + (episode_t_s / end_s.max(1e-9)).min(1.0)) / f64::from(total.max(1));
        let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
        eprint!(
            "\r\x1b[2Keval: [{}{}] episode {}/{total}, {episode_t_s:.1} s simulated, {falls} fall{}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            (done + 1).min(total),
            if falls == 1 { "" } else { "s" }
        );
        let _ = std::io::stderr().flush();
    }

    fn episode_done(&mut self, i: u32, total: u32, e: &Episode) {
        if !self.on {
            return;
        }
        if self.tty {
            self.last_draw = None;
            if i + 1 == total {
                eprintln!("\r\x1b[2Keval: {total} episodes done");
            }
            return;
        }
        let how = match (&e.fall, e.fell_at_s, e.walk_began_s) {
            (Some(why), Some(t), _) => format!("fell ({why}) at {t:.2} s"),
            (_, _, None) => format!("never walked ({})", e.refused.as_deref().unwrap_or("no refusal")),
            _ => format!("walked {:.1} s", e.walk_s),
        };
        eprintln!(
            "eval: episode {}/{total} (seed {}): {how}, progress {:.2} m, success {}",
            i + 1,
            e.seed,
            e.progress_m,
            e.success
        );
    }
}

/// Runs the evaluation.
pub fn run(config: &Config, opts: &EvalOptions) -> Result<EvalReport, SimError> {
    let started = Instant::now();
    if config.controller.kind == ControllerKind::None {
        return Err(SimError::Config(
            "[controller] kind = \"none\": there is no walking controller to evaluate".into(),
        ));
    }
    if opts.episodes == 0 || !(opts.seconds.is_finite() && opts.seconds > 0.0) {
        return Err(SimError::Config("at least one episode of a positive number of seconds".into()));
    }
    let (scene_name, scene_file) = scene(config, opts)?;
    let commands = opts.commands.clone().unwrap_or(match scene_name.as_str() {
        "step" | "stairs" | "slope" => Commands::Forward,
        _ => Commands::Random,
    });
    let top = TOP_X.iter().find(|(s, _)| *s == scene_name).map(|(_, x)| *x);
    let mut logs = match &opts.log_dir {
        Some(dir) => {
            let mut cfg = config.log.clone();
            cfg.enabled = true;
            cfg.dir = dir.clone();
            // The logs name the model each episode's controller loads (checked as it will be),
            // and the shadow model beside a learned one (`[controller] shadow`), logged as the
            // daemon logs it.
            let opened = crate::policy::check(config, None).map_err(SimError::Controller)?;
            let shadow = match (&opened, config.shadow_path()) {
                (Some(_), Some(path)) => crate::policy::check(config, Some(&path)).map_err(SimError::Controller)?,
                _ => None,
            };
            let models: Vec<_> = opened
                .iter()
                .map(|o| o.provenance("controller"))
                .chain(shadow.iter().map(|o| o.provenance("shadow")))
                .collect();
            let mut logger = Logger::new(&cfg, log_writer::metadata(config, &models));
            if shadow.is_some() {
                logger = logger.with_shadow();
            }
            Some(Logs { logger, capacity: cfg.ring_records, shadow: shadow.is_some() })
        }
        None => {
            if config.shadow_path().is_some() {
                crate::report::info("eval: [controller] shadow runs only with --log (its steps are only logged)");
            }
            None
        }
    };
    let mut progress = Progress { on: opts.progress, tty: std::io::stderr().is_terminal(), last_draw: None };
    let mut controller = String::from("balance (built in)");
    let mut episodes = Vec::new();
    let mut sim_seconds = 0.0;
    for i in 0..opts.episodes {
        let seed = opts.seed.wrapping_add(u64::from(i));
        let c = episode_config(config, opts.scene.as_ref().map(|_| scene_file.as_str()), seed);
        let profile = commands.profile(seed, opts.seconds);
        let falls = episodes.iter().filter(|e: &&Episode| e.fell).count() as u32;
        let (e, name, t) = episode(&c, opts, seed, &profile, top, logs.as_mut(), &mut |t, end| {
            progress.draw(i, opts.episodes, falls, t, end)
        })?;
        if let Some(n) = name {
            controller = n;
        }
        sim_seconds += t;
        progress.episode_done(i, opts.episodes, &e);
        episodes.push(e);
    }
    if let Some(l) = logs {
        l.logger.close();
    }
    let spread = |f: fn(&Episode) -> Option<f64>| Spread::of(episodes.iter().map(f));
    Ok(EvalReport {
        config: config.source.display().to_string(),
        controller,
        scene: scene_name,
        scene_file: config.resolve(&scene_file).display().to_string(),
        real_world: opts.real_world,
        commands: commands.name().to_string(),
        seconds: opts.seconds,
        seed: opts.seed,
        policy_latency_ms: opts.policy_latency_ms,
        episodes: opts.episodes,
        falls: episodes.iter().filter(|e| e.fell).count() as u32,
        success_rate: episodes.iter().filter(|e| e.success).count() as f64 / f64::from(opts.episodes),
        tracking_rms_mps: spread(|e| e.tracking_rms_mps),
        yaw_tracking_rms_radps: spread(|e| e.yaw_tracking_rms_radps),
        jerk_mean: spread(|e| e.jerk_mean),
        jerk_max: spread(|e| e.jerk_max),
        torque_rms_nm: spread(|e| e.torque_rms_nm),
        tilt_rms_deg: spread(|e| e.tilt_rms_deg),
        plan_p50_ms: spread(|e| e.plan_p50_ms),
        plan_p99_ms: spread(|e| e.plan_p99_ms),
        progress_m: spread(|e| Some(e.progress_m)),
        primary_share: spread(|e| e.primary_share),
        prior_share: spread(|e| e.prior_share),
        stand_share: spread(|e| e.stand_share),
        damp_share: spread(|e| e.damp_share),
        log_dir: opts.log_dir.as_ref().map(|d| d.display().to_string()),
        sim_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        per_episode: episodes,
    })
}

/// One episode; returns its figures, the controller's name and the simulated time.
fn episode(
    config: &Config,
    opts: &EvalOptions,
    seed: u64,
    profile: &Profile,
    top: Option<f64>,
    mut logs: Option<&mut Logs>,
    progress: &mut dyn FnMut(f64, f64),
) -> Result<(Episode, Option<String>, f64), SimError> {
    let (shadow_tap, mut shadow_ring) = match logs.as_ref() {
        Some(l) if l.shadow => {
            let (tap, ring) = spsc::spsc(crate::daemon::SHADOW_RING);
            (Some(tap), Some(ring))
        }
        _ => (None, None),
    };
    let mut ls = Lockstep::new(config, opts.real_world, opts.policy_latency_ms, shadow_tap)?;
    let name = ls.controller().map(|c| c.name);
    let mut ring = logs.as_ref().map(|l| {
        let (tap, ring) = record::ring(l.capacity, config.joints.len());
        ls.attach_log(tap);
        ring
    });
    let joints = config.joints.len();
    let tilt_limit = config.safety.tilt_limit_deg;
    let walk_deadline_s = config.controller.standup_s + WALK_GRACE_S;
    let start = ls.truth();
    let mut meter = Meter::default();
    let mut events = Vec::new();
    let mut walk_began: Option<f64> = None;
    let mut goals = GoalSequencer::new(Goal::Walk);
    let mut walk_refused_s: Option<f64> = None;
    let mut refused: Option<String> = None;
    let mut fall: Option<(&'static str, f64)> = None;
    let mut last = start;
    loop {
        let t = ls.t_s();
        let end_s = walk_began.map_or(walk_deadline_s, |t0| t0 + opts.seconds);
        if t >= end_s {
            break;
        }
        progress(t, walk_began.map_or(walk_deadline_s + opts.seconds, |t0| t0 + opts.seconds));
        if let Some(t0) = walk_began {
            ls.commander().autonomy_velocity_at(profile.at(t - t0), ls.now_ns());
        }
        let step = ls.step(&mut events);
        for e in events.drain(..) {
            let et = e.t_ns.saturating_sub(super::lockstep::T0_NS) as f64 * 1e-9;
            match e.kind {
                EventKind::ModeChanged { to: Mode::Walk, .. } if walk_began.is_none() => walk_began = Some(et),
                EventKind::FaultRaised(Fault::Tilt { .. }) if fall.is_none() => fall = Some(("tilt fault", et)),
                EventKind::Refused { request, refusal, .. } => {
                    refused = Some(refusal.to_string());
                    if request == ModeRequest::Walk {
                        walk_refused_s = Some(et);
                    }
                }
                _ => {}
            }
        }
        if let (Some(l), Some(r)) = (logs.as_mut(), ring.as_mut()) {
            while let Some(rec) = r.pop() {
                l.logger.record(&rec, ls.now_ns());
            }
            // After the ticks they were computed beside, so that they land in the same file.
            while let Some(step) = shadow_ring.as_mut().and_then(|c| c.pop()) {
                l.logger.shadow(&step, ls.now_ns());
            }
            l.logger.poll(ls.now_ns());
        }
        let snap = *ls.snapshot();
        // The daemon's sequence; a refused Walk (a controller whose actions are not fresh yet, say)
        // is asked for again by a new sequencer (StandUp is not asked for again).
        if walk_refused_s.is_some_and(|t0| ls.t_s() - t0 >= WALK_RETRY_S) {
            goals = GoalSequencer::new(Goal::Walk);
            walk_refused_s = None;
        }
        // StandUp waits for a robot without faults, as the daemon's supervisor does.
        if snap.fault.is_none() {
            goals.stand_up(ls.commander());
        }
        goals.follow(&snap, ls.commander());
        let truth = ls.truth();
        last = truth;
        let t = ls.t_s();
        if !truth.held && fall.is_none() {
            if truth.tilt_deg() > tilt_limit {
                fall = Some(("tilt", t));
            } else if truth.height_above_terrain_m() < FALL_HEIGHT_M {
                fall = Some(("base low", t));
            }
        }
        let walking = walk_began.is_some();
        if walking && fall.is_none() {
            meter.tick(snap.command, snap.level, &truth, joints);
        }
        if let Some(p) = step {
            meter.policy(&p, walking && fall.is_none());
        }
        if fall.is_some() {
            break;
        }
    }
    let t_end = ls.t_s();
    if let Some(l) = logs {
        l.logger.split("evaluation episode ended");
    }
    ls.finish(&mut events);
    let fell = fall.is_some();
    let success = !fell && walk_began.is_some() && top.is_none_or(|x| last.base_pos_m[0] > x);
    let ms = |q: f64| (meter.plans.count() > 0).then(|| meter.plans.quantile_ns(q) as f64 * 1e-6);
    let walk_s = walk_began.map_or(0.0, |t0| fall.map_or(t_end, |(_, t)| t) - t0).max(0.0);
    Ok((
        Episode {
            seed,
            fell,
            fall: fall.map(|(why, _)| why.to_string()),
            fell_at_s: fall.map(|(_, t)| t),
            success,
            walk_began_s: walk_began,
            refused,
            walk_s,
            tracking_rms_mps: meter.rms(meter.vx_err2),
            yaw_tracking_rms_radps: meter.rms(meter.yaw_err2),
            jerk_mean: (meter.jerk_n > 0).then(|| meter.jerk_sum / meter.jerk_n as f64),
            jerk_max: (meter.jerk_n > 0).then_some(meter.jerk_max),
            torque_rms_nm: meter.rms(meter.tau2),
            tilt_rms_deg: meter.rms(meter.tilt2),
            plan_p50_ms: ms(0.5),
            plan_p99_ms: ms(0.99),
            progress_m: last.base_pos_m[0] - start.base_pos_m[0],
            primary_share: meter.share(0),
            prior_share: meter.share(1),
            stand_share: meter.share(2),
            damp_share: meter.share(3),
            policy_steps: meter.policy_steps,
            policy_errors: meter.policy_errors,
            action_delay_ticks_max: meter.delay_max,
        },
        name,
        t_end,
    ))
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} on {} ({}{} commands, {} s of Walk per episode, seeds {}..={}):",
            self.controller,
            self.scene,
            if self.real_world { "real world, " } else { "" },
            self.commands,
            self.seconds,
            self.seed,
            self.seed + u64::from(self.episodes.max(1) - 1)
        )?;
        writeln!(f, "  episodes {}  falls {}  success rate {:.2}", self.episodes, self.falls, self.success_rate)?;
        let rows: [(&str, &Option<Spread>); 13] = [
            ("tracking_rms_mps", &self.tracking_rms_mps),
            ("yaw_tracking_rms_radps", &self.yaw_tracking_rms_radps),
            ("jerk_mean", &self.jerk_mean),
            ("jerk_max", &self.jerk_max),
            ("torque_rms_nm", &self.torque_rms_nm),
            ("tilt_rms_deg", &self.tilt_rms_deg),
            ("plan_p50_ms", &self.plan_p50_ms),
            ("plan_p99_ms", &self.plan_p99_ms),
            ("progress_m", &self.progress_m),
            ("primary_share", &self.primary_share),
            ("prior_share", &self.prior_share),
            ("stand_share", &self.stand_share),
            ("damp_share", &self.damp_share),
        ];
        writeln!(f, "  {:<24} {:>10} {:>10} {:>10}", "", "mean", "min", "max")?;
        for (name, s) in rows {
            match s {
                Some(s) => writeln!(f, "  {name:<24} {:>10.4} {:>10.4} {:>10.4}", s.mean, s.min, s.max)?,
                None => writeln!(f, "  {name:<24} {:>10}", "-")?,
            }
        }
        if let Some(d) = &self.log_dir {
            writeln!(f, "  logs in {d}")?;
        }
        writeln!(f, "  {:.1} s simulated in {:.1} s", self.sim_seconds, self.wall_seconds)
    }
}
