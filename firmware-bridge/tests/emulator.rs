//! The emulator core driven by a simulated clock, decoded by the real decoder: rates, content, faults, and
//! host requests.
#![cfg(feature = "std")]

mod common;

use firmware_bridge::emulator::{Emulator, EmulatorConfig, Faults};
use firmware_bridge::timesync::{Exchange, TimeSync};
use firmware_bridge::*;

const MS: u64 = 1_000_000;
const START_NS: u64 = 7_000 * MS;

/// Runs the emulator for `duration_ms` in 1 ms steps and decodes everything it wrote.
fn run(emu: &mut Emulator, from_ns: u64, duration_ms: u64) -> (Vec<McuFrame>, RxCounters) {
    let mut wire = Vec::new();
    for step in 0..=duration_ms {
        emu.poll(from_ns + step * MS, &mut wire);
    }
    let mut decoder = FrameDecoder::<McuMessage>::new();
    let frames = decoder.feed(&wire).filter_map(Result::ok).collect();
    (frames, decoder.counters())
}

fn count(frames: &[McuFrame], pred: impl Fn(&McuMessage) -> bool) -> usize {
    frames.iter().filter(|f| pred(&f.message)).count()
}

#[test]
fn streams_hello_then_sensors_at_their_rates() {
    let mut emu = Emulator::new(EmulatorConfig::default(), START_NS);
    let (frames, counters) = run(&mut emu, START_NS, 2000);
    assert_eq!(counters.cobs_errors + counters.crc_errors + counters.postcard_errors + counters.overflows, 0);
    let McuMessage::Hello(hello) = frames[0].message else { panic!("first frame is {:?}", frames[0]) };
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.name(), Some("bridge-emu"));

    let imu = count(&frames, |m| matches!(m, McuMessage::Imu(_)));
    let depth = count(&frames, |m| matches!(m, McuMessage::Depth(_)));
    let heartbeats = count(&frames, |m| matches!(m, McuMessage::Heartbeat(_)));
    assert!((399..=402).contains(&imu), "{imu} IMU frames in 2 s");
    assert!((119..=124).contains(&depth), "{depth} depth frames in 2 s (2 sensors at 30 Hz)");
    assert!((19..=22).contains(&heartbeats), "{heartbeats} heartbeats in 2 s");
    assert_eq!(count(&frames, |m| matches!(m, McuMessage::Encoders(_))), 0);

    // Sequence numbers are contiguous and time never runs backwards.
    let mut seq = SeqTracker::new();
    for w in frames.windows(2) {
        assert!(w[1].header.time_us >= w[0].header.time_us);
    }
    for f in &frames {
        seq.observe(f.header.seq);
    }
    assert_eq!(seq.dropped(), 0);

    // Standing still: gravity on z, small rates, unit quaternion.
    for f in &frames {
        match f.message {
            McuMessage::Imu(imu) => {
                assert!((imu.accel_mps2[2] - 9.81).abs() < 0.2, "{imu:?}");
                assert!(imu.gyro_radps.iter().all(|g| g.abs() < 0.02));
                let q = imu.quat_wxyz.unwrap();
                assert!((q.iter().map(|c| c * c).sum::<f32>() - 1.0).abs() < 1e-4);
            }
            // A flat floor in front: valid zones between 0.2 m and 4 m, nearer rows at the bottom.
            McuMessage::Depth(d) => {
                assert_eq!((d.rows, d.cols), (8, 8));
                assert!(d.sensor < 2);
                let valid: Vec<u16> = (0..64).filter_map(|i| d.zone_valid(i)).collect();
                assert!(valid.len() > 40, "{d:?}");
                assert!(valid.iter().all(|&mm| (200..=4000).contains(&mm)), "{valid:?}");
                let bottom = d.zone_valid(7 * 8 + 3).unwrap_or(0);
                let top = d.zone_valid(3).unwrap_or(u16::MAX);
                assert!(bottom < top, "bottom row {bottom} mm should be nearer than top row {top} mm");
            }
            _ => {}
        }
    }
}

