//! Benchmarks: commands that measure and print, each with a reference measured in the same run.
//!
//! Not for: pass/fail judgements; targets are reported next to the measurement, never asserted.

pub mod cyclictest;
pub mod e2e;
pub mod io;
pub mod log;
pub mod loop_timing;
pub mod policy;
pub mod reference;
pub mod reload;
pub mod teleop;

use crate::control::{ControlLoop, LoopTiming};
use crate::rt::clock::{Clock, MonotonicClock, NS_PER_S};
use crate::rt::hist::Summary;
use crate::rt::sched::run_periodic;
use crate::rt::thread::{self, RtOutcome, RtSpec, Setup};
use serde::Serialize;
use std::thread::JoinHandle;

/// Latency percentiles in microseconds, as every benchmark reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub max: f64,
}

impl From<Summary> for Percentiles {
    fn from(s: Summary) -> Self {
        Self { count: s.count, p50: s.p50_us, p99: s.p99_us, p999: s.p999_us, max: s.max_us }
    }
}

/// Runs `lp` on its own real-time thread for `seconds`, on absolute deadlines like the daemon's
/// control thread, then stops the hardware; returns the loop's timing and what the thread got.
pub(crate) fn run_control_thread(
    mut lp: ControlLoop,
    spec: RtSpec,
    period_ns: u64,
    seconds: u64,
) -> Result<JoinHandle<(LoopTiming, RtOutcome)>, String> {
    thread::spawn("locod-control", "control", Setup::RtPrefaulted(spec), move |rt| {
        let clock = MonotonicClock;
        let end = clock.now_ns() + period_ns + seconds * NS_PER_S;
        run_periodic(&clock, period_ns, |r| {
            lp.tick(r, &clock);
            clock.now_ns() < end
        });
        lp.finish();
        (lp.timing().clone(), rt)
    })
    .map_err(|e| crate::report::chain(&e))
}
