//! Host-side clock mapping: microcontroller µs → host CLOCK_MONOTONIC ns, estimated from ping/pong
//! exchanges.
//!
//! For: timestamping sensor frames on the host clock. Not for: sending the pings (the caller owns the port
//! and the schedule; 5-10 Hz is plenty) or reading the host clock (the caller passes times in, so tests and
//! replay drive it).
//!
//! Each exchange gives four timestamps: host send `t0`, MCU receive `t1`, MCU send `t2`, host receive `t3`.
//! Its round-trip time is `rtt = (t3 - t0) - (t2 - t1)` and the midpoints `(t0+t3)/2` and `(t1+t2)/2`
//! name the same instant to within `rtt/2` (the unknown asymmetry of the two directions).
//!
//! The estimator keeps the last [`WINDOW`] exchanges. Skew: it splits them into [`BUCKETS`] consecutive
//! groups, keeps the minimum-RTT exchange of each (the least delayed, so the least asymmetric) and fits a
//! line through those by least squares; the fit's standard error gives a skew uncertainty. Offset: it
//! anchors the line at the exchange with the smallest `rtt/2 + skew uncertainty × age`, which is also the
//! error bound. Timestamps are u64 on both clocks, so nothing wraps.

/// Exchanges remembered.
pub const WINDOW: usize = 64;
/// Groups the window is split into; one minimum-RTT exchange is kept from each.
pub const BUCKETS: usize = 8;
/// Clock skew beyond this is treated as a bad fit and clamped (crystal oscillators are within ±100 ppm).
pub const MAX_SKEW_PPM: f64 = 2000.0;
/// Skew uncertainty assumed before there is enough data to estimate it (a crystal's tolerance).
pub const DEFAULT_SKEW_UNCERTAINTY_PPM: f64 = 200.0;
/// Resolution of MCU timestamps, added to every error bound.
const MCU_RESOLUTION_NS: f64 = 1000.0;
/// Below this span of MCU time between the oldest and newest kept exchange, skew is not estimated
/// (taken as 0) because noise would dominate it.
pub const MIN_SKEW_SPAN_NS: f64 = 1.0e9;

/// One ping/pong exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Host clock when the ping was sent (the value in [`crate::HostMessage::Ping`]).
    pub host_send_ns: u64,
    /// MCU clock when the ping arrived ([`crate::Pong::mcu_rx_time_us`]).
    pub mcu_rx_us: u64,
    /// MCU clock when the pong was sent (the pong frame's [`crate::Header::time_us`]).
    pub mcu_tx_us: u64,
    /// Host clock when the pong arrived.
    pub host_recv_ns: u64,
}

/// Why an exchange was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// A clock ran backwards within the exchange (`t3 < t0` or `t2 < t1`): a stale or forged pong.
    NonMonotonic,
    /// The MCU clock is behind the last exchange's: it rebooted. The window was cleared and this exchange
    /// starts a new one, so the error is informational.
    McuRestarted,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// MCU-clock midpoint, in MCU ns.
    mcu_mid_ns: u64,
    host_mid_ns: u64,
    rtt_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Fit {
    mcu_ref_ns: u64,
    host_ref_ns: u64,
    /// Host ns per MCU ns.
    slope: f64,
    /// Uncertainty of `slope` (dimensionless; 1e-6 is 1 ppm).
    slope_uncertainty: f64,
    /// Error bound at the anchor (`mcu_ref_ns`).
    anchor_bound_ns: f64,
    /// MCU time of the newest exchange, ns.
    newest_mcu_ns: u64,
}

impl Fit {
    fn bound_at(&self, mcu_ns: f64) -> u64 {
        (self.anchor_bound_ns + self.slope_uncertainty * (mcu_ns - self.mcu_ref_ns as f64).abs()).ceil() as u64
    }
}

/// The estimator. Allocation-free; one per link.
#[derive(Debug, Clone)]
pub struct TimeSync {
    samples: [Sample; WINDOW],
    /// Index of the oldest sample.
    start: usize,
    len: usize,
    fit: Option<Fit>,
}

