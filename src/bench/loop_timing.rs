//! `locod bench loop`: the control loop on the in-memory robot (standing up, so every stage
//! runs), with cyclictest at the same rate, priority and CPU at the same time as the reference.
//! Without cyclictest installed, a bare absolute-sleep loop stands in and says so.

use super::cyclictest::{parse_histogram, CyclictestRun};
use super::Percentiles;
use crate::config::Config;
use crate::control::inputs::inbox;
use crate::control::messages::ModeRequest;
use crate::control::ControlLoop;
use crate::rt::clock::{Clock, MonotonicClock, NS_PER_S};
use crate::rt::hist::Histogram;
use crate::rt::sched::Periodic;
use crate::rt::thread::{self, RtSpec};
use serde::Serialize;
use std::thread::JoinHandle;

#[derive(Debug, Serialize)]
pub struct LoopReport {
    pub bench: &'static str,
    pub rate_hz: u32,
    pub seconds: u64,
    pub cpu: Option<usize>,
    pub(crate) control_thread: String,
    pub locod: LocodTiming,
    pub reference: Reference,
    /// locod's p99.9 wake-up latency over the reference's (target: at most 1.5).
    pub ratio: f64,
    pub(crate) target_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct LocodTiming {
    pub(crate) wake_us: Percentiles,
    pub compute_us: Percentiles,
    pub(crate) period_us: Percentiles,
    pub skipped: u64,
    pub(crate) overruns: u64,
}

#[derive(Debug, Serialize)]
pub struct Reference {
    /// "cyclictest", or "builtin" when cyclictest is not installed.
    pub tool: String,
    pub(crate) wake_us: Percentiles,
}

/// A cyclictest-like measurement in-process: sleep to absolute deadlines, record the lateness.
fn builtin_floor(spec: RtSpec, period_ns: u64, seconds: u64) -> JoinHandle<Histogram> {
    std::thread::spawn(move || {
        thread::apply(spec);
        let clock = MonotonicClock;
        let mut h = Histogram::new();
        let start = clock.now_ns() + period_ns;
        let mut sched = Periodic::new(start, period_ns);
        while clock.now_ns() < start + seconds * NS_PER_S {
            h.record(sched.wait(&clock).wake_latency_ns());
        }
        h
    })
}

pub fn run(config: &Config, seconds: u64, cpu: Option<usize>) -> Result<LoopReport, String> {
    let period_ns = config.rate.control_period_ns();
    let cpu = cpu.or(config.rate.cpu).or(Some(thread::online_cpus() - 1));
    let spec = RtSpec { fifo_priority: (config.rate.priority > 0).then_some(config.rate.priority), cpu };
    let _ = thread::lock_memory();

    let hw = crate::robot::open(config).map_err(|e| crate::report::chain(&e))?.hardware;
    let (commander, inputs) = inbox();
    let (mut lp, _outputs, _) = ControlLoop::new(config, hw, inputs, 1);
    lp.start()?;
    commander.request_mode(ModeRequest::StandUp);

    let cyclictest =
        CyclictestRun { interval_us: period_ns / 1_000, seconds, priority: config.rate.priority, cpu, max_us: 100_000 }
            .spawn();
    let builtin = cyclictest.is_err().then(|| builtin_floor(spec, period_ns, seconds));

    let control = super::run_control_thread(lp, spec, period_ns, seconds)?;
    let (timing, rt) = control.join().map_err(|_| "the control thread panicked".to_string())?;

    let reference = match (cyclictest, builtin) {
        (Ok(child), _) => {
            let out = child.wait_with_output().map_err(|e| format!("cyclictest: {e}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let wake = parse_histogram(&stdout).ok_or_else(|| {
                format!("cyclictest gave no histogram: {}", String::from_utf8_lossy(&out.stderr).trim())
            })?;
            Reference { tool: "cyclictest".into(), wake_us: wake }
        }
        (Err(_), Some(h)) => {
            let h = h.join().map_err(|_| "the reference thread panicked".to_string())?;
            Reference { tool: "builtin (cyclictest not installed)".into(), wake_us: h.summary().into() }
        }
        (Err(e), None) => return Err(e.to_string()),
    };
    let locod = LocodTiming {
        wake_us: timing.wake.summary().into(),
        compute_us: timing.compute.summary().into(),
        period_us: timing.period.summary().into(),
        skipped: timing.skipped,
        overruns: timing.overruns,
    };
    // cyclictest reports whole microseconds; compare on the same grid, never dividing by zero.
    let ratio = locod.wake_us.p999.max(1.0) / reference.wake_us.p999.max(1.0);
    Ok(LoopReport {
        bench: "loop",
        rate_hz: config.rate.control_hz,
        seconds,
        cpu,
        control_thread: rt.to_string(),
        locod,
        reference,
        ratio,
        target_ratio: 1.5,
    })
}

impl std::fmt::Display for LoopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "control loop at {} Hz for {} s ({}):", self.rate_hz, self.seconds, self.control_thread)?;
        let w = &self.locod.wake_us;
        let r = &self.reference.wake_us;
        writeln!(
            f,
            "  locod wake-up   p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
            w.p50, w.p99, w.p999, w.max
        )?;
        writeln!(
            f,
            "  {:<15} p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
            self.reference.tool, r.p50, r.p99, r.p999, r.max
        )?;
        writeln!(
            f,
            "  compute         p50 {:.1} us  p99 {:.1} us  max {:.1} us",
            self.locod.compute_us.p50, self.locod.compute_us.p99, self.locod.compute_us.max
        )?;
        writeln!(f, "  ratio (p99.9)   {:.2} (target <= {})", self.ratio, self.target_ratio)
    }
}
