//! `locod sensors`: a live terminal view of the sensor threads for bring-up: IMU rate and
//! attitude, each depth sensor's zones as a grid in meters, and the firmware-bridge link's health.
//!
//! Not for: the control loop (nothing here runs on it) or logging; it only reads what
//! `robot::sensors::Sensors` publishes.

use crate::config::{Config, ImuKind};
use crate::estimate::mahony::rpy_from_wxyz;
use crate::io::device::bridge::LinkState;
use crate::io::device::stats::{BRIDGE_MESSAGE_KINDS, NO_VERSION};
use crate::robot::sensors::Sensors;
use crate::rt::clock::{monotonic_ns, NS_PER_S};
use crate::types::terrain::Perception;
use firmware_bridge::PROTOCOL_VERSION;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Refresh period of the view.
const REFRESH: Duration = Duration::from_millis(500);

/// Counters sampled at one refresh, to turn totals into rates.
#[derive(Clone, Copy, Default)]
struct Counts {
    t_ns: u64,
    imu_samples: u64,
    messages: [u64; 7],
}

fn counts(s: &Sensors, t_ns: u64) -> Counts {
    Counts {
        t_ns,
        imu_samples: s.stats.imu.samples.load(Relaxed),
        messages: std::array::from_fn(|k| s.stats.bridge.message_count(k)),
    }
}

fn rate(now: u64, before: u64, dt_ns: u64) -> f64 {
    if dt_ns == 0 {
        0.0
    } else {
        (now - before) as f64 * NS_PER_S as f64 / dt_ns as f64
    }
}

/// Starts the sensors of `config` and prints their state every half second, for `seconds` or until
/// interrupted.
pub fn run(config: &Config, seconds: Option<f64>) -> Result<(), String> {
    let mut sensors = Sensors::start(config).map_err(|e| crate::report::chain(&e))?;
    let tty = std::io::stdout().is_terminal();
    let start = monotonic_ns();
    let end = seconds.map(|s| start + (s * NS_PER_S as f64) as u64);
    let mut before = counts(&sensors, start);
    let mut text = String::new();
    loop {
        std::thread::sleep(REFRESH);
        let now = monotonic_ns();
        let current = counts(&sensors, now);
        text.clear();
        if tty {
            text.push_str("\x1b[H\x1b[2J");
        }
        render(config, &mut sensors, &before, &current, now - start, &mut text);
        before = current;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| format!("stdout: {e}"))?;
        if end.is_some_and(|e| now >= e) {
            return Ok(());
        }
    }
}

