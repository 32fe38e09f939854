//! `locod bench log`: what recording costs the control loop, and whether the logger keeps up.
//!
//! Overhead: two control loops on the in-memory robot, ticked alternately on one thread at the
//! control rate, one with the log ring attached (drained by a real logger thread into MCAP), one
//! without; `overhead_us` is the difference of their compute-time percentiles. The push alone is
//! timed too. Sustained rate: one loop with logging at 500 Hz and 1 kHz on real deadlines for the
//! given time: records written and dropped, bytes per step on disk. Compression and encoding: the
//! same recorded ticks written with zstd, lz4 and none, and encoded as CDR and as JSON.

use super::Percentiles;
use crate::config::{Config, LogCompression};
use crate::control::inputs::{inbox, ActionWriter};
use crate::control::messages::{ControllerLevel, ModeRequest};
use crate::control::record::{self, TickRecord};
use crate::control::ControlLoop;
use crate::log::schema::{self, Tick};
use crate::log::writer::{self, LogStats, Logger};
use crate::rt::clock::{Clock, ManualClock, MonotonicClock, NS_PER_S};
use crate::rt::hist::Histogram;
use crate::rt::sched::{run_periodic, Periodic, Release};
use crate::rt::thread::{self, RtSpec, Setup};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Floats of synthetic policy observation per action (the example robot has no model yet).
const OBS_LEN: usize = 48;

#[derive(Debug, Serialize)]
pub struct LogBenchReport {
    pub bench: &'static str,
    pub(crate) control_thread: String,
    /// Size of one record in the ring.
    pub(crate) record_bytes: usize,
    pub(crate) overhead_us: Overhead,
    pub(crate) sustained: Vec<Sustained>,
    pub(crate) compression: Vec<CompressionRun>,
    pub encoding: Encoding,
}

