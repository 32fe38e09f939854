//! Round trips of every message and the decoder's typed errors.

mod common;

use common::*;
use firmware_bridge::*;

#[test]
fn every_message_round_trips_in_both_directions() {
    let mut wire = Vec::new();
    let mcu: Vec<McuFrame> = all_mcu_messages()
        .into_iter()
        .enumerate()
        .map(|(i, message)| Frame { header: header(i as u16), message })
        .collect();
    for f in &mcu {
        wire.extend(encode(f));
    }
    let mut decoder = FrameDecoder::<McuMessage>::new();
    let decoded: Vec<_> = decoder.feed(&wire).collect::<Result<_, _>>().unwrap();
    assert_eq!(decoded, mcu);
    assert_eq!(decoder.counters().frames_ok, mcu.len() as u32);

    for (i, message) in all_host_messages().into_iter().enumerate() {
        let f = HostFrame { header: header(i as u16), message };
        let bytes = encode(&f);
        let got: Vec<_> = FrameDecoder::<HostMessage>::new().feed(&bytes).collect();
        assert_eq!(got, [Ok(f)]);
    }
}

#[test]
fn worst_case_messages_fit_the_declared_bounds() {
    for message in all_mcu_messages() {
        let f = Frame { header: header(u16::MAX), message };
        let len = body(&f).len();
        assert!(len <= MAX_MESSAGE_LEN, "{message:?} is {len} bytes");
        assert!(encode(&f).len() <= MAX_FRAME_LEN);
    }
    let mut max_depth = Depth::empty(u8::MAX, 8, 8);
    max_depth.distance_mm = [u16::MAX; MAX_DEPTH_ZONES];
    let f = Frame { header: header(u16::MAX), message: McuMessage::Depth(max_depth) };
    assert_eq!(body(&f).len(), 273, "update the MAX_MESSAGE_LEN comment");
}

#[test]
fn variant_indices_are_the_wire_format() {
    // The first byte after the header is the variant index; pin it so a reorder fails here.
    let tags: Vec<u8> = all_mcu_messages()
        .into_iter()
        .map(|m| body(&Frame { header: Header { seq: 0, time_us: 0 }, message: m })[2])
        .collect();
    assert_eq!(tags, [0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6]);
    let tags: Vec<u8> = all_host_messages()
        .into_iter()
        .map(|m| body(&Frame { header: Header { seq: 0, time_us: 0 }, message: m })[2])
        .collect();
    assert_eq!(tags, [0, 1, 2, 3, 4]);
}

#[test]
fn known_bytes_of_a_small_frame() {
    let f = HostFrame { header: Header { seq: 1, time_us: 2 }, message: HostMessage::Reset };
    let raw_body = [1u8, 2, 4];
    let crc = CRC32C.checksum(&raw_body).to_le_bytes();
    let mut raw = raw_body.to_vec();
    raw.extend(crc);
    let mut expected = vec![0u8; cobs::max_encoded_len(raw.len())];
    let n = cobs::encode(&raw, &mut expected).unwrap();
    expected.truncate(n);
    expected.push(0);
    assert_eq!(encode(&f), expected);
    // CRC-32C check value from the catalogue.
    assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
}

fn decode_one(bytes: &[u8]) -> Result<McuFrame, DecodeError> {
    let mut d = FrameDecoder::<McuMessage>::new();
    let mut results: Vec<_> = d.feed(bytes).collect();
    assert_eq!(results.len(), 1, "{results:?}");
    results.remove(0)
}

/// Re-frames a raw (pre-COBS) packet.
fn cobs_frame(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; cobs::max_encoded_len(raw.len()) + 1];
    let n = cobs::encode(raw, &mut out).unwrap();
    out.truncate(n);
    out.push(0);
    out
}

#[test]
fn corrupted_crc_is_a_crc_error() {
    let f = Frame { header: header(3), message: McuMessage::Depth(depth_8x8()) };
    let mut raw = body(&f);
    let good = CRC32C.checksum(&raw);
    raw.extend((good ^ 0x0100).to_le_bytes());
    assert_eq!(decode_one(&cobs_frame(&raw)), Err(DecodeError::Crc { expected: good, got: good ^ 0x0100 }));

    // A flipped body bit is caught too.
    let mut raw = body(&f);
    raw.extend(good.to_le_bytes());
    raw[10] ^= 0x40;
    assert!(matches!(decode_one(&cobs_frame(&raw)), Err(DecodeError::Crc { .. })));
}

