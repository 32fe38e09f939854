//! The codecs run on real-time threads: their encode and decode paths must not allocate. A counting
//! global allocator checks that, counting only on the thread that runs the codec.

use locod::io::protocol::{mit, slcan, witmotion};
use locod::io::transport::can::CanFrame;

mod common;

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    common::alloc::reset();
    common::alloc::watch(true);
    f();
    common::alloc::watch(false);
    common::alloc::count()
}

#[test]
fn encode_and_decode_paths_do_not_allocate() {
    // Inputs prepared before counting starts.
    let ranges = mit::MotorModel::DmJ4310.ranges();
    let cmd = mit::MitCommand { q_rad: 1.0, qd_radps: 2.0, kp: 30.0, kd: 1.0, tau_ff_nm: 0.5 };
    let map = mit::JointMap::new(-1, 0.3, 1.5).unwrap();
    let reply_frame = CanFrame::standard(0x11, &[0x12, 0x80, 0x00, 0x80, 0x07, 0xFF, 40, 41]).unwrap();
    let param_frame = CanFrame::standard(0x11, &[1, 0, 0x33, 0x0A, 0, 0, 0x80, 0x3F]).unwrap();
    let slcan_bytes: &[u8] = b"t0018FFFFFFFFFFFFFFFC\rT1234567821122EA60\r\x07zz\rt00G0\r\rr1238\r";
    let mut wit_bytes = [0u8; 3 * witmotion::FRAME_LEN + 3];
    wit_bytes[..3].copy_from_slice(&[0x55, 0x99, 0x00]);
    for (i, kind) in
        [witmotion::TYPE_ACCEL, witmotion::TYPE_ANGULAR_RATE, witmotion::TYPE_ANGLE].into_iter().enumerate()
    {
        let start = 3 + i * witmotion::FRAME_LEN;
        wit_bytes[start..start + witmotion::FRAME_LEN].copy_from_slice(&witmotion::encode_words(kind, [1, 2, 3, 4]));
    }
    let mut slcan_decoder = slcan::SlcanDecoder::new();
    let mut wit_parser = witmotion::WitParser::new();
    let mut accumulator = witmotion::WitAccumulator::new(witmotion::OrientationSource::Angle);

    let mut events = 0;
    let mut samples = 0;
    let count = allocations_in(|| {
        let motor_cmd = map.command_to_motor(&cmd);
        let packed = mit::pack_command(1, &motor_cmd, &ranges).unwrap();
        let _ = mit::decode_request(&packed.frame, &ranges);
        let _ = mit::special_frame(1, mit::Special::Enable);
        let reply = mit::decode_reply(&reply_frame, mit::ReplyFormat::Damiao, |_| Some(ranges));
        if let Ok(reply) = reply {
            let _ = map.reply_to_joint(&reply);
            let _ = mit::encode_reply(0x11, &reply, mit::ReplyFormat::Damiao, &ranges);
        }
        let _ = mit::decode_reply(&reply_frame, mit::ReplyFormat::MiniCheetah, |_| None);
        let _ = mit::damiao_write_f32(1, 0x0A, 1.0);
        let _ = mit::parse_damiao_param_reply(&param_frame);

        let mut buf = [0u8; slcan::MAX_ENCODED_LEN];
        let _ = slcan::encode_frame(&packed.frame, &mut buf);
        let _ = slcan::encode_bitrate(1_000_000, &mut buf);
        let _ = slcan::encode_bitrate(1, &mut buf);
        for chunk in slcan_bytes.chunks(5) {
            events += slcan_decoder.decode(chunk).count();
        }

        for chunk in wit_bytes.chunks(4) {
            for msg in wit_parser.parse(chunk) {
                let _ = witmotion::encode(&msg);
                samples += usize::from(accumulator.push(&msg).is_some());
            }
        }
    });
    assert_eq!(count, 0, "the encode/decode paths allocated {count} times");
    // The calls above did real work.
    assert_eq!((events, samples, wit_parser.frames()), (7, 1, 3));
}

