//! The sensor threads against real pseudo-terminals: a WitMotion byte stream through a pty pair,
//! and the firmware bridge against the `bridge-emu` process (its faults, its wrong version, its
//! disappearance, its clock).

use firmware_bridge::timesync::Exchange;
use firmware_bridge::PROTOCOL_VERSION;
use locod::config::{Config, ImuKind, OrientationSource};
use locod::estimate::imu::ImuFilter;
use locod::estimate::mahony::{quat_from_wxyz, rpy_from_wxyz};
use locod::io::device::bridge::{self, BridgeLink, LinkState};
use locod::io::device::stats::SensorStats;
use locod::io::protocol::witmotion::{self, WitMessage};
use locod::robot::pipeline::{BridgePipeline, FilteredImu, ImuPublisher};
use locod::robot::sensors::Sensors;
use locod::rt::clock::monotonic_ns;
use locod::rt::triple::triple;
use nalgebra::UnitQuaternion;
use serialport::SerialPort;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::Emu;

fn link_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("locod-sensors-{name}-{}", std::process::id()))
}

/// The example hardware configuration's text with the bridge on `port`, and its path.
fn hardware_config_text(port: &Path) -> (String, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/biwheel-hardware.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("/dev/locod-bridge", port.to_str().unwrap());
    (text, path)
}

/// The example hardware configuration with the bridge on `port`.
fn hardware_config(port: &Path) -> Config {
    let (text, path) = hardware_config_text(port);
    Config::parse(&text, &path).unwrap()
}

/// `locod sensors --seconds SECONDS` on the example hardware configuration with the bridge on `port`.
fn locod_sensors(port: &Path, seconds: &str) -> std::process::Output {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), hardware_config_text(port).0).unwrap();
    Command::new(env!("CARGO_BIN_EXE_locod"))
        .args(["sensors", "--seconds", seconds, "--config"])
        .arg(config.path())
        .output()
        .unwrap()
}

