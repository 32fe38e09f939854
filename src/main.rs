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
        /// Stop after this many seconds of control (counted from the control loop's start, once
        /// the models have loaded).
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
    /// over zenoh as configured by the robot's [teleop] section; or, with --drive, a scripted drive
    /// (stand up, walk, a command file's velocities) that reports whether the robot stayed walking
    /// (exit status 1 when it did not).
    Teleop {
        #[arg(long, short)]
        config: PathBuf,
        /// A command file (`t_s, vx, yaw_rate` per line, from Walk's start; config/drives/ has
        /// examples) to drive instead of the keyboard.
        #[arg(long)]
        drive: Option<String>,
        /// With --drive: seconds of Walk (at least until the file's last command starts).
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
        /// With --drive: the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The MuJoCo simulator of the robot, behind its real protocols (pseudo-terminals at the
    /// configured ports), in real time; or, with --lockstep, the daemon's control loop and its
    /// controller on simulated time in this process (deterministic, as fast as the physics).
    #[cfg(feature = "sim")]
    Sim(SimArgs),
    /// Evaluate the configured controller: seeded episodes in lock-step (the daemon's control loop
    /// and controller on simulated time), measured with the simulator's ground truth.
    #[cfg(feature = "sim")]
    Eval(EvalArgs),
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
        /// A frame per control tick, or per policy step (the model's observation and raw action).
        #[arg(long, value_enum, default_value_t = export::Rate::Control)]
        rate: export::Rate,
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
    /// Finetune a world model's latent dynamics (`dynamics.*` only) on logged policy steps
    /// (SimDist's latent consistency loss); encoder, reward, value and prior stay bit-identical.
    Finetune(FinetuneArgs),
    /// Measure, with a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

// The `sim` command's arguments (its help text is the `Command::Sim` doc comment).
#[cfg(feature = "sim")]
#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, short, default_value = "config/sim.toml")]
    config: PathBuf,
    /// Stop after this many seconds of simulated time (default: until Ctrl-C; 10 with --lockstep).
    #[arg(long)]
    duration: Option<f64>,
    /// Simulate the configuration's [sim.real_world] instead of the nominal robot.
    #[arg(long)]
    real_world: bool,
    /// Inject a fault: imu-stop@S, imu-gap:MS@S, depth-stop@S, motor-silent:JOINT@S, bridge-garbage@S,
    /// exit@S (repeatable).
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
    /// (rounded up to control ticks) instead of after its measured compute time; a planner then
    /// plans without its time budget.
    #[arg(long, value_name = "MS")]
    policy_latency: Option<f64>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct FinetuneArgs {
    /// The robot's configuration (the model's contract is checked against it).
    #[arg(long, short)]
    config: PathBuf,
    /// The world model to start from (kept unchanged).
    #[arg(long)]
    model: PathBuf,
    /// Directories of transition logs (several: logs from several robots are one dataset).
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Where the finetuned model goes.
    #[arg(long)]
    out: PathBuf,
    /// Policy steps per training window, the loss's horizon [default: 5].
    #[arg(long)]
    horizon: Option<usize>,
    /// Weight of step t's error is rho^t [default: 0.9].
    #[arg(long)]
    rho: Option<f64>,
    /// Epochs at most [default: 60].
    #[arg(long)]
    epochs: Option<usize>,
    /// Windows per optimiser step [default: 64].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam's peak learning rate, after warm-up, before cosine decay [default: 3e-4].
    #[arg(long)]
    lr: Option<f64>,
    /// Stop after this many epochs without a better validation loss [default: 10].
    #[arg(long)]
    patience: Option<usize>,
    /// Seed of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "sim")]
#[derive(clap::Args)]
struct EvalArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// The scene scene_<SCENE>.xml beside [sim] model (default: [sim] model itself).
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
    /// random, forward, or a file of `t_s, vx, yaw_rate` lines (default: forward on step, stairs
    /// and slope, random elsewhere).
    #[arg(long, value_name = "random|forward|FILE")]
    commands: Option<String>,
    /// An action takes effect this long after its snapshot (rounded up to control ticks) instead
    /// of after its measured compute time; a planner then plans without its time budget.
    #[arg(long, value_name = "MS")]
    policy_latency: Option<f64>,
    /// Write the episodes' MCAP transition logs into DIR, as the daemon does (with `[controller]
    /// shadow`, the shadow model runs beside a learned controller and is logged too).
    #[arg(long, value_name = "DIR")]
    log: Option<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
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
    /// The daemon's control-loop timing while its model is reloaded over teleop again and again,
    /// next to the same daemon without reloads (alternating rounds).
    Reload {
        #[arg(long, short, default_value = "tests/data/student.toml")]
        config: PathBuf,
        /// Length of each round.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds of each kind.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Time between two reload requests.
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
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

/// Where a report's text goes without `--json`.
enum Text {
    /// Standard output; the report's text ends each line with a newline.
    Stdout,
    /// The journal (`report::info`), one line.
    Journal,
}

/// Prints a report: pretty JSON on stdout with `--json`, else its text.
/// `locod teleop --drive`: exit status 1 when the robot did not stay walking.
fn teleop_drive(config: &Path, file: &str, seconds: f64, json: bool) -> Result<(), ExitCode> {
    use locod::teleop::script::{drive, Script};
    let config = load(config)?;
    let script = Script::read(file).map_err(fail)?;
    let report = drive(&config, &script, seconds, !json).map_err(fail)?;
    emit(json, &report, Text::Stdout);
    if report.stayed_walking {
        Ok(())
    } else {
        Err(ExitCode::FAILURE)
    }
}

fn emit<R: serde::Serialize + std::fmt::Display>(json: bool, r: &R, text: Text) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    match text {
        Text::Stdout => print!("{r}"),
        Text::Journal => report::info(r),
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

/// A `--duration`/`--seconds` value that is not a positive number: a usage error (status 2).
fn positive_seconds(flag: &str, value: Option<f64>) -> Result<(), ExitCode> {
    match value {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            report::error(format!("{flag}: expected a positive number of seconds, got {d}"));
            Err(ExitCode::from(2))
        }
        _ => Ok(()),
    }
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
        Command::Run { config, duration, goal, json } => run_daemon(&config, duration, goal, json),
        Command::Check { config, model, quiet } => check(&config, model.as_deref(), quiet),
        Command::Motors { config, action } => motors(&config, action.unwrap_or(MotorsAction::Scan)),
        Command::Teleop { config, drive: None, .. } => locod::teleop::client::run(&load(&config)?).map_err(fail),
        Command::Teleop { config, drive: Some(file), seconds, json } => teleop_drive(&config, &file, seconds, json),
        #[cfg(feature = "sim")]
        Command::Sim(args) => sim(args),
        #[cfg(feature = "sim")]
        Command::Eval(args) => eval(args),
        Command::Finetune(args) => finetune(args),
        Command::Sensors { config, seconds } => sensors(&config, seconds),
        Command::Export { logs, out, format, walk_only, rate } => export_logs(&logs, &out, format, rate, walk_only),
        Command::Log { what: LogCommand::Recover { path } } => recover(&path),
        Command::Report { log, out } => plot_report(&log, &out),
        Command::Replay { logs, config, model, json } => replay(&logs, &config, model, json),
        Command::Bench { what } => bench(what),
    }
}

fn bench(what: BenchCommand) -> Result<(), ExitCode> {
    match what {
        BenchCommand::E2e { config, seconds, json } => {
            emit(json, &bench::e2e::run(&load(&config)?, &config, seconds).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Io { config, samples, json } => {
            emit(json, &bench::io::run(&load(&config)?, samples).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Loop { config, seconds, cpu, json } => {
            emit(json, &bench::loop_timing::run(&load(&config)?, seconds, cpu).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Teleop { config, seconds, json } => {
            emit(json, &bench::teleop::run(&load(&config)?, seconds.max(2)).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Reload { config, seconds, rounds, every_ms, json } => {
            emit(json, &bench::reload::run(&load(&config)?, seconds, rounds, every_ms).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Policy { config, model, iterations, json } => {
            let r = bench::policy::policy(&load(&config)?, model.as_deref(), iterations).map_err(fail)?;
            emit(json, &r, Text::Stdout)
        }
        BenchCommand::Mppi { config, model, plans, json } => {
            emit(json, &bench::policy::mppi(&load(&config)?, model.as_deref(), plans).map_err(fail)?, Text::Stdout)
        }
        BenchCommand::Log { config, seconds, cpu, json } => {
            emit(json, &bench::log::run(&load(&config)?, seconds, cpu).map_err(fail)?, Text::Stdout)
        }
    }
    Ok(())
}

/// `locod run`: the daemon in the foreground.
fn run_daemon(config: &Path, duration: Option<f64>, goal: Goal, json: bool) -> Result<(), ExitCode> {
    let c = load(config)?;
    positive_seconds("--duration", duration)?;
    if let Some(w) = locod::control::balance::standup_warning(&c) {
        report::warn(w);
    }
    report::info(format!(
        "{} from {}: {} joints, {} Hz; Ctrl-C stops (damping first)",
        c.robot.name,
        config.display(),
        c.joints.len(),
        c.rate.control_hz
    ));
    let opts = RunOptions { duration: duration.map(Duration::from_secs_f64), goal, ..Default::default() };
    let summary = daemon::run(&c, opts).map_err(|e| fail(report::chain(&e)))?;
    emit(json, &summary, Text::Journal);
    Ok(())
}

/// `locod check`: the configuration resolved, and the model's contract against it.
fn check(config: &Path, model: Option<&Path>, quiet: bool) -> Result<(), ExitCode> {
    let c = load(config)?;
    if !quiet {
        print!("{}", c.to_toml());
    }
    let warnings = daemon::preflight(&c).map_err(|e| {
        report::error(format!("{}: {e}", config.display()));
        ExitCode::from(2)
    })?;
    for w in warnings {
        report::warn(format!("{}: {w}", config.display()));
    }
    if let Some(w) = locod::control::balance::standup_warning(&c) {
        report::warn(w);
    }
    // The model (or the configured one), then the configured shadow and the selectable
    // controllers (`[[controller.choices]]`, each with its own kind), through every check.
    let mut checks = vec![("model".to_string(), c.clone(), model.map(Path::to_path_buf))];
    if model.is_none() {
        if let Some(s) = c.shadow_path() {
            checks.push(("shadow".into(), c.clone(), Some(s)));
        }
        for choice in &c.controller.choices {
            let chosen = c.with_controller(&choice.name).expect("a configured choice");
            checks.push((format!("controller {:?}", choice.name), chosen, None));
        }
    }
    for (what, c, path) in checks {
        let opened = policy::check(&c, path.as_deref()).map_err(|e| {
            report::error(report::chain(&e));
            ExitCode::from(2)
        })?;
        if let Some(m) = &opened {
            for w in &m.warnings {
                report::warn(w);
            }
            let k = &m.contract;
            println!(
                "# {what} ok: {}: {} for {:?}, {} observation values in {} terms, {} actions{}{}",
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

/// `locod motors`: bring-up, one motor at a time.
fn motors(config: &Path, action: MotorsAction) -> Result<(), ExitCode> {
    let c = load(config)?;
    let mut out = std::io::stdout();
    let result = match action {
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

/// `locod sim`: the simulator in real time behind the robot's protocols, or lock-step.
#[cfg(feature = "sim")]
fn sim(a: SimArgs) -> Result<(), ExitCode> {
    let c = load(&a.config)?;
    positive_seconds("--duration", a.duration)?;
    let failed = |e: locod::sim::SimError| {
        report::error(e);
        ExitCode::FAILURE
    };
    if a.lockstep {
        COMMAND.set([a.vx, 0.0, a.yaw_rate]).ok();
        let opts = locod::sim::lockstep::LockstepOptions {
            duration_s: a.duration.unwrap_or(10.0),
            goal: a.goal,
            command: |_| *COMMAND.get().unwrap_or(&[0.0; 3]),
            real_world: a.real_world,
            faults: a.faults,
            policy_latency_ms: a.policy_latency,
        };
        emit(a.json, &locod::sim::lockstep::run(&c, &opts).map_err(failed)?, Text::Stdout);
    } else {
        let opts = locod::sim::realtime::RealtimeOptions {
            duration_s: a.duration,
            real_world: a.real_world,
            faults: a.faults,
            status_interval_s: c.rate.status_interval_s,
        };
        emit(a.json, &locod::sim::realtime::run(&c, &opts).map_err(failed)?, Text::Journal);
    }
    Ok(())
}

/// `locod finetune`: the world model's dynamics on logged data.
fn finetune(a: FinetuneArgs) -> Result<(), ExitCode> {
    let c = load(&a.config)?;
    let defaults = locod::finetune::FinetuneOptions::default();
    let opts = locod::finetune::FinetuneOptions {
        model: a.model,
        data: a.data,
        out: a.out,
        horizon: a.horizon.unwrap_or(defaults.horizon),
        rho: a.rho.unwrap_or(defaults.rho),
        epochs: a.epochs.unwrap_or(defaults.epochs),
        batch: a.batch.unwrap_or(defaults.batch),
        lr: a.lr.unwrap_or(defaults.lr),
        warmup_epochs: defaults.warmup_epochs,
        patience: a.patience.unwrap_or(defaults.patience),
        seed: a.seed,
        progress: !a.json,
    };
    let r = locod::finetune::run(&c, &opts).map_err(fail)?;
    emit(a.json, &r, Text::Stdout);
    if !a.json {
        println!();
    }
    Ok(())
}

/// `locod eval`: seeded lock-step episodes of the configured controller.
#[cfg(feature = "sim")]
fn eval(a: EvalArgs) -> Result<(), ExitCode> {
    let c = load(&a.config)?;
    let commands = a.commands.map(|s| locod::sim::profile::Commands::parse(&s)).transpose().map_err(|e| {
        report::error(e);
        ExitCode::from(2)
    })?;
    let opts = locod::sim::eval::EvalOptions {
        scene: a.scene,
        real_world: a.real_world,
        episodes: a.episodes,
        seconds: a.seconds,
        seed: a.seed,
        commands,
        policy_latency_ms: a.policy_latency,
        log_dir: a.log,
        progress: true,
    };
    emit(a.json, &locod::sim::eval::run(&c, &opts).map_err(fail)?, Text::Stdout);
    Ok(())
}

/// `locod sensors`: the live sensor view.
fn sensors(config: &Path, seconds: Option<f64>) -> Result<(), ExitCode> {
    let c = load(config)?;
    positive_seconds("--seconds", seconds)?;
    sensors_view::run(&c, seconds).map_err(fail)
}

/// `locod export`: logs into a training dataset.
fn export_logs(
    logs: &Path,
    out: &Path,
    format: export::Format,
    rate: export::Rate,
    walk_only: bool,
) -> Result<(), ExitCode> {
    let s = export::export(logs, out, format, rate, walk_only).map_err(fail)?;
    report::info(format!(
        "exported {} episodes, {} {} ({} valid transitions) at {} Hz to {}",
        s.episodes,
        s.frames,
        rate.frame_name(),
        s.valid_pairs,
        s.fps,
        s.out.display()
    ));
    Ok(())
}

/// `locod log recover`: finish the files a crash left open. Any file that could not be recovered
/// makes the command fail (status 1), naming the file.
fn recover(path: &Path) -> Result<(), ExitCode> {
    let done = if path.is_dir() {
        read::recover_dir(path).map_err(fail)?
    } else {
        match read::recover(path) {
            Ok(r) => read::DirRecovery { recovered: vec![r], failed: Vec::new() },
            Err(e) => read::DirRecovery { recovered: Vec::new(), failed: vec![e] },
        }
    };
    for r in &done.recovered {
        report::info(format!("recovered {r}"));
    }
    if done.recovered.is_empty() && done.failed.is_empty() {
        report::info(format!("{}: nothing to recover (no .mcap.part files)", path.display()));
    }
    for e in &done.failed {
        report::error(format!("cannot recover {e}"));
    }
    if done.failed.is_empty() {
        Ok(())
    } else {
        if done.failed.len() + done.recovered.len() > 1 {
            report::error(format!(
                "{} of {} files could not be recovered (kept as they are)",
                done.failed.len(),
                done.failed.len() + done.recovered.len()
            ));
        }
        Err(ExitCode::FAILURE)
    }
}

/// `locod report`: PNG plots of a log.
fn plot_report(log: &Path, out: &Path) -> Result<(), ExitCode> {
    for f in plot::report(log, out).map_err(fail)? {
        println!("{}", f.display());
    }
    Ok(())
}

/// A replay's report with the model it replayed through, as `locod replay` prints it.
struct Replayed<'a> {
    model: &'a Path,
    report: policy::replay::ReplayReport,
}

impl serde::Serialize for Replayed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report.serialize(s)
    }
}

impl std::fmt::Display for Replayed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "{} policy steps replayed through {}: largest action difference {:.3e} (step {}, action {}: logged {}, replayed {})",
            r.steps,
            self.model.display(),
            r.max_abs_diff,
            r.at_step,
            r.at_action,
            r.logged,
            r.replayed
        )
    }
}

/// `locod replay`: a log's observations through a model, against the logged actions.
fn replay(logs: &Path, config: &Path, model: Option<PathBuf>, json: bool) -> Result<(), ExitCode> {
    let c = load(config)?;
    let model = model.or_else(|| c.model_path()).ok_or_else(|| fail("--model: no model given or configured"))?;
    let report = replay_logs(logs, &model, &c).map_err(fail)?;
    emit(json, &Replayed { model: &model, report }, Text::Stdout);
    Ok(())
}