#[test]
fn the_bridge_receive_path_does_not_allocate_per_frame() {
    use firmware_bridge::{
        encode_frame, Depth, Frame, Header, Heartbeat, Hello, Imu, McuMessage, Pong, PROTOCOL_VERSION,
    };
    use locod::estimate::{depth::DepthMapper, imu::ImuFilter};
    use locod::io::device::bridge::BridgeLink;
    use locod::io::device::stats::SensorStats;
    use locod::robot::pipeline::{BridgePipeline, DepthPipeline, FilteredImu, ImuPublisher};
    use locod::rt::triple::triple;
    use locod::types::terrain::Perception;
    use std::sync::Arc;

    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel-hardware.toml"));
    let config = locod::config::Config::load(path).unwrap();
    let (imu_w, mut imu_r) = triple(locod::types::ImuSample::default());
    let (p_w, mut p_r) = triple(Perception::default());
    let sink = BridgePipeline {
        imu: Some(FilteredImu::new(ImuFilter::new(&config.imu), ImuPublisher::new(imu_w, None))),
        depth: Some(DepthPipeline::new(DepthMapper::new(config.depth.as_ref().unwrap()), p_w)),
        attitude: None,
    };
    let mut bridge = config.bridge.clone().unwrap();
    bridge.port = "/nonexistent/locod-bridge".into();
    let stats = Arc::new(SensorStats::default());
    let mut link = BridgeLink::new(&bridge, sink, stats.clone());
    let wire = |seq: u16, time_us: u64, message: McuMessage| {
        let mut buf = [0u8; firmware_bridge::MAX_FRAME_LEN];
        let n = encode_frame(&Frame { header: Header { seq, time_us }, message }, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    // The handshake reports to people (and allocates): before counting.
    let hello =
        Hello { protocol_version: PROTOCOL_VERSION, firmware_version: [0, 1, 0], device_id: 1, device_name: [0; 16] };
    link.handle_bytes(&wire(0, 0, McuMessage::Hello(hello)), 1_000);
    let mut depth = Depth::empty(0, 8, 8);
    depth.distance_mm = [400; 64];
    depth.status = [5; 64];
    let imu = Imu { accel_mps2: [0.0, 0.0, 9.8], gyro_radps: [0.01, 0.0, 0.0], quat_wxyz: None, temperature_c: 30.0 };
    let mut stream = Vec::new();
    for i in 0..50u16 {
        stream.extend(wire(3 * i + 1, 5_000 * u64::from(i), McuMessage::Imu(imu)));
        stream.extend(wire(3 * i + 2, 5_000 * u64::from(i) + 100, McuMessage::Depth(depth)));
        let pong = Pong { host_time_ns: 2_000_000 * u64::from(i), mcu_rx_time_us: 5_000 * u64::from(i) };
        stream.extend(wire(3 * i + 3, 5_000 * u64::from(i) + 10, McuMessage::Pong(pong)));
    }
    stream.extend(wire(
        151,
        300_000,
        McuMessage::Heartbeat(Heartbeat { uptime_ms: 300, rx: Default::default(), tx_dropped: 0, sensor_errors: 0 }),
    ));
    stream.extend([0x13, 0x37, 0x00]); // garbage

    let count = allocations_in(|| {
        for (i, chunk) in stream.chunks(64).enumerate() {
            link.handle_bytes(chunk, 2_000_000 * i as u64 + 10_000);
        }
    });
    assert_eq!(count, 0, "the bridge receive path allocated {count} times");
    assert_eq!(stats.imu.samples.load(std::sync::atomic::Ordering::Relaxed), 50);
    assert!(imu_r.latest().t_ns > 0);
    assert!(p_r.latest().map.height_m.iter().flatten().any(|h| h.is_finite()));
}
