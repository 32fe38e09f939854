//! `locod report`: PNG plots of a log for people (plotters, bitmap backend, an embedded font so
//! no system font is needed).
//!
//! Loop timing histograms, commanded vs measured velocity, attitude, joint torques, the mode
//! timeline, planner statistics and, with a shadow model, its actions against the live ones,
//! one PNG each. A directory is plotted as one timeline of all its closed logs (episodes whose
//! clock restarts, as lock-step evaluation's do, laid end to end). Not for: analysis a program
//! should do (use `export`).

use super::read::{self, ReadError};
use super::schema::{Shadow, Tick};
use super::{LEVEL_NAMES, MODE_NAMES};
use crate::control::record::flags;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1400, 800);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

#[derive(Debug)]
pub enum PlotError {
    Read(ReadError),
    Empty(PathBuf),
    Draw { path: PathBuf, error: String },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Read(e) => e.fmt(f),
            PlotError::Empty(p) => write!(f, "{}: the log has no ticks", p.display()),
            PlotError::Draw { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for PlotError {}

impl From<ReadError> for PlotError {
    fn from(e: ReadError) -> Self {
        PlotError::Read(e)
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; a failure here would be a broken build, and text simply not drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

type Series = (String, Vec<(f64, f64)>);

/// Line panels stacked vertically, sharing the time axis.
fn panels(path: &Path, title: &str, panels: &[(&str, Vec<Series>)]) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 30)).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, (y_label, series)) in areas.iter().zip(panels) {
        let points = series.iter().flat_map(|s| s.1.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in points.filter(|p| p.1.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1.max(x0 + 1e-3), (y0 - pad)..(y1 + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(*y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Side-by-side histograms of values in microseconds.
fn histograms(path: &Path, title: &str, hists: &[(&str, Vec<f64>)]) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 30)).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, hists.len()));
    for (area, (label, values)) in areas.iter().zip(hists) {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let q = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
        let (lo, hi) = (q(0.0), q(1.0).max(q(0.0) + 1.0));
        let bins = 60usize;
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for v in &sorted {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let caption =
            format!("{label}: p50 {:.1}  p99 {:.1}  max {:.1} us (n={})", q(0.5), q(0.99), q(1.0), sorted.len());
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, (0.8f64..top * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(format!("{label} (us)"))
            .y_desc("ticks")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0.8), (x + width, c as f64)], COLORS[0].filled())
            }))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Roll, pitch, yaw in degrees from a unit quaternion [w, x, y, z].
fn rpy_deg(q: [f64; 4]) -> [f64; 3] {
    let [w, x, y, z] = q;
    let roll = (2.0 * (w * x + y * z)).atan2(1.0 - 2.0 * (x * x + y * y));
    let pitch = (2.0 * (w * y - z * x)).clamp(-1.0, 1.0).asin();
    let yaw = (2.0 * (w * z + x * y)).atan2(1.0 - 2.0 * (y * y + z * z));
    [roll.to_degrees(), pitch.to_degrees(), yaw.to_degrees()]
}

