//! The firmware bridge composed with its estimators, fed bytes in this thread: handshake and
//! refusal, and any stream (garbage, NaNs, unknown sensors) handled without panicking.

use super::pipeline::{BridgePipeline, DepthPipeline, FilteredImu, ImuPublisher};
use crate::config::{self, Config, DepthSensor};
use crate::estimate::depth::DepthMapper;
use crate::estimate::imu::ImuFilter;
use crate::io::device::bridge::{BridgeLink, LinkState};
use crate::io::device::stats::SensorStats;
use crate::rt::triple::{triple, Reader};
use crate::types::terrain::{Perception, MAX_ZONES};
use crate::types::ImuSample;
use firmware_bridge::{
    encode_frame, Depth, Frame, Header, Heartbeat, Hello, Imu, McuMessage, Pong, RxCounters, MAX_DEPTH_ZONES,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use proptest::prelude::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn link() -> (BridgeLink<BridgePipeline>, Reader<ImuSample>, Reader<Perception>, Arc<SensorStats>) {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel-hardware.toml"));
    let mut config = Config::load(path).unwrap();
    let bridge = config::Bridge { port: "/nonexistent/locod-bridge".into(), ..config.bridge.clone().unwrap() };
    let depth = config.depth.as_mut().unwrap();
    depth.sensors.push(DepthSensor { name: "rear".into(), bridge_sensor: 7, ..depth.sensors[0].clone() });
    let (imu_w, imu_r) = triple(ImuSample::default());
    let (p_w, p_r) = triple(Perception::default());
    let sink = BridgePipeline {
        imu: Some(FilteredImu::new(ImuFilter::new(&config.imu), ImuPublisher::new(imu_w, None))),
        depth: Some(DepthPipeline::new(DepthMapper::new(depth), p_w)),
        attitude: None,
    };
    let stats = Arc::new(SensorStats::default());
    (BridgeLink::new(&bridge, sink, stats.clone()), imu_r, p_r, stats)
}

fn wire(seq: u16, time_us: u64, message: McuMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = encode_frame(&Frame { header: Header { seq, time_us }, message }, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn hello(version: u16) -> McuMessage {
    McuMessage::Hello(Hello {
        protocol_version: version,
        firmware_version: [1, 2, 3],
        device_id: 9,
        device_name: Hello::name_bytes("test"),
    })
}

fn any_message() -> impl Strategy<Value = McuMessage> {
    let f = any::<u32>().prop_map(f32::from_bits);
    prop_oneof![
        (any::<[u32; 3]>(), any::<[u32; 3]>(), proptest::option::of(any::<[u32; 4]>())).prop_map(|(a, g, q)| {
            McuMessage::Imu(Imu {
                accel_mps2: a.map(f32::from_bits),
                gyro_radps: g.map(f32::from_bits),
                quat_wxyz: q.map(|q| q.map(f32::from_bits)),
                temperature_c: 20.0,
            })
        }),
        (0u8..10, any::<u8>(), any::<u8>(), proptest::collection::vec(any::<(u16, u8)>(), MAX_DEPTH_ZONES)).prop_map(
            |(sensor, rows, cols, zones)| {
                let mut d = Depth::empty(sensor, rows % 10, cols % 10);
                for (i, (mm, status)) in zones.into_iter().enumerate() {
                    d.distance_mm[i] = mm;
                    d.status[i] = if status % 2 == 0 { 5 } else { status };
                }
                McuMessage::Depth(d)
            }
        ),
        (any::<u64>(), any::<u64>()).prop_map(|(h, m)| McuMessage::Pong(Pong { host_time_ns: h, mcu_rx_time_us: m })),
        f.prop_map(|_| McuMessage::Heartbeat(Heartbeat {
            uptime_ms: 1,
            rx: RxCounters::default(),
            tx_dropped: 0,
            sensor_errors: 0
        })),
        any::<u16>().prop_map(hello),
    ]
}

#[test]
fn a_matching_hello_streams_and_a_wrong_one_is_refused() {
    let (mut link, mut imu, _, stats) = link();
    let imu_frame = McuMessage::Imu(Imu {
        accel_mps2: [0.0, 0.0, 9.8],
        gyro_radps: [0.0; 3],
        quat_wxyz: None,
        temperature_c: 30.0,
    });
    link.handle_bytes(&wire(0, 10, imu_frame), 1_000);
    assert_eq!(stats.bridge.ignored.load(Relaxed), 1, "no data before a Hello");
    link.handle_bytes(&wire(0, 20, hello(PROTOCOL_VERSION)), 2_000);
    assert_eq!(link.state(), LinkState::Streaming);
    link.handle_bytes(&wire(3, 5_000, imu_frame), 3_000);
    assert_eq!(stats.bridge.seq_dropped.load(Relaxed), 2);
    assert_eq!(imu.latest().t_ns, 3_000, "arrival time before time sync converges");
    link.handle_bytes(&wire(4, 6_000, hello(PROTOCOL_VERSION + 1)), 4_000);
    assert_eq!(link.state(), LinkState::Refused);
    link.handle_bytes(&wire(5, 7_000, imu_frame), 5_000);
    assert_eq!(imu.latest().t_ns, 3_000, "a refused board's data is not used");
    assert_eq!(stats.bridge.version_mismatches.load(Relaxed), 1);
    assert_eq!(stats.bridge.board_protocol_version.load(Relaxed), u32::from(PROTOCOL_VERSION) + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("LOCOD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// Any messages (NaNs, nonsense grid sizes, unknown sensors, stray pongs and hellos),
    /// interleaved with any garbage in any chunking: the link never panics, and what it
    /// publishes is well-formed.
    #[test]
    fn any_stream_is_handled_without_panicking(
        items in proptest::collection::vec((any_message(), proptest::collection::vec(any::<u8>(), 0..12)), 1..40),
        chunk in 1usize..200,
    ) {
        let (mut link, mut imu, mut perception, stats) = link();
        let mut bytes = wire(0, 1, hello(PROTOCOL_VERSION));
        for (i, (message, garbage)) in items.iter().enumerate() {
            bytes.extend(wire(i as u16 + 1, 1_000 * i as u64, *message));
            bytes.extend(garbage);
        }
        for (i, c) in bytes.chunks(chunk).enumerate() {
            link.handle_bytes(c, 1_000_000 + i as u64);
        }
        let q = imu.latest().quat_wxyz;
        prop_assert!((q.iter().map(|c| c * c).sum::<f64>() - 1.0).abs() < 1e-6, "{:?}", q);
        let p = perception.latest();
        prop_assert!(p.depth.iter().all(|d| usize::from(d.zones) <= MAX_ZONES));
        prop_assert!(stats.bridge.frames() >= 1);
    }
}
