//! Deterministic randomness for the simulator's sensor noise and drop-outs: SplitMix64 and a
//! Box-Muller normal. Seeded from `[sim] seed`, so a run is repeatable.
//!
//! Not for: anything cryptographic, or the daemon.

#[derive(Clone, Debug)]
pub(crate) struct NoiseRng(u64);

impl NoiseRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.uniform() < p
    }

    /// Normal with standard deviation `std` (0 costs nothing).
    pub(crate) fn normal(&mut self, std: f64) -> f64 {
        if std <= 0.0 {
            return 0.0;
        }
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_the_requested_spread_and_is_repeatable() {
        let mut a = NoiseRng::new(7);
        let xs: Vec<f64> = (0..20_000).map(|_| a.normal(0.5)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let std = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!(mean.abs() < 0.02 && (std - 0.5).abs() < 0.02, "mean {mean} std {std}");
        assert_eq!(NoiseRng::new(7).normal(0.5), xs[0]);
    }
}