/// Writes the report's PNGs for the log(s) at `log` into `out`; returns their paths.
pub fn report(log: &Path, out: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let mut ticks: Vec<Tick> = Vec::new();
    let mut shadow: Vec<Shadow> = Vec::new();
    let mut joints = Vec::new();
    for p in read::log_files(log)? {
        let f = read::read_file(&p)?;
        if joints.is_empty() {
            joints = f.joint_names();
        }
        ticks.extend(f.ticks);
        shadow.extend(f.shadow);
    }
    if ticks.is_empty() {
        return Err(PlotError::Empty(log.into()));
    }
    let timeline = Timeline::new(&ticks);
    let time = |t: &Tick| timeline.seconds(t.episode, t.t_ns);
    let series = |name: &str, f: &dyn Fn(&Tick) -> f64| -> Series {
        (name.to_string(), ticks.iter().map(|t| (time(t), f(t))).collect())
    };
    std::fs::create_dir_all(out).map_err(|e| PlotError::Draw { path: out.into(), error: e.to_string() })?;
    let mut written = Vec::new();
    let mut emit = |name: &str, r: Result<(), String>| -> Result<(), PlotError> {
        let path = out.join(name);
        r.map_err(|error| PlotError::Draw { path: path.clone(), error })?;
        written.push(path);
        Ok(())
    };

    let period_us: Vec<f64> = ticks
        .windows(2)
        .filter(|w| w[1].tick == w[0].tick + 1 && !w[1].has(flags::DROPPED_TICK))
        .map(|w| (w[1].t_ns - w[0].t_ns) as f64 * 1e-3)
        .collect();
    let lateness_us: Vec<f64> = ticks.iter().map(|t| t.t_ns.saturating_sub(t.deadline_ns) as f64 * 1e-3).collect();
    let compute_us: Vec<f64> = ticks.iter().map(|t| t.compute_ns as f64 * 1e-3).collect();
    let path = out.join("timing.png");
    emit(
        "timing.png",
        histograms(
            &path,
            "Control loop timing",
            &[("wake lateness", lateness_us), ("period", period_us), ("compute", compute_us)],
        ),
    )?;

    let path = out.join("velocity.png");
    emit(
        "velocity.png",
        panels(
            &path,
            "Velocity command vs measured",
            &[
                (
                    "linear (m/s)",
                    vec![series("command vx", &|t| t.command_vel[0]), series("command vy", &|t| t.command_vel[1])],
                ),
                (
                    "yaw rate (rad/s)",
                    vec![
                        series("command yaw rate", &|t| t.command_vel[2]),
                        series("measured yaw rate (gyro)", &|t| t.est_ang_vel_body_radps[2]),
                    ],
                ),
            ],
        ),
    )?;

    let path = out.join("attitude.png");
    emit(
        "attitude.png",
        panels(
            &path,
            "Body attitude",
            &[
                (
                    "angle (deg)",
                    vec![
                        series("roll", &|t| rpy_deg(t.est_quat_wxyz)[0]),
                        series("pitch", &|t| rpy_deg(t.est_quat_wxyz)[1]),
                        series("tilt", &|t| t.est_tilt_rad.to_degrees()),
                    ],
                ),
                ("yaw (deg)", vec![series("yaw", &|t| rpy_deg(t.est_quat_wxyz)[2])]),
            ],
        ),
    )?;

    let torque: Vec<Series> = (0..ticks[0].n_joints())
        .map(|j| {
            let name = joints.get(j).cloned().unwrap_or_else(|| format!("joint {j}"));
            (name, ticks.iter().map(|t| (time(t), t.joint_tau_nm.get(j).copied().unwrap_or(f64::NAN))).collect())
        })
        .collect();
    let path = out.join("torques.png");
    emit("torques.png", panels(&path, "Joint torques (measured)", &[("torque (N m)", torque)]))?;

    let path = out.join("modes.png");
    let mode_axis = format!(
        "mode ({})",
        MODE_NAMES.iter().enumerate().map(|(i, m)| format!("{i}={m}")).collect::<Vec<_>>().join(" ")
    );
    let level_axis = format!(
        "controller ({})",
        LEVEL_NAMES.iter().enumerate().map(|(i, m)| format!("{i}={m}")).collect::<Vec<_>>().join(" ")
    );
    emit(
        "modes.png",
        panels(
            &path,
            "Mode timeline",
            &[
                (mode_axis.as_str(), vec![series("mode", &|t| t.mode.into())]),
                (level_axis.as_str(), vec![series("controller level", &|t| t.level.into())]),
                (
                    "flags",
                    vec![
                        series("fault", &|t| f64::from(u8::from(t.has(flags::FAULT)))),
                        series("teleop", &|t| f64::from(u8::from(t.has(flags::TELEOP)))),
                        series("episode", &|t| t.episode as f64),
                    ],
                ),
            ],
        ),
    )?;

    let path = out.join("planner.png");
    let title = if ticks.iter().any(|t| t.planner_iterations > 0) {
        "Planner statistics"
    } else {
        "Planner statistics (no planner ran in this log: all zero)"
    };
    emit(
        "planner.png",
        panels(
            &path,
            title,
            &[
                ("iterations", vec![series("iterations", &|t| t.planner_iterations.into())]),
                (
                    "return",
                    vec![
                        series("best return", &|t| t.planner_best_return.into()),
                        series("mean elite return", &|t| t.planner_mean_elite_return.into()),
                    ],
                ),
            ],
        ),
    )?;

    if !shadow.is_empty() {
        let path = out.join("shadow.png");
        let (title, panels_) = live_vs_shadow(&ticks, &shadow, &timeline);
        let panels_: Vec<(&str, Vec<Series>)> = panels_.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        emit("shadow.png", panels(&path, &title, &panels_))?;
    }
    Ok(written)
}

