//! `locod bench reload`: the daemon's control-loop timing while its model is reloaded over and
//! over (teleop's `cmd/reload` on a real zenoh session, every `every_ms`: the whole load, check,
//! warm-up and switch each time), next to the same daemon without reloads, in alternating rounds
//! of the same run. The daemon runs in this process on the configured (in-memory) robot, walking.

use super::Percentiles;
use crate::config::Config;
use crate::control::goal::Goal;
use crate::daemon::{self, RunOptions, RunSummary};
use crate::teleop::session::{self, Role};
use crate::teleop::Keys;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zenoh::Wait;

#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub controller: String,
    pub seconds_per_round: u64,
    pub rounds: usize,
    pub every_ms: u64,
    /// Rounds with a reload every `every_ms`.
    pub with_reloads: Vec<RoundFigures>,
    /// The same daemon, no reload.
    pub reference: Vec<RoundFigures>,
    /// Mean over rounds of wake-up p99.9 (and p99), with reloads over without.
    pub ratio_wake_p999: f64,
    pub ratio_wake_p99: f64,
}

#[derive(Debug, Serialize)]
pub struct RoundFigures {
    pub wake_us: Percentiles,
    pub compute_us: Percentiles,
    pub skipped: u64,
    pub overruns: u64,
    pub policy_us: Option<Percentiles>,
    pub reloads_requested: u64,
    pub models_switched: u64,
    pub faults_raised: u64,
}

impl RoundFigures {
    fn new(s: &RunSummary, requested: u64) -> Self {
        Self {
            wake_us: s.timing.wake.into(),
            compute_us: s.timing.compute.into(),
            skipped: s.timing.skipped,
            overruns: s.timing.overruns,
            policy_us: s.policy_compute.map(Into::into),
            reloads_requested: requested,
            models_switched: s.policy_swaps,
            faults_raised: s.faults_raised,
        }
    }
}

/// One daemon run of `seconds`; with `every_ms`, an operator's session asks for a reload of the
/// configured model that often.
fn round(config: &Config, seconds: u64, every_ms: Option<u64>) -> Result<RoundFigures, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let requested = Arc::new(AtomicU64::new(0));
    let trigger = match every_ms {
        None => None,
        Some(ms) => {
            let session =
                session::open_blocking(session::zenoh_config(config, Role::Operator).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            let key = Keys::of(config).reload;
            let (stop, requested) = (stop.clone(), requested.clone());
            Some(std::thread::spawn(move || {
                // The daemon is up (READY, warmed up) before the first request.
                std::thread::sleep(Duration::from_secs(2));
                while !stop.load(Ordering::Relaxed) {
                    if session.put(key.clone(), "{}").wait().is_ok() {
                        requested.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(ms));
                }
                let _ = session.close().wait();
            }))
        }
    };
    let opts = RunOptions { duration: Some(Duration::from_secs(seconds)), goal: Goal::Walk, ..Default::default() };
    let summary = daemon::run(config, opts).map_err(|e| crate::report::chain(&e));
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = trigger {
        let _ = t.join();
    }
    Ok(RoundFigures::new(&summary?, requested.load(Ordering::Relaxed)))
}

fn mean(rounds: &[RoundFigures], f: impl Fn(&RoundFigures) -> f64) -> f64 {
    rounds.iter().map(f).sum::<f64>() / rounds.len().max(1) as f64
}

pub fn run(config: &Config, seconds: u64, rounds: usize, every_ms: u64) -> Result<ReloadReport, String> {
    let Some(model) = config.model_path() else {
        return Err("bench reload needs a learned controller ([controller] kind and model)".into());
    };
    let mut c = config.clone();
    let mut teleop = c.teleop.clone().unwrap_or_default();
    teleop.listen = vec![super::teleop::free_endpoint()?];
    c.teleop = Some(teleop);
    c.log.enabled = false;
    c.rate.status_interval_s = 0.0;
    let (mut with_reloads, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        reference.push(round(&c, seconds, None)?);
        with_reloads.push(round(&c, seconds, Some(every_ms.max(1)))?);
    }
    Ok(ReloadReport {
        controller: model.display().to_string(),
        seconds_per_round: seconds,
        rounds: rounds.max(1),
        every_ms,
        ratio_wake_p999: mean(&with_reloads, |r| r.wake_us.p999) / mean(&reference, |r| r.wake_us.p999),
        ratio_wake_p99: mean(&with_reloads, |r| r.wake_us.p99) / mean(&reference, |r| r.wake_us.p99),
        with_reloads,
        reference,
    })
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bench reload: {} ({} rounds of {} s, a reload every {} ms)",
            self.controller, self.rounds, self.seconds_per_round, self.every_ms
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, what: &str, r: &RoundFigures| {
            let w = &r.wake_us;
            writeln!(
                f,
                "  {what:<13} wake-up p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} us; skipped {} overruns {}; reloads {} asked, {} switched; faults {}",
                w.p50, w.p99, w.p999, w.max, r.skipped, r.overruns, r.reloads_requested, r.models_switched, r.faults_raised
            )
        };
        for (a, b) in self.reference.iter().zip(&self.with_reloads) {
            line(f, "no reload", a)?;
            line(f, "reloading", b)?;
        }
        write!(
            f,
            "  wake-up p99.9 ratio (reloading / none) {:.2}, p99 ratio {:.2}",
            self.ratio_wake_p999, self.ratio_wake_p99
        )
    }
}