impl Default for TimeSync {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSync {
    pub const fn new() -> Self {
        TimeSync { samples: [Sample { mcu_mid_ns: 0, host_mid_ns: 0, rtt_ns: 0 }; WINDOW], start: 0, len: 0, fit: None }
    }

    /// Forgets everything (call when the MCU says Hello: its clock may have restarted).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Adds one exchange and refits. Returns the exchange's RTT in ns.
    pub fn add_exchange(&mut self, x: Exchange) -> Result<u64, ExchangeError> {
        if x.host_recv_ns < x.host_send_ns || x.mcu_tx_us < x.mcu_rx_us {
            return Err(ExchangeError::NonMonotonic);
        }
        let host_elapsed_ns = x.host_recv_ns - x.host_send_ns;
        let mcu_busy_ns = (x.mcu_tx_us - x.mcu_rx_us).saturating_mul(1000);
        let sample = Sample {
            mcu_mid_ns: x.mcu_rx_us.saturating_mul(1000).saturating_add(mcu_busy_ns / 2),
            host_mid_ns: x.host_send_ns + host_elapsed_ns / 2,
            rtt_ns: host_elapsed_ns.saturating_sub(mcu_busy_ns),
        };
        let mut restarted = false;
        if self.len > 0 && sample.mcu_mid_ns < self.sample(self.len - 1).mcu_mid_ns {
            self.reset();
            restarted = true;
        }
        if self.len < WINDOW {
            self.samples[(self.start + self.len) % WINDOW] = sample;
            self.len += 1;
        } else {
            self.samples[self.start] = sample;
            self.start = (self.start + 1) % WINDOW;
        }
        self.refit();
        if restarted {
            Err(ExchangeError::McuRestarted)
        } else {
            Ok(sample.rtt_ns)
        }
    }

    /// Host CLOCK_MONOTONIC ns for an MCU timestamp; `None` before the first exchange.
    pub fn to_host_ns(&self, mcu_us: u64) -> Option<u64> {
        let fit = self.fit?;
        let dx = mcu_us.saturating_mul(1000) as f64 - fit.mcu_ref_ns as f64;
        let host = fit.host_ref_ns as f64 + dx * fit.slope;
        Some(host.max(0.0).round() as u64)
    }

    /// Uncertainty of the mapping at the newest exchange: half the anchor exchange's RTT, plus the skew
    /// uncertainty times the anchor's age, plus the MCU timestamp resolution.
    pub fn error_bound_ns(&self) -> Option<u64> {
        self.fit.map(|f| f.bound_at(f.newest_mcu_ns as f64))
    }

    /// Uncertainty of [`TimeSync::to_host_ns`] for `mcu_us`: grows with the distance from the anchor.
    pub fn error_bound_at_ns(&self, mcu_us: u64) -> Option<u64> {
        self.fit.map(|f| f.bound_at(mcu_us.saturating_mul(1000) as f64))
    }

    /// Estimated MCU clock error in ppm: positive when the MCU clock runs fast.
    pub fn skew_ppm(&self) -> Option<f64> {
        self.fit.map(|f| (1.0 / f.slope - 1.0) * 1e6)
    }

    /// Exchanges currently in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th oldest sample.
    fn sample(&self, i: usize) -> Sample {
        self.samples[(self.start + i) % WINDOW]
    }

