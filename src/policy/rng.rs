//! The planner's random numbers: xoshiro256++ seeded through SplitMix64, and standard normals by
//! Marsaglia and Tsang's ziggurat (128 layers). Deterministic for a seed on every machine and
//! device, independent of libtorch's generators, and fast enough that sampling is not where a plan
//! spends its time. No allocation after construction.
//!
//! Not for: cryptography, or anything that needs a statistically certified generator.

pub(crate) struct Rng {
    s: [u64; 4],
    kn: [u32; 128],
    wn: [f32; 128],
    fns: [f32; 128],
}

const ZIG_R: f64 = 3.442_619_855_899;

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng { s: [0; 4], kn: [0; 128], wn: [0.0; 128], fns: [0.0; 128] };
        rng.reseed(seed);
        // Ziggurat tables (Marsaglia & Tsang 2000, 128 layers of equal area).
        let m1 = 2_147_483_648.0f64;
        let vn = 9.912_563_035_262_17e-3f64;
        let mut dn = ZIG_R;
        let mut tn = dn;
        let q = vn / (-0.5 * dn * dn).exp();
        rng.kn[0] = ((dn / q) * m1) as u32;
        rng.kn[1] = 0;
        rng.wn[0] = (q / m1) as f32;
        rng.wn[127] = (dn / m1) as f32;
        rng.fns[0] = 1.0;
        rng.fns[127] = (-0.5 * dn * dn).exp() as f32;
        for i in (1..=126).rev() {
            dn = (-2.0 * (vn / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            rng.kn[i + 1] = ((dn / tn) * m1) as u32;
            tn = dn;
            rng.fns[i] = (-0.5 * dn * dn).exp() as f32;
            rng.wn[i] = (dn / m1) as f32;
        }
        rng
    }

    /// Restarts the sequence of `seed`.
    pub(crate) fn reseed(&mut self, seed: u64) {
        let mut x = seed;
        for s in self.s.iter_mut() {
            *s = splitmix64(&mut x);
        }
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in the open interval (0, 1).
    #[inline]
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample.
    #[inline]
    pub(crate) fn normal(&mut self) -> f32 {
        let u = self.next_u64();
        let iz = (u & 127) as usize;
        let hz = (u >> 32) as u32 as i32;
        if hz.unsigned_abs() < self.kn[iz] {
            return hz as f32 * self.wn[iz];
        }
        self.normal_slow(hz, iz)
    }

    #[cold]
    fn normal_slow(&mut self, mut hz: i32, mut iz: usize) -> f32 {
        loop {
            let x = hz as f64 * self.wn[iz] as f64;
            if iz == 0 {
                // The tail beyond R, by Marsaglia's method.
                loop {
                    let x = -self.uniform().ln() / ZIG_R;
                    let y = -self.uniform().ln();
                    if y + y >= x * x {
                        return if hz > 0 { (ZIG_R + x) as f32 } else { (-ZIG_R - x) as f32 };
                    }
                }
            }
            let f0 = self.fns[iz] as f64;
            let f1 = self.fns[iz - 1] as f64;
            if f0 + self.uniform() * (f1 - f0) < (-0.5 * x * x).exp() {
                return x as f32;
            }
            let u = self.next_u64();
            iz = (u & 127) as usize;
            hz = (u >> 32) as u32 as i32;
            if hz.unsigned_abs() < self.kn[iz] {
                return hz as f32 * self.wn[iz];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence_and_another_seed_another() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xs: Vec<f32> = (0..1000).map(|_| a.normal()).collect();
        let ys: Vec<f32> = (0..1000).map(|_| b.normal()).collect();
        let zs: Vec<f32> = (0..1000).map(|_| c.normal()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        a.reseed(7);
        assert_eq!(a.normal(), xs[0]);
    }

    #[test]
    fn normals_have_the_moments_and_tails_of_a_standard_normal() {
        let mut r = Rng::new(1);
        let n = 400_000;
        let (mut s1, mut s2, mut s4, mut beyond3) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        for _ in 0..n {
            let x = r.normal() as f64;
            s1 += x;
            s2 += x * x;
            s4 += x * x * x * x;
            beyond3 += usize::from(x.abs() > 3.0);
        }
        let mean = s1 / n as f64;
        let var = s2 / n as f64 - mean * mean;
        let kurt = s4 / n as f64 / (var * var);
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
        // P(|x| > 3) = 0.0027: 1080 expected, sd ~33.
        assert!((900..1260).contains(&beyond3), "{beyond3} samples beyond 3 sigma");
    }

    #[test]
    fn uniforms_are_inside_the_open_interval() {
        let mut r = Rng::new(3);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let u = r.uniform();
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        assert!((sum / 100_000.0 - 0.5).abs() < 0.005);
    }
}