fn render(config: &Config, s: &mut Sensors, before: &Counts, now: &Counts, elapsed_ns: u64, out: &mut String) {
    let dt = now.t_ns - before.t_ns;
    let _ = writeln!(
        out,
        "locod sensors: {} ({}), {:.1} s",
        config.robot.name,
        config.source.display(),
        elapsed_ns as f64 * 1e-9
    );

    let imu = *s.imu.latest();
    let kind = format!("{:?}", config.imu.kind).to_lowercase();
    if imu.t_ns == 0 {
        let _ = writeln!(out, "imu ({kind}): no sample yet");
    } else {
        let [r, p, y] = rpy_from_wxyz(imu.quat_wxyz).map(f64::to_degrees);
        let age_ms = now.t_ns.saturating_sub(imu.t_ns) as f64 * 1e-6;
        let _ = writeln!(
            out,
            "imu ({kind}): {:6.1} Hz  roll {r:7.2}°  pitch {p:7.2}°  yaw {y:7.2}°  age {age_ms:6.1} ms",
            rate(now.imu_samples, before.imu_samples, dt)
        );
        let [gx, gy, gz] = imu.gyro_body_radps;
        let [ax, ay, az] = imu.accel_body_mps2;
        let _ = writeln!(
            out,
            "  gyro_body_radps [{gx:7.3} {gy:7.3} {gz:7.3}]  accel_body_mps2 [{ax:7.3} {ay:7.3} {az:7.3}]"
        );
    }
    let st = &s.stats.imu;
    if config.imu.kind == ImuKind::Witmotion {
        let _ = writeln!(
            out,
            "  witmotion: {}  frames {}  checksum errors {}  skipped bytes {}  partial sets {}  reconnects {}",
            if st.connected.load(Relaxed) { "connected" } else { "not connected" },
            st.frames.load(Relaxed),
            st.checksum_errors.load(Relaxed),
            st.skipped_bytes.load(Relaxed),
            st.incomplete_sets.load(Relaxed),
            st.disconnects.load(Relaxed),
        );
    }

    if let Some(bridge) = &config.bridge {
        render_bridge(s, &bridge.port, before, now, out);
    }
    if let (Some(depth), Some(reader)) = (&config.depth, s.perception.as_mut()) {
        let p: &Perception = reader.latest();
        for (i, sensor) in depth.sensors.iter().enumerate() {
            let zones = &p.depth[i];
            if zones.t_ns == 0 {
                let _ = writeln!(out, "depth {} (bridge sensor {}): no frame yet", sensor.name, sensor.bridge_sensor);
                continue;
            }
            let side = (f64::from(zones.zones)).sqrt() as usize;
            let age_ms = now.t_ns.saturating_sub(zones.t_ns) as f64 * 1e-6;
            let valid = zones.valid[..usize::from(zones.zones)].iter().filter(|v| **v).count();
            let _ = writeln!(
                out,
                "depth {} ({side}x{side}, m, '  -  ' = invalid, {valid} valid, age {age_ms:.0} ms):",
                sensor.name
            );
            for r in 0..side {
                out.push_str("  ");
                for c in 0..side {
                    let i = r * side + c;
                    if zones.valid[i] {
                        let _ = write!(out, " {:5.2}", zones.distance_m[i]);
                    } else {
                        out.push_str("   -  ");
                    }
                }
                out.push('\n');
            }
        }
        let cells = p.map.height_m.iter().flatten().filter(|h| h.is_finite()).count();
        let _ = writeln!(out, "elevation map: {cells} cells measured at {} m", p.map.resolution_m);
    }
}

fn render_bridge(s: &Sensors, port: &str, before: &Counts, now: &Counts, out: &mut String) {
    let b = &s.stats.bridge;
    let dt = now.t_ns - before.t_ns;
    let version = b.board_protocol_version.load(Relaxed);
    let board = if version == NO_VERSION { "no hello yet".to_string() } else { format!("board {version}") };
    let fw = b.firmware_version.load(Relaxed);
    let state = b.state();
    let _ = writeln!(
        out,
        "bridge {port}: {}  protocol {PROTOCOL_VERSION} ({board}), firmware {}.{}.{}",
        state.name(),
        fw >> 16,
        (fw >> 8) & 0xFF,
        fw & 0xFF
    );
    if state == LinkState::Refused {
        let _ =
            writeln!(out, "  REFUSED: the board's protocol version differs; its data is ignored (see the error above)");
    }
    out.push_str("  messages/s:");
    for (k, name) in BRIDGE_MESSAGE_KINDS.iter().enumerate() {
        let _ = write!(out, " {name} {:.1}", rate(now.messages[k], before.messages[k], dt));
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "  errors: crc {}  cobs {}  unknown {}  overflow {}  seq drops {}  resyncs {}  ignored {}  reconnects {}",
        b.crc_errors.load(Relaxed),
        b.cobs_errors.load(Relaxed),
        b.postcard_errors.load(Relaxed),
        b.overflows.load(Relaxed),
        b.seq_dropped.load(Relaxed),
        b.seq_resyncs.load(Relaxed),
        b.ignored.load(Relaxed),
        b.disconnects.load(Relaxed),
    );
    let bound = b.timesync_bound_ns.load(Relaxed);
    if bound == 0 {
        let _ = writeln!(out, "  time sync: no exchange yet (timestamps: arrival)");
    } else {
        let _ = writeln!(
            out,
            "  time sync: offset {:+.3} ms  bound {:.1} us  skew {:+.1} ppm  exchanges {}  (timestamps: {})",
            b.timesync_offset_ns.load(Relaxed) as f64 * 1e-6,
            bound as f64 * 1e-3,
            b.timesync_skew_ppb.load(Relaxed) as f64 * 1e-3,
            b.timesync_exchanges.load(Relaxed),
            if b.timesync_converged.load(Relaxed) { "board clock" } else { "arrival" },
        );
    }
}
