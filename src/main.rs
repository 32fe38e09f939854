//! The `locod` command line: run the daemon, check a configuration, measure.

use clap::{Parser, Subcommand};
use locod::config::Config;
use locod::daemon::{self, Goal, RunOptions};
use locod::log::{export, plot, read};
use locod::{bench, bringup, policy, report, sensors_view};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "locod", version, about = "Real-time onboard controller daemon for learned locomotion controllers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGINT/SIGTERM (or --duration).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Where to take the robot once running (requests later come from teleop).
        #[arg(long, value_enum, default_value_t = Goal::Passive)]
        goal: Goal,
        /// Print the closing summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration (and its model's contract) and print it resolved, defaults included.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Check this TorchScript model against the configuration (default: the configured model).
        #[arg(long, short)]
        model: Option<PathBuf>,
        /// Print only the verdict, not the resolved configuration.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Bring-up: find the motors, check ids and directions, set zeros (one motor at a time).
    Motors {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<MotorsAction>,
    },
    /// The operator's client: the robot's state live, driving with the keyboard or a gamepad,
    /// over zenoh as configured by the robot's [teleop] section.
    Teleop {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The MuJoCo simulator of the robot, behind its real protocols (pseudo-terminals at the
    /// configured ports), in real time; or, with --lockstep, the daemon's control loop on
    /// simulated time in this process (deterministic, as fast as the physics).
    #[cfg(feature = "sim")]
    Sim {
        #[arg(long, short, default_value = "config/sim.toml")]
        config: PathBuf,
        /// Stop after this many seconds of simulated time (default: until Ctrl-C; 10 with --lockstep).
        #[arg(long)]
        duration: Option<f64>,
        /// Simulate the configuration's [sim.real_world] instead of the nominal robot.
        #[arg(long)]
        real_world: bool,
        /// Inject a fault: imu-stop@S, motor-silent:JOINT@S, bridge-garbage@S, exit@S (repeatable).
        #[arg(long = "fault", value_name = "KIND@SECONDS")]
        faults: Vec<locod::sim::ScheduledFault>,
        /// Run the daemon's control loop in lock-step with the simulation (no ports, no threads).
        #[arg(long)]
        lockstep: bool,
        /// Lock-step: where the daemon takes the robot.
        #[arg(long, value_enum, default_value_t = Goal::Walk)]
        goal: Goal,
        /// Lock-step: forward speed command once walking, m/s.
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        vx: f64,
        /// Lock-step: yaw-rate command once walking, rad/s.
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        yaw_rate: f64,
        /// Lock-step: a learned controller's action takes effect this long after its snapshot
        /// (rounded up to control ticks) instead of after its measured compute time.
        #[arg(long, value_name = "MS")]
        policy_latency: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the configured controller: seeded episodes in lock-step (the daemon's control loop
    /// and controller on simulated time), measured with the simulator's ground truth.
    #[cfg(feature = "sim")]
    Eval {
        #[arg(long, short)]
        config: PathBuf,
        /// The scene models/robots/<robot>/scene_<SCENE>.xml beside [sim] model (default: [sim] model).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(locod::sim::eval::SCENES))]
        scene: Option<String>,
        /// Simulate the configuration's [sim.real_world] instead of the nominal robot.
        #[arg(long)]
        real_world: bool,
        #[arg(long, default_value_t = 20)]
        episodes: u32,
        /// Seconds of Walk per episode (simulated).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Episode i uses seed K + i (simulator noise, planner sampling, random commands).
        #[arg(long, value_name = "K", default_value_t = 1000)]
        seed: u64,
        /// random, forward, or a file of `t_s, vx, yaw_rate` lines (default: forward on step,
        /// stairs and slope, random elsewhere).
        #[arg(long, value_name = "random|forward|FILE")]
        commands: Option<String>,
        /// An action takes effect this long after its snapshot (rounded up to control ticks)
        /// instead of after its measured compute time; a planner then plans without its budget.
        #[arg(long, value_name = "MS")]
        policy_latency: Option<f64>,
        /// Write the episodes' MCAP transition logs into DIR, as the daemon does.
        #[arg(long, value_name = "DIR")]
        log: Option<PathBuf>,
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Live view of the IMU, depth zones and firmware-bridge link health (bring-up).
    Sensors {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Turn transition logs (a directory of .mcap, or one file) into a training dataset.
    Export {
        /// A log directory (every closed .mcap in it) or one log file.
        logs: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = export::Format::Lerobot)]
        format: export::Format,
        /// Only episodes spent entirely in Walk.
        #[arg(long)]
        walk_only: bool,
    },
    /// Transition logs: recovery after a crash.
    Log {
        #[command(subcommand)]
        what: LogCommand,
    },
    /// PNG plots of a log (a file, or a directory: its newest file).
    Report {
        log: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-run the observations a log recorded through a model and report the largest difference
    /// from the actions logged: proof that the deployed model does what it did in the field.
    Replay {
        /// A log file, or a directory of closed logs (replayed in name order).
        logs: PathBuf,
        #[arg(long, short)]
        config: PathBuf,
        /// The model (default: the configured one).
        #[arg(long, short)]
        model: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Measure, with a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum MotorsAction {
    /// List which configured motors answer, with position, velocity, torque, temperature, error
    /// (the default). Each motor is enabled with zero gains for a moment, then disabled.
    Scan,
    /// Enable one motor (zero torque until commanded).
    Enable { joint: String },
    /// Disable one motor.
    Disable { joint: String },
    /// Move one joint by a small step and back with its stand gains, then disable it.
    Jog {
        joint: String,
        #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
        step_rad: f64,
    },
    /// Make the joint's current angle read `--pose-rad` (default 0) by writing its offset to the
    /// calibration file named by [robot] calibration.
    Zero {
        joint: String,
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        pose_rad: f64,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Finish log files a crash or a full disk left open (`*.mcap.part`, or a given file):
    /// keeps every record up to the last complete chunk.
    Recover { path: PathBuf },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Sensor frame written → the daemon's motor command using it arrives back, in real time,
    /// with the daemon as a separate process (its bus on a pty answered as the motors).
    E2e {
        #[arg(long, short, default_value = "config/sim.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// Protocol codec throughput, and motor reply → joint slot latency (in-memory cable, slcan on
    /// a pty) next to the transport's own wake-up floor.
    Io {
        #[arg(long, short, default_value = "config/biwheel.toml")]
        config: PathBuf,
        /// Replies per latency path (one per millisecond).
        #[arg(long, default_value_t = 3000)]
        samples: usize,
        #[arg(long)]
        json: bool,
    },
    /// Control-loop timing on the in-memory robot next to cyclictest at the same rate.
    Loop {
        #[arg(long, short, default_value = "config/biwheel.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// CPU for the loop and the reference (default: the configured one, else the last CPU).
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Teleop publish -> command applied in the control loop (next to zenoh's own delivery), and
    /// the loop's timing with telemetry at the full control rate (next to the loop without teleop).
    Teleop {
        #[arg(long, short, default_value = "config/biwheel.toml")]
        config: PathBuf,
        /// Length of each of the three phases.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        json: bool,
    },
    /// Student forward latency next to the same TorchScript model called from Python.
    Policy {
        #[arg(long, short)]
        config: PathBuf,
        /// The student model (default: the configured one).
        #[arg(long, short)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
    /// MPPI plan latency, model steps/s and FLOP rate, next to the matrix-product limit and a
    /// Python TD-MPC2 planner on the same model.
    Mppi {
        #[arg(long, short)]
        config: PathBuf,
        /// The world model (default: the configured one).
        #[arg(long, short)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 300)]
        plans: usize,
        #[arg(long)]
        json: bool,
    },
    /// What transition logging adds to the control step, and whether the logger keeps up.
    Log {
        #[arg(long, short, default_value = "config/biwheel.toml")]
        config: PathBuf,
        /// Length of each timed run (overhead, 500 Hz, 1 kHz).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

fn libtorch_line() -> String {
    let t = policy::libtorch::info();
    let cuda = if t.cuda_available { format!("{} device(s)", t.cuda_devices) } else { "unavailable".into() };
    format!("libtorch: {} intra-op threads, cuda {cuda}", t.intra_op_threads)
}

fn print_json_or<T: serde::Serialize>(json: bool, r: &T, text: impl FnOnce(&T)) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
    } else {
        text(r);
    }
}

/// The distinct policy steps of the logs at `logs` (one per policy tick, not per control tick),
/// replayed through `model`. A mode change resets the model's state, as it did on the robot.
fn replay_logs(logs: &Path, model: &Path, config: &Config) -> Result<policy::replay::ReplayReport, String> {
    let files = read::log_files(logs).map_err(|e| e.to_string())?;
    let mut steps: Vec<(Vec<f32>, Vec<f32>, bool)> = Vec::new();
    for f in &files {
        let log = read::read_file(f).map_err(|e| e.to_string())?;
        let (mut last_t, mut last_mode, mut pending_reset) = (0, None, true);
        for t in &log.ticks {
            pending_reset |= last_mode.is_some_and(|m| m != t.mode);
            last_mode = Some(t.mode);
            if t.policy_t_ns == 0 || t.policy_t_ns == last_t || t.policy_obs.is_empty() {
                continue;
            }
            last_t = t.policy_t_ns;
            steps.push((t.policy_obs.clone(), t.policy_action.clone(), pending_reset));
            pending_reset = false;
        }
    }
    if steps.is_empty() {
        return Err(format!(
            "{}: no policy observations in the log (was a learned controller running?)",
            logs.display()
        ));
    }
    policy::replay::replay(
        model,
        config,
        steps.iter().map(|(o, a, r)| policy::replay::ReplayStep { obs: o, action: a, reset: *r }),
    )
}

#[cfg(feature = "sim")]
fn print_eval(r: &locod::sim::eval::EvalReport) {
    use locod::sim::eval::Spread;
    println!(
        "{} on {} ({}{} commands, {} s per episode, seeds {}..{}):",
        r.controller,
        r.scene,
        if r.real_world { "real world, " } else { "" },
        r.commands,
        r.seconds,
        r.seed,
        r.seed + u64::from(r.episodes)
    );
    println!("  episodes {}  falls {}  success rate {:.2}", r.episodes, r.falls, r.success_rate);
    let rows: [(&str, &Option<Spread>); 12] = [
        ("tracking_rms_mps", &r.tracking_rms_mps),
        ("yaw_tracking_rms_radps", &r.yaw_tracking_rms_radps),
        ("jerk_mean", &r.jerk_mean),
        ("jerk_max", &r.jerk_max),
        ("torque_rms_nm", &r.torque_rms_nm),
        ("plan_p50_ms", &r.plan_p50_ms),
        ("plan_p99_ms", &r.plan_p99_ms),
        ("progress_m", &r.progress_m),
        ("primary_share", &r.primary_share),
        ("prior_share", &r.prior_share),
        ("stand_share", &r.stand_share),
        ("damp_share", &r.damp_share),
    ];
    println!("  {:<24} {:>10} {:>10} {:>10}", "", "mean", "min", "max");
    for (name, s) in rows {
        match s {
            Some(s) => println!("  {name:<24} {:>10.4} {:>10.4} {:>10.4}", s.mean, s.min, s.max),
            None => println!("  {name:<24} {:>10}", "-"),
        }
    }
    println!("  {:.1} s simulated in {:.1} s", r.sim_seconds, r.wall_seconds);
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        report::error(e);
        ExitCode::from(2)
    })
}

/// A failed command: the error on one line, exit status 1.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    report::error(e);
    ExitCode::FAILURE
}

/// The lock-step run's constant velocity command (a plain `fn` cannot capture it).
#[cfg(feature = "sim")]
static COMMAND: std::sync::OnceLock<[f64; 3]> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn run(command: Command) -> Result<(), ExitCode> {
    match command {
        Command::Check { config, model, quiet } => {
            let c = load(&config)?;
            if !quiet {
                print!("{}", c.to_toml());
            }
            let opened = policy::check(&c, model.as_deref()).map_err(|e| {
                report::error(e);
                ExitCode::from(2)
            })?;
            if let Some(m) = &opened {
                for w in &m.warnings {
                    report::warn(w);
                }
                let k = &m.contract;
                println!(
                    "# model ok: {}: {} for {:?}, {} observation values in {} terms, {} actions{}{}",
                    m.path.display(),
                    k.kind.as_str(),
                    k.robot,
                    k.obs_dim(),
                    k.obs.len(),
                    k.action_dim,
                    if k.recurrent_state.is_some() { ", recurrent" } else { "" },
                    match (m.optional.pi, m.optional.rollout) {
                        (false, false) if k.latent_dim.is_some() => ", no prior, stepped rollout",
                        (true, false) => ", prior pi, stepped rollout",
                        (false, true) => ", no prior, fused rollout",
                        (true, true) => ", prior pi, fused rollout",
                        _ => "",
                    }
                );
            }
            println!(
                "# ok: {} joints on {} bus(es), control {} Hz, policy {} Hz; {}",
                c.joints.len(),
                c.buses.len(),
                c.rate.control_hz,
                c.rate.policy_hz,
                libtorch_line()
            );
            Ok(())
        }
        Command::Run { config, duration, goal, json } => {
            let c = load(&config)?;
            if let Some(d) = duration {
                if !(d.is_finite() && d > 0.0) {
                    report::error(format!("--duration: expected a positive number of seconds, got {d}"));
                    return Err(ExitCode::from(2));
                }
            }
            report::info(format!(
                "{} from {}: {} joints, {} Hz; Ctrl-C stops (damping first)",
                c.robot.name,
                config.display(),
                c.joints.len(),
                c.rate.control_hz
            ));
            let opts = RunOptions { duration: duration.map(Duration::from_secs_f64), goal, ..Default::default() };
            let summary = daemon::run(&c, opts).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
            } else {
                report::info(&summary);
            }
            Ok(())
        }
        Command::Motors { config, action } => {
            let c = load(&config)?;
            let mut out = std::io::stdout();
            let result = match action.unwrap_or(MotorsAction::Scan) {
                MotorsAction::Scan => bringup::scan(&c, &mut out).map(|_| ()),
                MotorsAction::Enable { joint } => bringup::set_enabled(&c, &joint, true, &mut out),
                MotorsAction::Disable { joint } => bringup::set_enabled(&c, &joint, false, &mut out),
                MotorsAction::Jog { joint, step_rad } => bringup::jog(&c, &joint, step_rad, &mut out),
                MotorsAction::Zero { joint, pose_rad, yes } => {
                    bringup::zero(&c, &joint, pose_rad, yes, &mut std::io::stdin().lock(), &mut out)
                }
            };
            result.map_err(fail)
        }
        Command::Teleop { config } => {
            let c = load(&config)?;
            locod::teleop::client::run(&c).map_err(fail)
        }
        #[cfg(feature = "sim")]
        Command::Sim { config, duration, real_world, faults, lockstep, goal, vx, yaw_rate, policy_latency, json } => {
            let c = load(&config)?;
            if let Some(d) = duration {
                if !(d.is_finite() && d > 0.0) {
                    report::error(format!("--duration: expected a positive number of seconds, got {d}"));
                    return Err(ExitCode::from(2));
                }
            }
            let failed = |e: locod::sim::SimError| {
                report::error(e);
                ExitCode::FAILURE
            };
            if lockstep {
                COMMAND.set([vx, 0.0, yaw_rate]).ok();
                let opts = locod::sim::lockstep::LockstepOptions {
                    duration_s: duration.unwrap_or(10.0),
                    goal,
                    command: |_| *COMMAND.get().unwrap_or(&[0.0; 3]),
                    real_world,
                    faults,
                    policy_latency_ms: policy_latency,
                };
                let r = locod::sim::lockstep::run(&c, &opts).map_err(failed)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                } else {
                    for e in &r.events {
                        println!("{:8.3} s  {}", e.t_s, e.event);
                    }
                    println!(
                        "lock-step: {:.1} s simulated in {:.2} s ({} ticks), final mode {:?}; max tilt {:.1} deg, lowest base {:.3} m; walked {:.2} m at {:.2} m/s",
                        r.sim_seconds, r.wall_seconds, r.ticks, r.final_mode, r.max_tilt_deg, r.min_base_height_m,
                        r.walk_displacement_m[0].hypot(r.walk_displacement_m[1]), r.walk_mean_speed_mps
                    );
                }
            } else {
                let opts = locod::sim::realtime::RealtimeOptions {
                    duration_s: duration,
                    real_world,
                    faults,
                    status_interval_s: c.rate.status_interval_s,
                };
                let r = locod::sim::realtime::run(&c, &opts).map_err(failed)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                } else {
                    report::info(format!(
                        "sim: stopped ({}) after {:.1} s simulated in {:.1} s; {} steps ({} late), CAN {} in / {} replies, bridge {} frames ({} bytes dropped)",
                        r.stopped_by, r.sim_seconds, r.wall_seconds, r.steps, r.late_steps, r.can_frames_in,
                        r.can_replies, r.bridge_frames_out, r.bridge_bytes_dropped
                    ));
                }
            }
            Ok(())
        }
        #[cfg(feature = "sim")]
        Command::Eval { config, scene, real_world, episodes, seconds, seed, commands, policy_latency, log, json } => {
            let c = load(&config)?;
            let usage = |m: String| {
                report::error(m);
                ExitCode::from(2)
            };
            let commands = commands.map(|a| locod::sim::profile::Commands::parse(&a)).transpose().map_err(usage)?;
            let opts = locod::sim::eval::EvalOptions {
                scene,
                real_world,
                episodes,
                seconds,
                seed,
                commands,
                policy_latency_ms: policy_latency,
                log_dir: log,
                progress: true,
            };
            let r = locod::sim::eval::run(&c, &opts).map_err(fail)?;
            print_json_or(json, &r, print_eval);
            Ok(())
        }
        Command::Sensors { config, seconds } => {
            let c = load(&config)?;
            if let Some(s) = seconds {
                if !(s.is_finite() && s > 0.0) {
                    report::error(format!("--seconds: expected a positive number of seconds, got {s}"));
                    return Err(ExitCode::from(2));
                }
            }
            sensors_view::run(&c, seconds).map_err(fail)
        }
        Command::Bench { what: BenchCommand::Teleop { config, seconds, json } } => {
            let c = load(&config)?;
            let r = bench::teleop::run(&c, seconds.max(2)).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                let l = &r.latency;
                println!(
                    "teleop publish -> applied: p50 {:.0} us p99 {:.0} us ({} of {} sent); zenoh alone p50 {:.0} us p99 {:.0} us; ratio {:.2}",
                    l.publish_to_applied_us.p50, l.publish_to_applied_us.p99, l.applied, l.sent, l.reference_us.p50, l.reference_us.p99, l.ratio
                );
                let t = &r.telemetry;
                println!(
                    "loop with state at {} Hz: wake p99 {:.1} us, compute p99 {:.1} us; without teleop: wake p99 {:.1} us, compute p99 {:.1} us; ratios {:.2} / {:.2}",
                    t.state_hz, t.with_telemetry.wake_us.p99, t.with_telemetry.compute_us.p99, t.reference.wake_us.p99, t.reference.compute_us.p99, t.ratio_wake_p99, t.ratio_compute_p99
                );
            }
            Ok(())
        }
        Command::Bench { what: BenchCommand::Io { config, samples, json } } => {
            let c = load(&config)?;
            let r = bench::io::run(&c, samples).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                let k = &r.codecs_ns_per_op;
                println!("codecs (ns/op): MIT pack {:.1}, MIT decode {:.1}, slcan encode {:.1}, slcan decode {:.1}, WitMotion {:.1}", k.mit_pack_command, k.mit_decode_reply, k.slcan_encode_frame, k.slcan_decode_line, k.witmotion_decode_frame);
                for (name, p) in [("in-memory cable", &r.latency.membus), ("slcan on a pty", &r.latency.slcan_pty)] {
                    println!(
                        "{name}: reply -> slot p50 {:.1} us p99 {:.1} us; {} p50 {:.1} us p99 {:.1} us; ratio {:.2}",
                        p.locod_us.p50, p.locod_us.p99, p.reference, p.reference_us.p50, p.reference_us.p99, p.ratio
                    );
                }
            }
            Ok(())
        }
        Command::Export { logs, out, format, walk_only } => {
            let s = export::export(&logs, &out, format, walk_only).map_err(fail)?;
            report::info(format!(
                "exported {} episodes, {} frames ({} valid transitions) at {} Hz to {}",
                s.episodes,
                s.frames,
                s.valid_pairs,
                s.fps,
                s.out.display()
            ));
            Ok(())
        }
        Command::Log { what: LogCommand::Recover { path } } => {
            let done = if path.is_dir() {
                read::recover_dir(&path).map_err(fail)?
            } else {
                vec![read::recover(&path).map_err(fail)?]
            };
            if done.is_empty() {
                report::info(format!("{}: nothing to recover (no .mcap.part files)", path.display()));
            }
            for r in done {
                report::info(format!("recovered {r}"));
            }
            Ok(())
        }
        Command::Report { log, out } => {
            let files = plot::report(&log, &out).map_err(fail)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Bench { what: BenchCommand::Log { config, seconds, cpu, json } } => {
            let c = load(&config)?;
            let r = bench::log::run(&c, seconds, cpu).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                let o = &r.overhead_us;
                println!("logging at {} Hz ({}), record {} bytes:", o.rate_hz, r.control_thread, r.record_bytes);
                println!(
                    "  overhead        p50 {:.2} us  p99 {:.2} us (target p99 < {} us)",
                    o.p50, o.p99, o.target_p99
                );
                println!("  push alone      p50 {:.2} us  p99 {:.2} us", o.push_us.p50, o.push_us.p99);
                for s in &r.sustained {
                    println!(
                        "  {:>5} Hz       {} written, {} dropped, {} lost, {:.0} bytes/step",
                        s.rate_hz, s.records_written, s.records_dropped, s.records_lost, s.bytes_per_step
                    );
                }
                for c in &r.compression {
                    println!(
                        "  {:<15} {:.0} bytes/step, {:.1} us/record",
                        format!("{:?}", c.compression),
                        c.bytes_per_step,
                        c.write_us_per_record
                    );
                }
            }
            Ok(())
        }
        Command::Bench { what: BenchCommand::Policy { config, model, iterations, json } } => {
            let c = load(&config)?;
            let r = bench::policy::policy(&c, model.as_deref(), iterations).map_err(fail)?;
            print_json_or(json, &r, |r| {
                println!("student {} ({} thread(s)):", r.model, r.threads);
                println!("  locod forward  p50 {:.1} us  p99 {:.1} us", r.forward_us.p50, r.forward_us.p99);
                println!("  locod tick     p50 {:.1} us  p99 {:.1} us", r.tick_us.p50, r.tick_us.p99);
                let p = &r.reference.latency_us;
                println!("  python         p50 {:.1} us  p99 {:.1} us", p.p50, p.p99);
                println!("  ratio (p50)    {:.2} (target <= {})", r.ratio, r.target_ratio);
            });
            Ok(())
        }
        Command::Bench { what: BenchCommand::Mppi { config, model, plans, json } } => {
            let c = load(&config)?;
            let r = bench::policy::mppi(&c, model.as_deref(), plans).map_err(fail)?;
            print_json_or(json, &r, |r| {
                println!(
                    "mppi {} ({} rollout, {} samples, horizon {}, {} iterations, {} prior):",
                    r.model, r.rollout, r.samples, r.horizon, r.iterations, r.prior_samples
                );
                println!("  locod plan     p50 {:.0} us  p99 {:.0} us", r.plan_us.p50, r.plan_us.p99);
                let p = &r.reference.latency_us;
                println!("  python plan    p50 {:.0} us  p99 {:.0} us", p.p50, p.p99);
                println!(
                    "  {:.0} model steps/s, {:.1} GFLOP/s of {:.1} (matmul floor {:.0} us, {:.0}% of it)",
                    r.model_steps_per_s,
                    r.achieved_gflops,
                    r.matmul_limit_gflops,
                    r.matmul_floor_us,
                    100.0 * r.fraction_of_floor
                );
                println!("  ratio (p50)    {:.2} (target <= {})", r.ratio, r.target_ratio);
            });
            Ok(())
        }
        Command::Replay { logs, config, model, json } => {
            let c = load(&config)?;
            let model =
                model.or_else(|| c.model_path()).ok_or_else(|| fail("--model: no model given or configured"))?;
            let r = replay_logs(&logs, &model, &c).map_err(fail)?;
            print_json_or(json, &r, |r| {
                println!(
                    "{} policy steps replayed through {}: largest action difference {:.3e} (step {}, action {}: logged {}, replayed {})",
                    r.steps,
                    model.display(),
                    r.max_abs_diff,
                    r.at_step,
                    r.at_action,
                    r.logged,
                    r.replayed
                );
            });
            Ok(())
        }
        Command::Bench { what: BenchCommand::E2e { config, seconds, json } } => {
            let c = load(&config)?;
            let r = bench::e2e::run(&c, &config, seconds).map_err(fail)?;
            print_json_or(json, &r, |r| {
                let (l, f) = (&r.locod_us, &r.reference_us);
                println!("sensor frame -> command back at {} Hz: p50 {:.0} us p99 {:.0} us max {:.0} us (a reply answers the previous tick: one period is {:.0} us)", r.control_hz, l.p50, l.p99, l.max, r.control_period_us);
                println!("{}: p50 {:.0} us p99 {:.0} us; ratio {:.1}", r.reference, f.p50, f.p99, r.ratio);
            });
            Ok(())
        }
        Command::Bench { what: BenchCommand::Loop { config, seconds, cpu, json } } => {
            let c = load(&config)?;
            let r = bench::loop_timing::run(&c, seconds, cpu).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!("control loop at {} Hz for {} s ({}):", r.rate_hz, r.seconds, r.control_thread);
                let w = &r.locod.wake_us;
                let f = &r.reference.wake_us;
                println!(
                    "  locod wake-up   p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
                    w.p50, w.p99, w.p999, w.max
                );
                println!(
                    "  {:<15} p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
                    r.reference.tool, f.p50, f.p99, f.p999, f.max
                );
                println!(
                    "  compute         p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                    r.locod.compute_us.p50, r.locod.compute_us.p99, r.locod.compute_us.max
                );
                println!("  ratio (p99.9)   {:.2} (target <= {})", r.ratio, r.target_ratio);
            }
            Ok(())
        }
    }
}