    fn refit(&mut self) {
        if self.len == 0 {
            self.fit = None;
            return;
        }
        let buckets = self.len.min(BUCKETS);
        let mut chosen = [Sample::default(); BUCKETS];
        for (b, slot) in chosen.iter_mut().enumerate().take(buckets) {
            let (from, to) = (b * self.len / buckets, (b + 1) * self.len / buckets);
            let mut best = self.sample(from);
            for i in from + 1..to {
                let s = self.sample(i);
                if s.rtt_ns < best.rtt_ns {
                    best = s;
                }
            }
            *slot = best;
        }
        let chosen = &chosen[..buckets];
        let newest = chosen[buckets - 1];
        let n = buckets as f64;
        // Work in offsets from the newest kept sample so f64 keeps sub-ns precision.
        let mean_x = offsets(chosen, newest).map(|(x, _)| x).sum::<f64>() / n;
        let mean_y = offsets(chosen, newest).map(|(_, y)| y).sum::<f64>() / n;
        let (mut sxx, mut sxy) = (0.0, 0.0);
        for (x, y) in offsets(chosen, newest) {
            sxx += (x - mean_x) * (x - mean_x);
            sxy += (x - mean_x) * (y - mean_y);
        }
        let span = chosen[buckets - 1].mcu_mid_ns.saturating_sub(chosen[0].mcu_mid_ns) as f64;
        let (slope, slope_uncertainty) = if span >= MIN_SKEW_SPAN_NS && buckets >= 3 && sxx > 0.0 {
            let limit = MAX_SKEW_PPM * 1e-6;
            let slope = (sxy / sxx).clamp(1.0 - limit, 1.0 + limit);
            let intercept = mean_y - slope * mean_x;
            let residuals: f64 = offsets(chosen, newest).map(|(x, y)| (y - intercept - slope * x).powi(2)).sum();
            let standard_error = (residuals / (n - 2.0) / sxx).sqrt();
            // Three standard errors, and never less than 1 ppm: few points, non-Gaussian asymmetry.
            (slope, (3.0 * standard_error).max(1e-6))
        } else {
            (1.0, DEFAULT_SKEW_UNCERTAINTY_PPM * 1e-6)
        };

        let newest_mcu_ns = self.sample(self.len - 1).mcu_mid_ns;
        let cost =
            |s: &Sample| s.rtt_ns as f64 / 2.0 + slope_uncertainty * newest_mcu_ns.saturating_sub(s.mcu_mid_ns) as f64;
        let mut anchor = self.sample(0);
        for i in 1..self.len {
            let s = self.sample(i);
            if cost(&s) <= cost(&anchor) {
                anchor = s;
            }
        }
        self.fit = Some(Fit {
            mcu_ref_ns: anchor.mcu_mid_ns,
            host_ref_ns: anchor.host_mid_ns,
            slope,
            slope_uncertainty,
            anchor_bound_ns: anchor.rtt_ns as f64 / 2.0 + MCU_RESOLUTION_NS,
            newest_mcu_ns,
        });
    }
}

/// The chosen samples as (x, y) offsets from `newest`, in ns.
fn offsets(chosen: &[Sample], newest: Sample) -> impl Iterator<Item = (f64, f64)> + '_ {
    chosen.iter().map(move |s| {
        (s.mcu_mid_ns as f64 - newest.mcu_mid_ns as f64, s.host_mid_ns as f64 - newest.host_mid_ns as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_exchange_gives_offset_and_bound() {
        let mut ts = TimeSync::new();
        assert_eq!(ts.to_host_ns(5), None);
        // MCU clock = host clock - 1 s; 100 µs each way, 20 µs processing.
        let rtt = ts
            .add_exchange(Exchange {
                host_send_ns: 2_000_000_000,
                mcu_rx_us: 1_000_100,
                mcu_tx_us: 1_000_120,
                host_recv_ns: 2_000_220_000,
            })
            .unwrap();
        assert_eq!(rtt, 200_000);
        assert_eq!(ts.error_bound_ns(), Some(101_000)); // RTT/2 plus 1 µs MCU resolution
        assert_eq!(ts.to_host_ns(1_500_000), Some(2_500_000_000));
    }

    #[test]
    fn rejects_backwards_exchange_and_detects_restart() {
        let mut ts = TimeSync::new();
        let bad = Exchange { host_send_ns: 10, mcu_rx_us: 1, mcu_tx_us: 1, host_recv_ns: 5 };
        assert_eq!(ts.add_exchange(bad), Err(ExchangeError::NonMonotonic));
        let x = Exchange { host_send_ns: 10_000_000, mcu_rx_us: 5_000, mcu_tx_us: 5_000, host_recv_ns: 10_001_000 };
        ts.add_exchange(x).unwrap();
        let after_reboot = Exchange { mcu_rx_us: 3, mcu_tx_us: 3, ..x };
        assert_eq!(ts.add_exchange(after_reboot), Err(ExchangeError::McuRestarted));
        assert_eq!(ts.len(), 1);
    }
}
