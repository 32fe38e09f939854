//! Benchmarks: commands that measure and print, each with a reference measured in the same run.
//!
//! Not for: pass/fail judgements; targets are reported next to the measurement, never asserted.

pub mod cyclictest;
pub mod e2e;
pub mod io;
pub mod log;
pub mod loop_timing;
pub mod policy;
pub mod teleop;

use crate::rt::hist::Summary;
use serde::Serialize;

/// Latency percentiles in microseconds, as every benchmark reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl From<Summary> for Percentiles {
    fn from(s: Summary) -> Self {
        Self { count: s.count, p50: s.p50_us, p99: s.p99_us, p999: s.p999_us, max: s.max_us }
    }
}
