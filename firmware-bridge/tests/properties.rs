//! Property tests: the decoder never panics, recovers every valid frame from any surrounding garbage and
//! any chunking, and round-trips arbitrary messages. `LOCOD_FUZZ_CASES=100000 cargo test --release --test
//! properties` turns the last ones into a longer fuzz run.

mod common;

use common::encode;
use firmware_bridge::*;
use proptest::prelude::*;

fn fuzz_cases() -> u32 {
    std::env::var("LOCOD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

fn f32s<const N: usize>() -> impl Strategy<Value = [f32; N]> {
    prop::collection::vec(-1e6f32..1e6f32, N).prop_map(|v| v.try_into().unwrap())
}

fn arrays<T: Arbitrary + Copy + std::fmt::Debug, const N: usize>() -> impl Strategy<Value = [T; N]> {
    prop::collection::vec(any::<T>(), N).prop_map(|v| v.try_into().unwrap())
}

fn mcu_message() -> impl Strategy<Value = McuMessage> {
    prop_oneof![
        (any::<u16>(), any::<[u8; 3]>(), any::<u64>(), any::<[u8; DEVICE_NAME_LEN]>()).prop_map(|(v, f, id, n)| {
            McuMessage::Hello(Hello { protocol_version: v, firmware_version: f, device_id: id, device_name: n })
        }),
        (f32s::<3>(), f32s::<3>(), prop::option::of(f32s::<4>()), -50f32..150.0).prop_map(|(a, g, q, t)| {
            McuMessage::Imu(Imu { accel_mps2: a, gyro_radps: g, quat_wxyz: q, temperature_c: t })
        }),
        (any::<u8>(), any::<u8>(), any::<u8>(), arrays::<u16, 64>(), arrays::<u8, 64>()).prop_map(
            |(sensor, rows, cols, distance_mm, status)| McuMessage::Depth(Depth {
                sensor,
                rows,
                cols,
                distance_mm,
                status
            })
        ),
        (any::<u8>(), arrays::<i32, MAX_ENCODERS>())
            .prop_map(|(len, counts)| McuMessage::Encoders(Encoders { len, counts })),
        (any::<u32>(), any::<[u32; 5]>(), any::<u32>(), any::<u32>()).prop_map(|(up, rx, tx, se)| {
            McuMessage::Heartbeat(Heartbeat {
                uptime_ms: up,
                rx: RxCounters {
                    frames_ok: rx[0],
                    cobs_errors: rx[1],
                    crc_errors: rx[2],
                    postcard_errors: rx[3],
                    overflows: rx[4],
                },
                tx_dropped: tx,
                sensor_errors: se,
            })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(h, m)| McuMessage::Pong(Pong { host_time_ns: h, mcu_rx_time_us: m })),
        (any::<u16>(), any::<u32>()).prop_map(|(code, detail)| McuMessage::Fault(Fault { code, detail })),
    ]
}

fn mcu_frame() -> impl Strategy<Value = McuFrame> {
    (any::<u16>(), any::<u64>(), mcu_message())
        .prop_map(|(seq, time_us, message)| Frame { header: Header { seq, time_us }, message })
}

/// Splits `bytes` at the given cut points and feeds the pieces one by one.
fn feed_chunked<M: serde::de::DeserializeOwned>(
    decoder: &mut FrameDecoder<M>,
    bytes: &[u8],
    cuts: &[usize],
) -> Vec<Result<Frame<M>, DecodeError>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        out.extend(decoder.feed(&bytes[from..cut]));
        from = cut;
    }
    out
}

fn is_subsequence<T: PartialEq>(needle: &[T], haystack: &[T]) -> bool {
    let mut it = haystack.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}

proptest! {
    #[test]
    fn arbitrary_messages_round_trip(frame in mcu_frame()) {
        let wire = encode(&frame);
        prop_assert!(wire.len() <= MAX_FRAME_LEN);
        prop_assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1);
        let got: Vec<_> = FrameDecoder::<McuMessage>::new().feed(&wire).collect();
        prop_assert_eq!(got, vec![Ok(frame)]);
    }

    #[test]
    fn arbitrary_bytes_in_any_chunking_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut mcu = FrameDecoder::<McuMessage>::new();
        let results = feed_chunked(&mut mcu, &bytes, &cuts);
        prop_assert!(results.len() <= bytes.iter().filter(|&&b| b == 0).count());
        let mut host = FrameDecoder::<HostMessage>::new();
        feed_chunked(&mut host, &bytes, &cuts);
    }

    #[test]
    fn a_frame_between_garbage_is_recovered(
        before in prop::collection::vec(any::<u8>(), 0..600),
        frame in mcu_frame(),
        after in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        // The delimiter before the frame is what a sender emits after a restart; without it the garbage
        // and the frame would be one packet.
        let mut wire = before;
        wire.push(0);
        wire.extend(encode(&frame));
        wire.extend(after);
        let results = feed_chunked(&mut FrameDecoder::new(), &wire, &cuts);
        prop_assert!(results.contains(&Ok(frame)), "{:?}", results);
    }

    #[test]
    fn a_corrupted_byte_never_yields_a_wrong_frame(frame in mcu_frame(), at in any::<usize>(), xor in 1u8..=255) {
        let mut wire = encode(&frame);
        let at = at % wire.len();
        wire[at] ^= xor;
        for got in FrameDecoder::<McuMessage>::new().feed(&wire).flatten() {
            prop_assert_eq!(got, frame);
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Frame(McuFrame),
    Garbage(Vec<u8>),
    /// A frame cut short, as when a sender resets mid-write.
    Truncated(McuFrame, usize),
    BitFlipped(McuFrame, usize, u8),
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        4 => mcu_frame().prop_map(Segment::Frame),
        2 => prop::collection::vec(any::<u8>(), 1..400).prop_map(Segment::Garbage),
        1 => (mcu_frame(), any::<usize>()).prop_map(|(f, n)| Segment::Truncated(f, n)),
        1 => (mcu_frame(), any::<usize>(), 1u8..=255).prop_map(|(f, at, x)| Segment::BitFlipped(f, at, x)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    /// A long stream of frames mixed with garbage, truncated and corrupted frames: every intact frame (each
    /// preceded by a delimiter) comes out, in order, whatever the chunking.
    #[test]
    fn fuzz_mixed_stream(
        segments in prop::collection::vec(segment(), 1..40),
        cuts in prop::collection::vec(any::<usize>(), 0..64),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for s in &segments {
            match s {
                Segment::Frame(f) => {
                    wire.push(0);
                    wire.extend(encode(f));
                    expected.push(*f);
                }
                Segment::Garbage(g) => wire.extend(g),
                Segment::Truncated(f, n) => {
                    let e = encode(f);
                    wire.extend(&e[..n % e.len()]);
                }
                Segment::BitFlipped(f, at, x) => {
                    let mut e = encode(f);
                    let at = at % e.len();
                    e[at] ^= x;
                    wire.extend(e);
                }
            }
        }
        let mut decoder = FrameDecoder::<McuMessage>::new();
        let ok: Vec<McuFrame> = feed_chunked(&mut decoder, &wire, &cuts).into_iter().filter_map(Result::ok).collect();
        prop_assert!(is_subsequence(&expected, &ok), "expected {:?}\ngot {:?}", expected, ok);
        prop_assert_eq!(decoder.counters().frames_ok as usize, ok.len());
    }

    /// The gap counter matches the frames actually removed, across wraparound.
    #[test]
    fn seq_tracker_counts_exact_gaps(start in any::<u16>(), keep in prop::collection::vec(0u8..4, 1..2000)) {
        let mut tracker = SeqTracker::new();
        let mut seq = start;
        let mut dropped = 0u64;
        // Losses count once a later frame reveals them.
        let mut unseen = 0u64;
        let mut seen_first = false;
        for k in keep {
            // k == 0: this frame is lost.
            if k == 0 && seen_first {
                unseen += 1;
            } else {
                seen_first = true;
                prop_assert_eq!(u64::from(tracker.observe(seq)), unseen);
                dropped += std::mem::take(&mut unseen);
            }
            seq = seq.wrapping_add(1);
        }
        prop_assert_eq!(tracker.dropped(), dropped);
        prop_assert_eq!(tracker.resyncs(), 0);
    }
}