/// Seconds on the report's time axis. The daemon's clock runs on across episodes; lock-step
/// evaluation (`locod eval --log`) restarts it every episode, so an episode whose clock went back
/// starts where the one before it ended: the episodes lie end to end.
struct Timeline {
    t0: u64,
    offset_ns: BTreeMap<u64, i128>,
}

impl Timeline {
    fn new(ticks: &[Tick]) -> Self {
        let t0 = ticks.first().map_or(0, |t| t.t_ns);
        let (mut offset_ns, mut offset, mut last) = (BTreeMap::new(), 0i128, None::<i128>);
        for t in ticks {
            let at = i128::from(t.t_ns) - i128::from(t0);
            if let std::collections::btree_map::Entry::Vacant(e) = offset_ns.entry(t.episode) {
                if let Some(l) = last.filter(|l| at + offset <= *l) {
                    offset = l + 1 - at;
                }
                e.insert(offset);
            }
            last = Some(at + offset);
        }
        Self { t0, offset_ns }
    }

    fn seconds(&self, episode: u64, t_ns: u64) -> f64 {
        let offset = self.offset_ns.get(&episode).copied().unwrap_or(0);
        (i128::from(t_ns) - i128::from(self.t0) + offset) as f64 * 1e-9
    }
}

/// The shadow steps that did not fail, each with the live action of the same episode and
/// snapshot (`policy_t_ns`; lock-step evaluation repeats snapshot times from one episode to the
/// next), in log order.
fn match_shadow<'a>(ticks: &'a [Tick], shadow: &'a [Shadow]) -> Vec<Matched<'a>> {
    let mut live: BTreeMap<(u64, u64), (&[f32], f32)> = BTreeMap::new();
    for t in ticks.iter().filter(|t| !t.policy_action.is_empty()) {
        live.entry((t.episode, t.policy_t_ns)).or_insert((&t.policy_action, t.planner_best_return));
    }
    shadow
        .iter()
        .filter(|s| s.failed.is_empty())
        .filter_map(|s| {
            live.get(&(s.episode, s.policy_t_ns)).map(|(a, v)| Matched {
                t_ns: s.policy_t_ns,
                live: a,
                live_value: *v,
                shadow: s,
            })
        })
        .collect()
}

/// A policy step both models acted on.
struct Matched<'a> {
    t_ns: u64,
    live: &'a [f32],
    live_value: f32,
    shadow: &'a Shadow,
}

