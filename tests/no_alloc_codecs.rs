//! The codecs run on real-time threads: their encode and decode paths must not allocate. A counting
//! global allocator checks that, counting only on the thread that runs the codec.

use locod::io::can::CanFrame;
use locod::io::{mit, slcan, witmotion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to the system allocator; the counters are const-initialised
// thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
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
