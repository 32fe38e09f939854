//! Running Debian's `cyclictest` (rt-tests) as the reference timer floor, and reading its
//! histogram.

use super::Percentiles;
use std::process::{Child, Command, Stdio};

/// What cyclictest is asked to do: the same rate, priority and CPU as the loop under test.
pub(crate) struct CyclictestRun {
    pub(crate) interval_us: u64,
    pub seconds: u64,
    pub priority: i32,
    pub cpu: Option<usize>,
    /// Histogram range; latencies beyond it count as overflows.
    pub(crate) max_us: u64,
}

impl CyclictestRun {
    pub fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = Command::new("cyclictest");
        cmd.args(["-m", "-q", "-t1", "-d0"])
            .arg(format!("-i{}", self.interval_us))
            .arg(format!("-D{}", self.seconds))
            .arg(format!("-h{}", self.max_us));
        if self.priority > 0 {
            cmd.arg(format!("-p{}", self.priority));
        }
        if let Some(cpu) = self.cpu {
            cmd.arg(format!("-a{cpu}"));
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    }
}

/// Percentiles from cyclictest's `-h` output: one `latency_us count` line per bucket, plus
/// `# Histogram Overflows:` and `# Max Latencies:` lines.
pub(crate) fn parse_histogram(output: &str) -> Option<Percentiles> {
    let mut buckets: Vec<(u64, u64)> = Vec::new();
    let mut overflows = 0;
    let mut max = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# Histogram Overflows:") {
            overflows = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("# Max Latencies:") {
            max = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok());
        } else if !line.starts_with('#') {
            let mut it = line.split_whitespace();
            if let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) {
                if let (Ok(us), Ok(n)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    buckets.push((us, n));
                }
            }
        }
    }
    let max = max?;
    let count: u64 = buckets.iter().map(|b| b.1).sum::<u64>() + overflows;
    if count == 0 {
        return None;
    }
    let quantile = |q: f64| -> f64 {
        let rank = ((q * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(us, n) in &buckets {
            seen += n;
            if seen >= rank {
                return us as f64;
            }
        }
        max as f64 // the rank falls among the overflows: the maximum bounds it
    };
    Some(Percentiles { count, p50: quantile(0.5), p99: quantile(0.99), p999: quantile(0.999), max: max as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_histogram_and_overflows() {
        let mut out = String::from("# Histogram\n");
        for us in 0..100 {
            let n = if us == 10 {
                990
            } else if us == 50 {
                9
            } else {
                0
            };
            out.push_str(&format!("{us:06} {n:06}\n"));
        }
        out.push_str("# Total: 000000999\n# Min Latencies: 00010\n# Avg Latencies: 00010\n");
        out.push_str("# Max Latencies: 00250\n# Histogram Overflows: 00001\n");
        let p = parse_histogram(&out).unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (10.0, 10.0, 50.0, 250.0));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(parse_histogram("cyclictest: command not found"), None);
        assert_eq!(parse_histogram("# Max Latencies: 00000\n"), None);
    }
}