#[test]
fn is_deterministic_for_a_seed() {
    let config = EmulatorConfig { encoders: 2, ..EmulatorConfig::default() };
    let mut a = Emulator::new(config.clone(), START_NS);
    let mut b = Emulator::new(config, START_NS);
    assert_eq!(run(&mut a, START_NS, 300).0, run(&mut b, START_NS, 300).0);
    let (frames, _) = run(&mut a, START_NS + 301 * MS, 100);
    assert!(count(&frames, |m| matches!(m, McuMessage::Encoders(e) if e.len == 2)) >= 9);
}

#[test]
fn drop_every_shows_as_sequence_gaps() {
    let faults = Faults { drop_every: Some(10), ..Faults::default() };
    let mut emu = Emulator::new(EmulatorConfig { faults, ..EmulatorConfig::default() }, START_NS);
    let (frames, _) = run(&mut emu, START_NS, 1000);
    let mut seq = SeqTracker::new();
    for f in &frames {
        seq.observe(f.header.seq);
    }
    let stats = emu.stats();
    assert!(stats.frames_dropped > 20);
    // All drops but a possible last one are seen as gaps.
    assert!(seq.dropped() + 1 >= stats.frames_dropped && seq.dropped() <= stats.frames_dropped);
}

#[test]
fn garbage_costs_frames_but_the_decoder_recovers() {
    let faults = Faults { garbage_every: Some(5), ..Faults::default() };
    let mut emu = Emulator::new(EmulatorConfig { faults, ..EmulatorConfig::default() }, START_NS);
    let (frames, counters) = run(&mut emu, START_NS, 1000);
    let stats = emu.stats();
    assert!(stats.garbage_bursts > 40);
    assert!(counters.cobs_errors + counters.crc_errors + counters.postcard_errors > 10);
    // Each burst corrupts at most the frame after it.
    assert!(frames.len() as u64 >= stats.frames_sent - stats.garbage_bursts, "{} frames decoded", frames.len());
}

#[test]
fn stall_silences_the_stream_and_pings() {
    let faults = Faults { stall_after_s: Some(0.5), stall_for_s: 0.3, ..Faults::default() };
    let mut emu = Emulator::new(EmulatorConfig { faults, ..EmulatorConfig::default() }, START_NS);
    let (frames, _) = run(&mut emu, START_NS, 1000);
    let times: Vec<u64> = frames.iter().map(|f| f.header.time_us).collect();
    let largest_gap_us = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!((295_000..=310_000).contains(&largest_gap_us), "largest gap {largest_gap_us} µs");
    // No sequence numbers are used while stalled.
    let mut seq = SeqTracker::new();
    frames.iter().for_each(|f| {
        seq.observe(f.header.seq);
    });
    assert_eq!(seq.dropped(), 0);
    // A ping during the stall goes unanswered.
    let mut wire = Vec::new();
    let ping = HostFrame { header: Header { seq: 0, time_us: 0 }, message: HostMessage::Ping { host_time_ns: 1 } };
    let mut emu = Emulator::new(
        EmulatorConfig {
            faults: Faults { stall_after_s: Some(0.0), stall_for_s: 1.0, ..Faults::default() },
            ..Default::default()
        },
        START_NS,
    );
    emu.receive(&common::encode(&ping), START_NS + MS);
    emu.poll(START_NS + 2 * MS, &mut wire);
    assert!(wire.is_empty());
}