#[test]
fn other_typed_errors() {
    // COBS: a code byte that runs past the end.
    assert!(matches!(decode_one(&[0x09, 1, 2, 0]), Err(DecodeError::Cobs(_))));
    // Too short for CRC plus message.
    assert_eq!(decode_one(&cobs_frame(&[1, 2, 3])), Err(DecodeError::TooShort { len: 3 }));
    // Valid CRC over a body that is not a message (unknown variant 200).
    let raw_body = [0u8, 0, 200, 1];
    let mut raw = raw_body.to_vec();
    raw.extend(CRC32C.checksum(&raw_body).to_le_bytes());
    assert!(matches!(decode_one(&cobs_frame(&raw)), Err(DecodeError::Postcard(_))));
    // Valid message with bytes after it.
    let mut bytes = body(&HostFrame { header: header(0), message: HostMessage::Reset });
    bytes.push(7);
    let mut raw = bytes.clone();
    raw.extend(CRC32C.checksum(&bytes).to_le_bytes());
    let mut d = FrameDecoder::<HostMessage>::new();
    let r: Vec<_> = d.feed(&cobs_frame(&raw)).collect();
    assert_eq!(r, [Err(DecodeError::TrailingBytes { extra: 1 })]);
    // A host frame read as an MCU frame: Reset (tag 4) is Heartbeat there, whose body is missing.
    let host = encode(&HostFrame { header: header(0), message: HostMessage::Reset });
    assert!(matches!(decode_one(&host), Err(DecodeError::Postcard(_))));
}

#[test]
fn overflow_then_recovery() {
    let mut d = FrameDecoder::<McuMessage, 64>::new();
    let mut wire = vec![0x55u8; 200];
    wire.push(0);
    let good = Frame { header: header(1), message: McuMessage::Pong(Pong { host_time_ns: 5, mcu_rx_time_us: 6 }) };
    wire.extend(encode(&good));
    let r: Vec<_> = d.feed(&wire).collect();
    assert_eq!(r, [Err(DecodeError::Overflow { discarded: 200 }), Ok(good)]);
    assert_eq!(d.counters().overflows, 1);
    // A frame larger than a small decoder's buffer is an overflow, never a panic.
    let big = encode(&Frame { header: header(1), message: McuMessage::Depth(depth_8x8()) });
    assert!(matches!(d.feed(&big).next(), Some(Err(DecodeError::Overflow { .. }))));
}

#[test]
fn garbage_and_empty_packets_resynchronise() {
    let a = Frame { header: header(1), message: McuMessage::Fault(Fault { code: 1, detail: 2 }) };
    let b = Frame { header: header(2), message: McuMessage::Depth(depth_8x8()) };
    let mut wire = vec![0, 0, 0x13, 0x37, 0xFF, 0];
    wire.extend(encode(&a));
    wire.extend([0, 0]);
    // Half a frame, then the delimiter a restarting sender emits, then a whole frame.
    let eb = encode(&b);
    wire.extend(&eb[..eb.len() / 2]);
    wire.push(0);
    wire.extend(&eb);
    let mut d = FrameDecoder::<McuMessage>::new();
    let ok: Vec<_> = d.feed(&wire).filter_map(Result::ok).collect();
    assert_eq!(ok, [a, b]);
    let c = d.counters();
    assert_eq!(c.frames_ok, 2);
    assert_eq!(c.cobs_errors + c.crc_errors + c.postcard_errors, 2);
}

#[test]
fn encode_reports_small_buffers() {
    let f = Frame { header: header(0), message: McuMessage::Depth(depth_8x8()) };
    let mut small = [0u8; 16];
    assert!(matches!(encode_frame(&f, &mut small), Err(EncodeError::BufferTooSmall { available: 16, .. })));
}

#[test]
fn depth_and_encoder_helpers_tolerate_nonsense_shapes() {
    let mut d = depth_8x8();
    assert_eq!(d.zone_valid(1), Some(337));
    assert_eq!(d.zone_valid(0), None); // status 255
    d.rows = 200;
    d.cols = 200;
    assert_eq!(d.zone_count(), MAX_DEPTH_ZONES);
    assert_eq!(d.zone_valid(64), None);
    let e = Encoders { len: 255, counts: [1; MAX_ENCODERS] };
    assert_eq!(e.active().len(), MAX_ENCODERS);
    let h =
        Hello { protocol_version: 1, firmware_version: [0; 3], device_id: 0, device_name: Hello::name_bytes("abc") };
    assert_eq!(h.name(), Some("abc"));
}
