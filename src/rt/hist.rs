//! Timing histograms that never allocate after construction: log-linear buckets over
//! nanoseconds (128 sub-buckets per power of two; a reported percentile is its bucket's midpoint,
//! within 0.4% of the true value), plus exact count, min, max and sum.
//!
//! Not for: general statistics; the values are durations in nanoseconds.

use serde::Serialize;

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Covers 0 ns up to 2^44 ns (~4.9 hours); larger values land in the top bucket.
const MAX_EXP: usize = 44;
const BUCKETS: usize = (MAX_EXP - SUB_BITS as usize + 1) * SUB;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

/// A histogram summarised for people and JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub(crate) min_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self { counts: Box::new([0; BUCKETS]), count: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0 }
    }

    fn index(value_ns: u64) -> usize {
        if value_ns < SUB as u64 {
            return value_ns as usize;
        }
        let msb = 63 - value_ns.leading_zeros();
        if msb as usize > MAX_EXP {
            return BUCKETS - 1;
        }
        let shift = msb - SUB_BITS;
        let sub = ((value_ns >> shift) as usize) & (SUB - 1);
        (shift as usize + 1) * SUB + sub
    }

    /// The largest value that falls in bucket `i`.
    fn upper_bound(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i / SUB - 1) as u32;
        let sub = (i % SUB) as u64;
        (((SUB as u64) | sub) << shift) + ((1u64 << shift) - 1)
    }

    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        self.counts[Self::index(value_ns)] += 1;
        self.count += 1;
        self.min_ns = self.min_ns.min(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
        self.sum_ns += value_ns as u128;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    fn midpoint(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let width = 1u64 << (i / SUB - 1);
        Self::upper_bound(i) - width / 2
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket it falls in, clamped to the
    /// exact minimum and maximum.
    pub(crate) fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::midpoint(i).min(self.max_ns).max(self.min_ns);
            }
        }
        self.max_ns
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.sum_ns += other.sum_ns;
    }

    pub fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Summary {
            count: self.count,
            min_us: us(self.min_ns),
            mean_us: self.sum_ns as f64 / self.count as f64 / 1e3,
            p50_us: us(self.quantile_ns(0.5)),
            p99_us: us(self.quantile_ns(0.99)),
            p999_us: us(self.quantile_ns(0.999)),
            max_us: us(self.max_ns),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.1}us p99={:.1}us p99.9={:.1}us max={:.1}us",
            self.count, self.p50_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..128 {
            h.record(v);
        }
        assert_eq!(h.quantile_ns(0.5), 63);
        assert_eq!(h.quantile_ns(1.0), 127);
        assert_eq!(h.summary().count, 128);
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        let p50 = h.quantile_ns(0.5) as f64;
        let p99 = h.quantile_ns(0.99) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.005, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.005, "{p99}");
        assert_eq!(h.quantile_ns(1.0), 1_000_000);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.max_ns(), 1_000_000);
    }

    proptest! {
        #[test]
        fn bucket_bounds_contain_the_value(v in any::<u64>()) {
            let i = Histogram::index(v);
            prop_assert!(i < BUCKETS);
            if v < (1u64 << (MAX_EXP + 1)) {
                prop_assert!(Histogram::upper_bound(i) >= v);
                // a bucket is at most 1/128 of its values wide, and the midpoint within half that
                prop_assert!((Histogram::upper_bound(i) - v) as f64 <= v as f64 / 128.0 + 1.0);
                prop_assert!((Histogram::midpoint(i) as f64 - v as f64).abs() <= v as f64 / 256.0 + 1.0);
            }
        }
    }
}