/// The shadow model's actions beside the live ones, matched by the episode and snapshot both
/// acted on (`match_shadow`): a panel per action dimension (the first eight), and the plan value when a
/// planner ran; the title gives the steps matched and the RMS difference of their actions.
fn live_vs_shadow(ticks: &[Tick], shadow: &[Shadow], timeline: &Timeline) -> (String, Vec<(String, Vec<Series>)>) {
    let matched = match_shadow(ticks, shadow);
    let time = |m: &Matched| timeline.seconds(m.shadow.episode, m.t_ns);
    let (mut sq, mut n) = (0.0f64, 0usize);
    for m in &matched {
        for (x, y) in m.live.iter().zip(&m.shadow.policy_action) {
            sq += f64::from(x - y).powi(2);
            n += 1;
        }
    }
    let line = |f: &dyn Fn(&Matched) -> f64| -> Vec<(f64, f64)> { matched.iter().map(|m| (time(m), f(m))).collect() };
    let at = |a: &[f32], d: usize| a.get(d).map_or(f64::NAN, |v| f64::from(*v));
    let dims = matched.iter().map(|m| m.live.len()).max().unwrap_or(0).min(COLORS.len());
    let mut out: Vec<(String, Vec<Series>)> = (0..dims)
        .map(|d| {
            (
                format!("action {d}"),
                vec![
                    ("live".to_string(), line(&|m| at(m.live, d))),
                    ("shadow".to_string(), line(&|m| at(&m.shadow.policy_action, d))),
                ],
            )
        })
        .collect();
    if matched.iter().any(|m| m.shadow.planner_iterations > 0) {
        out.push((
            "plan value".to_string(),
            vec![
                ("live".to_string(), line(&|m| f64::from(m.live_value))),
                ("shadow".to_string(), line(&|m| f64::from(m.shadow.planner_best_return))),
            ],
        ));
    }
    let failed = shadow.iter().filter(|s| !s.failed.is_empty()).count();
    let title = format!(
        "Live vs shadow actions: {} steps matched, RMS difference {:.4}{}",
        matched.len(),
        if n > 0 { (sq / n as f64).sqrt() } else { f64::NAN },
        if failed > 0 { format!(", {failed} shadow steps failed") } else { String::new() }
    );
    (title, out)
}

#[cfg(test)]
mod tests {
    use super::{match_shadow, Timeline};
    use crate::log::schema::{Shadow, Tick};

    fn tick(episode: u64, t_ms: u64, action: f32) -> Tick {
        Tick {
            episode,
            t_ns: t_ms * 1_000_000,
            policy_t_ns: t_ms * 1_000_000,
            policy_action: vec![action],
            ..Tick::default()
        }
    }

    fn shadow(episode: u64, t_ms: u64, action: f32) -> Shadow {
        Shadow { episode, policy_t_ns: t_ms * 1_000_000, policy_action: vec![action], ..Shadow::default() }
    }

    #[test]
    fn episodes_whose_clock_restarts_lie_end_to_end_and_a_running_clock_is_kept() {
        // The daemon: one clock across episodes, with a gap between them.
        let daemon = [tick(0, 100, 0.0), tick(0, 110, 0.0), tick(1, 500, 0.0), tick(1, 510, 0.0)];
        let t = Timeline::new(&daemon);
        assert_eq!(t.seconds(0, 100_000_000), 0.0);
        assert!((t.seconds(1, 510_000_000) - 0.41).abs() < 1e-12, "the gap between episodes is kept");
        // Lock-step evaluation: every episode starts at the same simulated time again.
        let eval = [tick(0, 100, 0.0), tick(0, 110, 0.0), tick(1, 100, 0.0), tick(1, 120, 0.0), tick(2, 100, 0.0)];
        let t = Timeline::new(&eval);
        let times: Vec<f64> = eval.iter().map(|k| t.seconds(k.episode, k.t_ns)).collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
        assert!((times[2] - times[1]).abs() < 1e-6 && (times[3] - times[2] - 0.02).abs() < 1e-9, "{times:?}");
    }

    #[test]
    fn a_shadow_step_pairs_with_the_live_action_of_its_own_episode() {
        // Two evaluation episodes act on snapshots of the same times.
        let ticks = [tick(0, 100, 1.0), tick(0, 120, 2.0), tick(1, 100, 3.0), tick(1, 120, 4.0)];
        let steps = [shadow(0, 100, 1.5), shadow(1, 100, 3.5), shadow(1, 120, 4.5), shadow(2, 100, 9.0)];
        let m = match_shadow(&ticks, &steps);
        let pairs: Vec<(f32, f32)> = m.iter().map(|m| (m.live[0], m.shadow.policy_action[0])).collect();
        assert_eq!(pairs, [(1.0, 1.5), (3.0, 3.5), (4.0, 4.5)]);
    }
}
