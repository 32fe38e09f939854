//! Velocity command profiles for evaluation: what an episode of `locod eval` asks the robot to do
//! once it walks, as a function of the time since Walk began.
//!
//! - `random`: piecewise-constant commands, vx uniform in [-0.8, 0.8] m/s and yaw rate uniform in
//!   [-1, 1] rad/s, each held for a time uniform in [3, 6] s, drawn from the episode's seed;
//! - `forward`: 0.4 m/s straight ahead (toward the obstacle of the step, stairs and slope scenes);
//! - a file: one command per line, `t_s, vx, yaw_rate` (commas or spaces between the numbers),
//!   each held from `t_s` (seconds since Walk began) until the next line's; before the first line
//!   the command is zero. Times must increase; `#` starts a comment; blank lines are skipped. The
//!   same files drive the real-time robot over zenoh (`locod teleop --drive`, `teleop::script`).
//!
//! The control loop's arbiter limits the commands' acceleration as it does on the robot (the
//! Python evaluation limits them the same way). Not for: running episodes (`eval`).

use super::noise::NoiseRng;
use crate::teleop::script::parse_rows;

pub(crate) const RANDOM_VX_MPS: f64 = 0.8;
pub(crate) const RANDOM_YAW_RADPS: f64 = 1.0;
pub(crate) const RANDOM_HOLD_S: (f64, f64) = (3.0, 6.0);
pub(crate) const FORWARD_MPS: f64 = 0.4;

/// Which profile, as given on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Commands {
    Random,
    Forward,
    /// Rows (t_s, vx, yaw rate) read from a file, times increasing.
    File {
        path: String,
        rows: Vec<(f64, f64, f64)>,
    },
}

impl Commands {
    /// `random`, `forward`, or the path of a command file (read and checked now).
    pub fn parse(arg: &str) -> Result<Self, String> {
        match arg {
            "random" => Ok(Commands::Random),
            "forward" => Ok(Commands::Forward),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("--commands {path}: not `random` or `forward`, and not a readable file: {e}")
                })?;
                Ok(Commands::File { path: path.to_string(), rows: parse_rows(path, &text)? })
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Commands::Random => "random",
            Commands::Forward => "forward",
            Commands::File { path, .. } => path,
        }
    }

    /// The profile of one episode, drawn from `seed` where it is random.
    pub fn profile(&self, seed: u64, seconds: f64) -> Profile {
        let steps = match self {
            Commands::Forward => vec![(0.0, [FORWARD_MPS, 0.0, 0.0])],
            Commands::File { rows, .. } => rows.iter().map(|&(t, vx, yaw)| (t, [vx, 0.0, yaw])).collect(),
            Commands::Random => {
                let mut rng = NoiseRng::new(seed ^ 0x636f_6d6d_616e_6473);
                let mut t = 0.0;
                let mut steps = Vec::new();
                while t < seconds.max(0.0) || steps.is_empty() {
                    let vx = (2.0 * rng.uniform() - 1.0) * RANDOM_VX_MPS;
                    let yaw = (2.0 * rng.uniform() - 1.0) * RANDOM_YAW_RADPS;
                    steps.push((t, [vx, 0.0, yaw]));
                    t += RANDOM_HOLD_S.0 + rng.uniform() * (RANDOM_HOLD_S.1 - RANDOM_HOLD_S.0);
                }
                steps
            }
        };
        Profile { steps }
    }
}

/// Piecewise-constant commands [vx, vy, yaw rate] from their start times.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    steps: Vec<(f64, [f64; 3])>,
}

impl Profile {
    /// The command `t_s` seconds after Walk began.
    pub fn at(&self, t_s: f64) -> [f64; 3] {
        self.steps.iter().take_while(|(t, _)| *t <= t_s).last().map_or([0.0; 3], |(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_profiles_are_piecewise_constant_within_bounds_and_seeded() {
        let p = Commands::Random.profile(7, 60.0);
        assert_eq!(p, Commands::Random.profile(7, 60.0));
        assert_ne!(p, Commands::Random.profile(8, 60.0));
        assert!(p.steps.len() >= 10 && p.steps.len() <= 21, "{} steps", p.steps.len());
        for w in p.steps.windows(2) {
            let hold = w[1].0 - w[0].0;
            assert!((3.0..=6.0).contains(&hold), "held {hold} s");
        }
        for (_, c) in &p.steps {
            assert!(c[0].abs() <= 0.8 && c[1] == 0.0 && c[2].abs() <= 1.0, "{c:?}");
        }
        assert_eq!(p.at(0.0), p.steps[0].1);
        assert_eq!(p.at(p.steps[1].0 - 1e-9), p.steps[0].1);
        assert_eq!(p.at(p.steps[1].0), p.steps[1].1);
    }

    #[test]
    fn forward_and_file_profiles() {
        assert_eq!(Commands::Forward.profile(1, 10.0).at(5.0), [0.4, 0.0, 0.0]);
        let rows = parse_rows("c.csv", "# t_s, vx, yaw_rate\n1.0, 0.3, 0\n\n4 -0.2 0.5  # back and turn\n").unwrap();
        let f = Commands::File { path: "c.csv".into(), rows };
        let p = f.profile(1, 10.0);
        assert_eq!(p.at(0.5), [0.0; 3]);
        assert_eq!(p.at(1.0), [0.3, 0.0, 0.0]);
        assert_eq!(p.at(9.0), [-0.2, 0.0, 0.5]);
    }

    #[test]
    fn a_missing_command_file_is_named() {
        assert!(Commands::parse("/nonexistent/commands.csv").unwrap_err().contains("not `random` or `forward`"));
    }
}