/// Waits until `done` or panics after `timeout` with `what`.
fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_witmotion_stream_through_a_pty_arrives_as_body_frame_samples() {
    let (master, slave) = serialport::TTYPort::pair().unwrap();
    let slave_path = slave.name().unwrap();
    let master = locod::io::transport::serial::Port::from_tty(master).unwrap();
    let mut config = hardware_config(Path::new("/dev/null"));
    config.bridge = None;
    config.depth = None;
    config.imu.kind = ImuKind::Witmotion;
    config.imu.port = Some(slave_path);
    config.imu.orientation = OrientationSource::Device;
    config.imu.mounting_rpy_deg = [0.0, 0.0, 90.0]; // IMU x = body y
    let before = monotonic_ns();
    let mut sensors = Sensors::start(&config).unwrap();

    let (roll, pitch, yaw) = (0.1_f32, -0.2_f32, 0.5_f32);
    let mut burst = Vec::new();
    burst.extend_from_slice(&[0x55, 0x51, 0x00, 0x13]); // a truncated frame: resynchronised
    for msg in [
        WitMessage::Accel { accel_imu_mps2: [1.0, 0.0, 9.8], temp_c: 30.0 },
        WitMessage::AngularRate { ang_vel_imu_radps: [0.1, 0.2, 0.3], temp_c: 30.0 },
        WitMessage::Angle { roll_rad: roll, pitch_rad: pitch, yaw_rad: yaw, temp_c: 30.0 },
        WitMessage::Magnetometer { mag_raw: [1, 2, 3], word4: 0 },
    ] {
        burst.extend_from_slice(&witmotion::encode(&msg));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sensors.stats.imu.samples.load(Relaxed) < 20 {
        assert!(Instant::now() < deadline, "no samples; stats {:?}", sensors.stats.imu);
        master.write_all(&burst, Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = *sensors.imu.latest();
    assert!(s.t_ns > before && s.t_ns <= monotonic_ns());
    let accel_lsb = 16.0 * 9.80665 / 32768.0;
    let gyro_lsb = 2000.0 / 32768.0 * std::f64::consts::PI / 180.0;
    let close = |a: [f64; 3], b: [f64; 3], tol: f64| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
    assert!(close(s.accel_body_mps2, [0.0, 1.0, 9.8], accel_lsb), "{:?}", s.accel_body_mps2);
    assert!(close(s.gyro_body_radps, [-0.2, 0.1, 0.3], gyro_lsb), "{:?}", s.gyro_body_radps);
    // Body orientation = device orientation with the mounting undone.
    let device = UnitQuaternion::from_euler_angles(f64::from(roll), f64::from(pitch), f64::from(yaw));
    let expected = device * UnitQuaternion::from_euler_angles(0.0, 0.0, std::f64::consts::FRAC_PI_2).inverse();
    let err = quat_from_wxyz(s.quat_wxyz).angle_to(&expected);
    assert!(err < 1e-3, "orientation off by {err} rad");
    let st = &sensors.stats.imu;
    assert!(st.connected.load(Relaxed));
    assert!(st.checksum_errors.load(Relaxed) + st.incomplete_sets.load(Relaxed) >= 1);
    assert!(st.frames.load(Relaxed) >= 4 * 20);
    sensors.stop();
    drop(slave);
}

#[test]
fn the_bridge_delivers_imu_at_its_rate_and_a_plausible_elevation_map() {
    let link = link_path("stream");
    let _emu = Emu::spawn(&link, &[]);
    let mut sensors = Sensors::start(&hardware_config(&link)).unwrap();
    let stats = sensors.stats.clone();
    wait_for(Duration::from_secs(10), "streaming", || stats.imu.samples.load(Relaxed) > 50);
    let (n0, t0) = (stats.imu.samples.load(Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let rate_hz = (stats.imu.samples.load(Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64();
    eprintln!("bridge IMU: {rate_hz:.1} Hz (emulator: 200 Hz)");
    // The rate is the emulator's; a loaded machine delays samples but loses none.
    assert!(rate_hz > 150.0 && rate_hz < 250.0, "{rate_hz} Hz");

    let imu = *sensors.imu.latest();
    let [roll, pitch, _] = rpy_from_wxyz(imu.quat_wxyz);
    assert!(roll.abs() < 0.01 && pitch.abs() < 0.01, "standing still: roll {roll} pitch {pitch}");
    assert!((imu.accel_body_mps2[2] - 9.8).abs() < 0.2);

    let perception = sensors.perception.as_mut().unwrap();
    wait_for(Duration::from_secs(5), "depth", || {
        let p = perception.latest();
        p.depth[0].t_ns != 0 && p.depth[1].t_ns != 0
    });
    let p = perception.latest();
    // The emulator's floor is 0.30 m below sensor 0 and 0.25 m below sensor 1; the configuration
    // mounts them 0.05 m and 0 m above the base origin: the floor is at -0.25 in the map frame.
    let heights: Vec<f32> = p.map.height_m.iter().flatten().copied().filter(|h| h.is_finite()).collect();
    assert!(heights.len() > 40, "{} cells", heights.len());
    let mut sorted = heights.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!((median + 0.25).abs() < 0.02, "median floor height {median}");
    assert!(heights.iter().all(|h| (h + 0.25).abs() < 0.1), "{heights:?}");
    // Cells are ahead of the robot only.
    for (r, row) in p.map.height_m.iter().enumerate() {
        if row.iter().any(|h| h.is_finite()) {
            assert!(r >= 32, "data behind the robot in row {r}");
        }
    }
    let b = &stats.bridge;
    assert_eq!(b.state(), LinkState::Streaming);
    assert_eq!(b.decode_errors() + b.seq_dropped.load(Relaxed), 0);
    assert!(b.timesync_bound_ns.load(Relaxed) > 0);
}

#[test]
fn a_board_with_another_protocol_version_is_refused_and_its_data_unused() {
    let link = link_path("version");
    let _emu = Emu::spawn(&link, &["--wrong-version"]);
    let mut sensors = Sensors::start(&hardware_config(&link)).unwrap();
    let stats = sensors.stats.clone();
    wait_for(Duration::from_secs(10), "the refusal", || stats.bridge.state() == LinkState::Refused);
    wait_for(Duration::from_secs(10), "ignored frames", || stats.bridge.ignored.load(Relaxed) > 100);
    let b = &stats.bridge;
    assert_eq!(b.board_protocol_version.load(Relaxed), u32::from(PROTOCOL_VERSION) + 1);
    assert!(b.version_mismatches.load(Relaxed) >= 1);
    assert!(b.message_count(1) > 0, "the board does stream IMU frames");
    assert_eq!(stats.imu.samples.load(Relaxed), 0);
    assert_eq!(sensors.imu.latest().t_ns, 0);
    assert_eq!(sensors.perception.as_mut().unwrap().latest().map.t_ns, 0);
    assert_eq!(b.pings_sent.load(Relaxed), 0);
}

#[test]
fn locod_sensors_names_both_versions_when_it_refuses_a_board() {
    let link = link_path("cli-version");
    let _emu = Emu::spawn(&link, &["--wrong-version"]);
    let out = locod_sensors(&link, "1.5");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let v = PROTOCOL_VERSION;
    assert!(
        errors[0].contains(&format!("protocol version {}", v + 1))
            && errors[0].contains(&format!("speaks version {v}"))
            && errors[0].contains("ignored")
            && errors[0].contains("Flash"),
        "{}",
        errors[0]
    );
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(stdout.contains("imu (bridge): no sample yet"), "{stdout}");
}

#[test]
fn locod_sensors_shows_imu_depth_and_link_health() {
    let link = link_path("cli");
    let _emu = Emu::spawn(&link, &[]);
    let out = locod_sensors(&link, "2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let last = &stdout[stdout.rfind("locod sensors:").unwrap()..];
    for needle in [
        "imu (bridge):",
        " Hz  roll",
        "streaming  protocol 1 (board 1)",
        "messages/s: hello",
        "crc 0",
        "time sync: offset",
        "depth front_far (8x8",
        "depth front_near (8x8",
        "elevation map:",
    ] {
        assert!(last.contains(needle), "{needle:?} missing in:\n{last}");
    }
}

#[test]
fn garbage_and_dropped_frames_are_counted_and_never_fatal() {
    let link = link_path("faults");
    let _emu = Emu::spawn(&link, &["--garbage-every", "7", "--drop-every", "11"]);
    let sensors = Sensors::start(&hardware_config(&link)).unwrap();
    let stats = sensors.stats.clone();
    wait_for(Duration::from_secs(15), "faults to be counted", || {
        stats.bridge.seq_dropped.load(Relaxed) > 20 && stats.bridge.decode_errors() > 20
    });
    let before = stats.imu.samples.load(Relaxed);
    wait_for(Duration::from_secs(5), "samples to keep flowing", || stats.imu.samples.load(Relaxed) > before + 100);
    assert_eq!(stats.bridge.state(), LinkState::Streaming);
    assert_eq!(stats.bridge.disconnects.load(Relaxed), 0);
    eprintln!(
        "faults: {} sequence drops, {} crc, {} cobs, {} unknown bodies, {} samples",
        stats.bridge.seq_dropped.load(Relaxed),
        stats.bridge.crc_errors.load(Relaxed),
        stats.bridge.cobs_errors.load(Relaxed),
        stats.bridge.postcard_errors.load(Relaxed),
        stats.imu.samples.load(Relaxed)
    );
}

#[test]
fn the_bridge_reconnects_when_the_device_disappears_and_comes_back() {
    let link = link_path("reconnect");
    let emu = Emu::spawn(&link, &[]);
    let mut sensors = Sensors::start(&hardware_config(&link)).unwrap();
    let stats = sensors.stats.clone();
    wait_for(Duration::from_secs(10), "first samples", || stats.imu.samples.load(Relaxed) > 50);
    drop(emu); // SIGKILL: the pty closes, the link path dangles
    wait_for(Duration::from_secs(5), "the disconnect", || stats.bridge.disconnects.load(Relaxed) >= 1);
    assert_eq!(stats.bridge.state(), LinkState::Disconnected);
    let t_before = sensors.imu.latest().t_ns;
    let n_before = stats.imu.samples.load(Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stats.imu.samples.load(Relaxed), n_before, "no samples while the device is gone");

    let _emu = Emu::spawn(&link, &["--seed", "2"]);
    wait_for(Duration::from_secs(10), "samples after the reconnect", || {
        stats.imu.samples.load(Relaxed) > n_before + 50
    });
    assert_eq!(stats.bridge.state(), LinkState::Streaming);
    assert!(stats.bridge.connects.load(Relaxed) >= 2);
    assert!(sensors.imu.latest().t_ns > t_before);
}

#[test]
fn time_sync_maps_the_board_clock_within_its_own_error_bound() {
    // The board's clock reads OFFSET at start and runs 100 ppm fast. The link runs in this thread so
    // that every IMU sample's board time, arrival time and published time can be observed.
    const OFFSET_US: u64 = 3_000_000_000;
    const PPM: f64 = 100.0;
    let link = link_path("timesync");
    let _emu = Emu::spawn(&link, &["--clock-offset-us", &OFFSET_US.to_string(), "--clock-drift-ppm", "100"]);
    let config = hardware_config(&link);
    let stats = Arc::new(SensorStats::default());
    let (writer, _reader) = triple(Default::default());
    let sink = BridgePipeline {
        imu: Some(FilteredImu::new(ImuFilter::new(&config.imu), ImuPublisher::new(writer, None))),
        depth: None,
        attitude: None,
    };
    let mut link = BridgeLink::new(config.bridge.as_ref().unwrap(), sink, stats.clone());
    let mut samples: Vec<bridge::ImuTiming> = Vec::new();
    let mut exchanges: Vec<Exchange> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        link.step(Duration::from_millis(5));
        if let Some(t) = link.last_imu_timing() {
            if samples.last().is_none_or(|last| last.mcu_time_us != t.mcu_time_us) {
                samples.push(t);
            }
        }
        if let Some(x) = link.last_exchange() {
            if exchanges.last() != Some(&x) {
                exchanges.push(x);
            }
        }
    }
    assert_eq!(link.state(), LinkState::Streaming);

    // Truth, from causality alone. The board's clock reads T at host time S + g(T), with S the
    // emulator's (unknown) start and g(T) = (T - OFFSET) / (1 + PPM). An IMU sample stamped T
    // arrives after S + g(T), so S <= arrival - g(T). A ping sent at t0 and received at board time
    // t1 (read in whole µs) was received after it was sent, so S >= t0 - g(t1) - 1 µs. That
    // brackets S, and with it the true host time of every sample.
    let g = |t_us: u64| (t_us - OFFSET_US) as f64 * 1e3 / (1.0 + PPM * 1e-6);
    let s_hi = samples.iter().map(|s| s.arrival_ns as f64 - g(s.mcu_time_us)).fold(f64::INFINITY, f64::min);
    let s_lo = exchanges.iter().map(|x| x.host_send_ns as f64 - g(x.mcu_rx_us) - 1e3).fold(f64::NEG_INFINITY, f64::max);
    assert!(s_lo <= s_hi, "causality bracket is empty: {s_lo} > {s_hi}");
    // Judge the mapping once it is in use and its skew is estimated (the window spans > 1 s).
    let mapped: Vec<_> = samples.iter().filter(|s| s.bound_ns.is_some()).skip(400).collect();
    assert!(mapped.len() > 1000, "{} mapped samples", mapped.len());
    let mut errors = Vec::new();
    for s in &mapped {
        let (t, bound) = (s.t_ns as f64, s.bound_ns.unwrap() as f64);
        let (earliest, latest) = (s_lo + g(s.mcu_time_us), s_hi + g(s.mcu_time_us));
        // |t - truth| <= bound for some truth in [earliest, latest]: what the estimator promises,
        // checked without assuming anything the data does not show.
        assert!(
            t - bound <= latest && t + bound >= earliest,
            "published {t} ns with bound {bound} ns, but the truth lies in [{earliest}, {latest}]"
        );
        errors.push((t - (earliest + latest) / 2.0).abs());
    }
    errors.sort_by(f64::total_cmp);
    let bounds: Vec<u64> = mapped.iter().map(|s| s.bound_ns.unwrap()).collect();
    eprintln!(
        "time sync over bridge-emu (offset {OFFSET_US} us, {PPM} ppm): |error| median {:.1} us, worst {:.1} us \
         (truth known to +-{:.1} us); bound median {:.1} us, max {:.1} us; skew estimate {:.1} ppm; {} samples, {} exchanges",
        errors[errors.len() / 2] * 1e-3,
        errors[errors.len() - 1] * 1e-3,
        (s_hi - s_lo) / 2.0 * 1e-3,
        bounds[bounds.len() / 2] as f64 * 1e-3,
        *bounds.iter().max().unwrap() as f64 * 1e-3,
        link.timesync().skew_ppm().unwrap(),
        mapped.len(),
        exchanges.len()
    );
    assert!(stats.bridge.timesync_converged.load(Relaxed));
}
