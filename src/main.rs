//! The `locod` command line: run the daemon, check a configuration, measure.

use clap::{Parser, Subcommand};
use locod::config::Config;
use locod::daemon::{self, Goal, RunOptions};
use locod::log::{export, plot, read};
use locod::{bench, policy, report};
use std::path::PathBuf;
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
    /// Validate a configuration and print it resolved, defaults included.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Print only the verdict, not the resolved configuration.
        #[arg(long, short)]
        quiet: bool,
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
    /// Measure, with a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
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

fn load(path: &PathBuf) -> Result<Config, ExitCode> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn run(command: Command) -> Result<(), ExitCode> {
    match command {
        Command::Check { config, quiet } => {
            let c = load(&config)?;
            if !quiet {
                print!("{}", c.to_toml());
            }
            let t = policy::libtorch::info();
            println!(
                "# ok: {} joints on {} bus(es), control {} Hz, policy {} Hz; libtorch: {} intra-op threads, cuda {}",
                c.joints.len(),
                c.buses.len(),
                c.rate.control_hz,
                c.rate.policy_hz,
                t.intra_op_threads,
                if t.cuda_available { format!("{} device(s)", t.cuda_devices) } else { "unavailable".into() }
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
            let summary = daemon::run(&c, opts).map_err(|e| {
                report::error(e);
                ExitCode::FAILURE
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
            } else {
                report::info(&summary);
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
        Command::Bench { what: BenchCommand::Loop { config, seconds, cpu, json } } => {
            let c = load(&config)?;
            let r = bench::loop_timing::run(&c, seconds, cpu).map_err(|e| {
                report::error(e);
                ExitCode::FAILURE
            })?;
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