#[derive(Debug, Serialize)]
pub(crate) struct Overhead {
    pub rate_hz: u32,
    pub seconds: f64,
    /// Compute-time percentile with logging minus without (same run, alternate ticks).
    pub p50: f64,
    pub(crate) p99: f64,
    pub(crate) target_p99: f64,
    pub(crate) compute_without_us: Percentiles,
    pub(crate) compute_with_us: Percentiles,
    /// Filling and pushing the record alone.
    pub(crate) push_us: Percentiles,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sustained {
    pub rate_hz: u32,
    pub seconds: f64,
    pub ticks: u64,
    pub records_written: u64,
    pub records_dropped: u64,
    pub records_lost: u64,
    pub(crate) bytes_on_disk: u64,
    pub(crate) bytes_per_step: f64,
    pub(crate) compression: LogCompression,
}

#[derive(Debug, Serialize)]
pub(crate) struct CompressionRun {
    pub(crate) compression: LogCompression,
    pub records: u64,
    pub bytes: u64,
    pub(crate) bytes_per_step: f64,
    /// Logger time per record (encode, compress, write).
    pub(crate) write_us_per_record: f64,
}

#[derive(Debug, Serialize)]
pub struct Encoding {
    pub(crate) cdr_bytes_per_record: f64,
    pub(crate) cdr_ns_per_record: f64,
    pub(crate) json_bytes_per_record: f64,
    pub(crate) json_ns_per_record: f64,
}

fn publish_action(writer: &mut ActionWriter, lp: &ControlLoop, now_ns: u64) {
    let a = writer.back_mut();
    a.t_ns = now_ns;
    a.level = ControllerLevel::Primary;
    a.targets = lp.commands().joints;
    a.obs_len = OBS_LEN as u16;
    let q = lp.state().joints;
    for (i, o) in a.obs[..OBS_LEN].iter_mut().enumerate() {
        *o = (q[i % 6].q_rad + i as f64 * 1e-3 * (now_ns as f64 * 1e-9).sin()) as f32;
    }
    a.action_len = 6;
    writer.publish();
}

/// A loop on the in-memory robot, standing up, with a synthetic policy writer.
fn standing_loop(config: &Config) -> Result<(ControlLoop, ActionWriter), String> {
    let hw = crate::robot::open(config).map_err(|e| crate::report::chain(&e))?.hardware;
    let (commander, mut inputs) = inbox();
    let writer = inputs.connect_policy();
    let (mut lp, _outputs, _) = ControlLoop::new(config, hw, inputs, 0);
    lp.start()?;
    commander.request_mode(ModeRequest::StandUp);
    Ok((lp, writer))
}

fn logger_thread(
    config: &Config,
    dir: &Path,
    compression: LogCompression,
) -> Result<(record::LogTap, Arc<AtomicBool>, std::thread::JoinHandle<LogStats>), String> {
    let mut cfg = config.log.clone();
    cfg.dir = dir.into();
    cfg.compression = compression;
    let (tap, ring) = record::ring(cfg.ring_records, config.joints.len());
    let stop = Arc::new(AtomicBool::new(false));
    let h = writer::spawn(Logger::new(&cfg, writer::metadata(config, &[])), ring, Default::default(), stop.clone())
        .map_err(|e| crate::report::chain(&e))?;
    Ok((tap, stop, h))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
}

fn overhead(config: &Config, seconds: f64, spec: RtSpec, dir: &Path) -> Result<(Overhead, String), String> {
    let (mut plain, mut plain_policy) = standing_loop(config)?;
    let (mut logged, mut logged_policy) = standing_loop(config)?;
    let (tap, stop, logger) = logger_thread(config, dir, config.log.compression)?;
    logged.attach_log(tap);
    let (mut push_tap, mut push_ring) = record::ring(1024, config.joints.len());
    let period_ns = config.rate.control_period_ns();
    let h = thread::spawn("locod-control", "control", Setup::RtPrefaulted(spec), move |rt| {
        let clock = MonotonicClock;
        let end = clock.now_ns() + period_ns + (seconds * NS_PER_S as f64) as u64;
        let mut push = Histogram::new();
        let record = TickRecord {
            tick: 0,
            t_ns: 0,
            deadline_ns: 0,
            compute_ns: 0,
            skipped_cycles: 0,
            records_dropped: 0,
            n_joints: push_tap.n_joints(),
            sensors: Default::default(),
            estimate: (&crate::estimate::RobotState::default()).into(),
            policy: Default::default(),
            commands: Default::default(),
            command_vel: [0.0; 3],
            source: crate::control::messages::CommandSource::None,
            mode: crate::control::messages::Mode::Walk,
            level: ControllerLevel::Primary,
            fault: None,
            flags: 0,
        };
        run_periodic(&clock, period_ns, |r| {
            if r.index % 10 == 0 {
                publish_action(&mut plain_policy, &plain, r.woke_ns);
                publish_action(&mut logged_policy, &logged, r.woke_ns);
            }
            // Alternate which loop goes first so neither always finds the caches warm.
            let order: [&mut ControlLoop; 2] =
                if r.index % 2 == 0 { [&mut plain, &mut logged] } else { [&mut logged, &mut plain] };
            for lp in order {
                let release = Release { woke_ns: clock.now_ns(), ..*r };
                lp.tick(&release, &clock);
            }
            let t0 = clock.now_ns();
            let mut rec = record;
            rec.tick = r.index;
            push_tap.push(rec);
            push.record(clock.now_ns() - t0);
            while push_ring.pop().is_some() {}
            clock.now_ns() < end
        });
        (plain.timing().clone(), logged.timing().clone(), push, rt)
    })
    .map_err(|e| crate::report::chain(&e))?;
    let (without, with, push, rt) = h.join().map_err(|_| "the control thread panicked".to_string())?;
    stop.store(true, Ordering::Release);
    logger.join().map_err(|_| "the logger thread panicked".to_string())?;
    let (w, l): (Percentiles, Percentiles) = (without.compute.summary().into(), with.compute.summary().into());
    Ok((
        Overhead {
            rate_hz: config.rate.control_hz,
            seconds,
            p50: l.p50 - w.p50,
            p99: l.p99 - w.p99,
            target_p99: 5.0,
            compute_without_us: w,
            compute_with_us: l,
            push_us: push.summary().into(),
        },
        rt.to_string(),
    ))
}

fn sustained(config: &Config, rate_hz: u32, seconds: f64, spec: RtSpec, dir: &Path) -> Result<Sustained, String> {
    let mut config = config.clone();
    config.rate.control_hz = rate_hz;
    let (mut lp, mut policy) = standing_loop(&config)?;
    let (tap, stop, logger) = logger_thread(&config, dir, config.log.compression)?;
    lp.attach_log(tap);
    let period_ns = config.rate.control_period_ns();
    let every = (rate_hz / config.rate.policy_hz).max(1) as u64;
    let h = thread::spawn("locod-control", "control", Setup::Rt(spec), move |_| {
        let clock = MonotonicClock;
        let end = clock.now_ns() + period_ns + (seconds * NS_PER_S as f64) as u64;
        run_periodic(&clock, period_ns, |r| {
            if r.index % every == 0 {
                publish_action(&mut policy, &lp, r.woke_ns);
            }
            lp.tick(r, &clock);
            clock.now_ns() < end
        });
        (lp.timing().ticks, lp.log_dropped())
    })
    .map_err(|e| crate::report::chain(&e))?;
    let (ticks, dropped) = h.join().map_err(|_| "the control thread panicked".to_string())?;
    stop.store(true, Ordering::Release);
    let stats = logger.join().map_err(|_| "the logger thread panicked".to_string())?;
    let bytes = dir_bytes(dir);
    Ok(Sustained {
        rate_hz,
        seconds,
        ticks,
        records_written: stats.records_written,
        records_dropped: dropped,
        records_lost: stats.records_lost,
        bytes_on_disk: bytes,
        bytes_per_step: bytes as f64 / stats.records_written.max(1) as f64,
        compression: config.log.compression,
    })
}

/// Records of a standing robot with a synthetic policy, made on a manual clock.
fn sample_records(config: &Config, n: usize) -> Result<Vec<TickRecord>, String> {
    let (mut lp, mut policy) = standing_loop(config)?;
    let (tap, mut ring) = record::ring(n, config.joints.len());
    lp.attach_log(tap);
    let clock = ManualClock::new(NS_PER_S);
    let period = config.rate.control_period_ns();
    let mut sched = Periodic::new(clock.now_ns() + period, period);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = sched.wait(&clock);
        if r.index % 10 == 0 {
            publish_action(&mut policy, &lp, r.woke_ns);
        }
        lp.tick(&r, &clock);
        out.extend(ring.pop());
    }
    Ok(out)
}