#[test]
fn answers_pings_and_hello_requests_and_resets() {
    let mut emu = Emulator::new(EmulatorConfig::default(), START_NS);
    run(&mut emu, START_NS, 100);
    let mut wire = Vec::new();
    for (seq, message) in
        [HostMessage::HelloRequest { protocol_version: PROTOCOL_VERSION }, HostMessage::Ping { host_time_ns: 42 }]
            .into_iter()
            .enumerate()
    {
        wire.extend(common::encode(&HostFrame { header: Header { seq: seq as u16, time_us: 0 }, message }));
    }
    emu.receive(&wire, START_NS + 101 * MS);
    let (frames, _) = run(&mut emu, START_NS + 101 * MS, 0);
    assert!(matches!(frames[0].message, McuMessage::Hello(_)));
    let McuMessage::Pong(pong) = frames[1].message else { panic!("{frames:?}") };
    assert_eq!(pong.host_time_ns, 42);
    assert!(pong.mcu_rx_time_us <= frames[1].header.time_us);

    let reset = HostFrame { header: Header { seq: 2, time_us: 0 }, message: HostMessage::Reset };
    emu.receive(&common::encode(&reset), START_NS + 200 * MS);
    let (frames, _) = run(&mut emu, START_NS + 200 * MS, 50);
    assert!(matches!(frames[0].message, McuMessage::Hello(_)));
    assert_eq!(frames[0].header.seq, 0);
    assert!(frames[0].header.time_us < 1000, "clock restarts at reset: {}", frames[0].header.time_us);
    assert_eq!(emu.stats().resets, 1);
}

#[test]
fn configure_changes_rates_and_resolution() {
    let mut emu = Emulator::new(EmulatorConfig::default(), START_NS);
    let configure =
        Configure { imu_rate_hz: 0, depth_rate_hz: 10, depth_resolution: 4, encoder_rate_hz: 0, heartbeat_rate_hz: 0 };
    let frame = HostFrame { header: Header { seq: 0, time_us: 0 }, message: HostMessage::Configure(configure) };
    emu.receive(&common::encode(&frame), START_NS);
    let (frames, _) = run(&mut emu, START_NS, 1000);
    assert_eq!(count(&frames, |m| matches!(m, McuMessage::Imu(_) | McuMessage::Heartbeat(_))), 0);
    let depth: Vec<Depth> =
        frames.iter().filter_map(|f| if let McuMessage::Depth(d) = f.message { Some(d) } else { None }).collect();
    assert!((19..=22).contains(&depth.len()), "{}", depth.len());
    assert!(depth.iter().all(|d| d.rows == 4 && d.cols == 4 && d.distance_mm[16..].iter().all(|&x| x == 0)));
}

#[test]
fn time_sync_recovers_the_emulated_clock() {
    let faults = Faults { clock_drift_ppm: 100.0, clock_offset_us: 3_000_000_000, ..Faults::default() };
    let mut emu = Emulator::new(EmulatorConfig { faults, ..EmulatorConfig::default() }, START_NS);
    let mut ts = TimeSync::new();
    let mut decoder = FrameDecoder::<McuMessage>::new();
    let mut last_error_ns = f64::MAX;
    for i in 0..100u64 {
        // A ping every 100 ms, 300 µs each way, answered at the next 1 ms poll.
        let sent = START_NS + i * 100 * MS;
        let ping = HostFrame {
            header: Header { seq: i as u16, time_us: 0 },
            message: HostMessage::Ping { host_time_ns: sent },
        };
        emu.receive(&common::encode(&ping), sent + 300_000);
        let mut wire = Vec::new();
        emu.poll(sent + 1_300_000, &mut wire);
        for frame in decoder.feed(&wire).filter_map(Result::ok) {
            if let McuMessage::Pong(p) = frame.message {
                ts.add_exchange(Exchange {
                    host_send_ns: p.host_time_ns,
                    mcu_rx_us: p.mcu_rx_time_us,
                    mcu_tx_us: frame.header.time_us,
                    host_recv_ns: sent + 1_600_000,
                })
                .unwrap();
            }
        }
        let probe = sent + 50 * MS;
        last_error_ns = (ts.to_host_ns(emu.mcu_time_us(probe)).unwrap() as f64 - probe as f64).abs();
    }
    assert!(last_error_ns < 5_000.0, "mapping error {last_error_ns} ns");
    assert!((ts.skew_ppm().unwrap() - 100.0).abs() < 5.0);
}