fn compression_runs(config: &Config, records: &[TickRecord], base: &Path) -> Result<Vec<CompressionRun>, String> {
    let mut runs = Vec::new();
    for c in [LogCompression::Zstd, LogCompression::Lz4, LogCompression::None] {
        let dir = base.join(format!("{c:?}").to_lowercase());
        let mut cfg = config.log.clone();
        cfg.dir = dir.clone();
        cfg.compression = c;
        cfg.episode_s = 1e9;
        let mut logger = Logger::new(&cfg, writer::metadata(config, &[]));
        let t0 = Instant::now();
        for r in records {
            logger.record(r, r.t_ns);
            logger.poll(r.t_ns);
        }
        let stats = logger.close();
        let us = t0.elapsed().as_secs_f64() * 1e6 / records.len().max(1) as f64;
        let bytes = dir_bytes(&dir);
        runs.push(CompressionRun {
            compression: c,
            records: stats.records_written,
            bytes,
            bytes_per_step: bytes as f64 / stats.records_written.max(1) as f64,
            write_us_per_record: us,
        });
    }
    Ok(runs)
}

fn encoding(records: &[TickRecord]) -> Encoding {
    let mut buf = Vec::new();
    let (mut cdr_bytes, mut json_bytes) = (0usize, 0usize);
    let t0 = Instant::now();
    for r in records {
        schema::encode(r, 0, &mut buf);
        cdr_bytes += buf.len();
    }
    let cdr_ns = t0.elapsed().as_nanos() as f64;
    // JSON of the same fields (the decoded form), as a jsonschema+JSON channel would carry.
    let ticks: Vec<Tick> = records
        .iter()
        .filter_map(|r| {
            schema::encode(r, 0, &mut buf);
            Tick::decode(&buf).ok()
        })
        .collect();
    let mut json = Vec::new();
    let t0 = Instant::now();
    for t in &ticks {
        json.clear();
        let _ = serde_json::to_writer(&mut json, t);
        json_bytes += json.len();
    }
    let json_ns = t0.elapsed().as_nanos() as f64;
    let n = records.len().max(1) as f64;
    Encoding {
        cdr_bytes_per_record: cdr_bytes as f64 / n,
        cdr_ns_per_record: cdr_ns / n,
        json_bytes_per_record: json_bytes as f64 / ticks.len().max(1) as f64,
        json_ns_per_record: json_ns / ticks.len().max(1) as f64,
    }
}

pub fn run(config: &Config, seconds: f64, cpu: Option<usize>) -> Result<LogBenchReport, String> {
    let cpu = cpu.or(config.rate.cpu).or(Some(thread::online_cpus() - 1));
    let spec = RtSpec { fifo_priority: (config.rate.priority > 0).then_some(config.rate.priority), cpu };
    let _ = thread::lock_memory();
    let tmp = tempfile_dir()?;
    let (overhead_us, control_thread) = overhead(config, seconds, spec, &tmp.join("overhead"))?;
    let mut sustained_runs = Vec::new();
    for rate in [500, 1000] {
        sustained_runs.push(sustained(config, rate, seconds, spec, &tmp.join(format!("sustained-{rate}")))?);
    }
    let records = sample_records(config, 5_000)?;
    let compression = compression_runs(config, &records, &tmp.join("compression"))?;
    let encoding = encoding(&records);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(LogBenchReport {
        bench: "log",
        control_thread,
        record_bytes: std::mem::size_of::<TickRecord>(),
        overhead_us,
        sustained: sustained_runs,
        compression,
        encoding,
    })
}

/// A fresh directory under the system's temporary directory for the benchmark's files.
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("locod-bench-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

impl std::fmt::Display for LogBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.overhead_us;
        writeln!(f, "logging at {} Hz ({}), record {} bytes:", o.rate_hz, self.control_thread, self.record_bytes)?;
        writeln!(f, "  overhead        p50 {:.2} us  p99 {:.2} us (target p99 < {} us)", o.p50, o.p99, o.target_p99)?;
        writeln!(f, "  push alone      p50 {:.2} us  p99 {:.2} us", o.push_us.p50, o.push_us.p99)?;
        for s in &self.sustained {
            writeln!(
                f,
                "  {:>5} Hz       {} written, {} dropped, {} lost, {:.0} bytes/step",
                s.rate_hz, s.records_written, s.records_dropped, s.records_lost, s.bytes_per_step
            )?;
        }
        for c in &self.compression {
            writeln!(
                f,
                "  {:<15} {:.0} bytes/step, {:.1} us/record",
                format!("{:?}", c.compression),
                c.bytes_per_step,
                c.write_us_per_record
            )?;
        }
        Ok(())
    }
}
