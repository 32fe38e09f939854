//! The WitMotion WT901/JY901 binary IMU protocol over a serial port: 11-byte frames
//! `55 TYPE d0..d7 SUM` carrying four little-endian i16. A resynchronising stream parser, an
//! accumulator that assembles one IMU sample per output period, and an encoder (for the simulator
//! and tests).
//!
//! Not for: opening the port, configuring the device (its register writes), mounting rotation or
//! timestamps (the caller stamps bytes on arrival). Values are in the sensor's own axes.

use std::f32::consts::PI;
use std::fmt;

pub const FRAME_LEN: usize = 11;
pub(crate) const HEADER: u8 = 0x55;

pub const TYPE_ACCEL: u8 = 0x51;
pub const TYPE_ANGULAR_RATE: u8 = 0x52;
pub const TYPE_ANGLE: u8 = 0x53;
pub(crate) const TYPE_MAGNETOMETER: u8 = 0x54;
pub(crate) const TYPE_QUATERNION: u8 = 0x59;

/// Standard gravity, m/s², the g that WitMotion's accelerometer scale is in.
pub(crate) const STANDARD_GRAVITY_MPS2: f32 = 9.80665;

/// m/s² per count: ±16 g full scale.
const ACCEL_MPS2_PER_COUNT: f32 = 16.0 * STANDARD_GRAVITY_MPS2 / 32768.0;
/// rad/s per count: ±2000 °/s full scale.
const GYRO_RADPS_PER_COUNT: f32 = 2000.0 / 32768.0 * (PI / 180.0);
/// rad per count: ±180°.
const ANGLE_RAD_PER_COUNT: f32 = PI / 32768.0;
const TEMP_C_PER_COUNT: f32 = 0.01;
const QUAT_PER_COUNT: f32 = 1.0 / 32768.0;

/// WitMotion's frame types all lie in 0x50..=0x5F. Checking this on the type byte rejects most false
/// headers before their 11 bytes arrive (the one-byte SUM alone passes 1 in 256 random frames).
fn is_wit_type(kind: u8) -> bool {
    kind & 0xF0 == 0x50
}

/// One decoded frame. Angles are the device's roll (about x), pitch (about y) and yaw (about z).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WitMessage {
    /// 0x51.
    Accel { accel_imu_mps2: [f32; 3], temp_c: f32 },
    /// 0x52.
    AngularRate { ang_vel_imu_radps: [f32; 3], temp_c: f32 },
    /// 0x53.
    Angle { roll_rad: f32, pitch_rad: f32, yaw_rad: f32, temp_c: f32 },
    /// 0x54, raw counts (the scale depends on the device and its calibration). The fourth word is
    /// temperature on some models; it is kept raw.
    Magnetometer { mag_raw: [i16; 3], word4: i16 },
    /// 0x59, orientation as a unit quaternion (w, x, y, z).
    Quaternion { quat_wxyz: [f32; 4] },
    /// Another WitMotion type (0x50 time, 0x56 pressure, 0x57 GPS...), undecoded.
    Other { kind: u8, words: [i16; 4] },
}

impl WitMessage {
    /// The frame type byte.
    pub fn kind(&self) -> u8 {
        match self {
            WitMessage::Accel { .. } => TYPE_ACCEL,
            WitMessage::AngularRate { .. } => TYPE_ANGULAR_RATE,
            WitMessage::Angle { .. } => TYPE_ANGLE,
            WitMessage::Magnetometer { .. } => TYPE_MAGNETOMETER,
            WitMessage::Quaternion { .. } => TYPE_QUATERNION,
            WitMessage::Other { kind, .. } => *kind,
        }
    }

    fn from_words(kind: u8, w: [i16; 4]) -> WitMessage {
        let scaled = |i: usize, k: f32| f32::from(w[i]) * k;
        let temp_c = scaled(3, TEMP_C_PER_COUNT);
        match kind {
            TYPE_ACCEL => {
                WitMessage::Accel { accel_imu_mps2: [0, 1, 2].map(|i| scaled(i, ACCEL_MPS2_PER_COUNT)), temp_c }
            }
            TYPE_ANGULAR_RATE => WitMessage::AngularRate {
                ang_vel_imu_radps: [0, 1, 2].map(|i| scaled(i, GYRO_RADPS_PER_COUNT)),
                temp_c,
            },
            TYPE_ANGLE => WitMessage::Angle {
                roll_rad: scaled(0, ANGLE_RAD_PER_COUNT),
                pitch_rad: scaled(1, ANGLE_RAD_PER_COUNT),
                yaw_rad: scaled(2, ANGLE_RAD_PER_COUNT),
                temp_c,
            },
            TYPE_MAGNETOMETER => WitMessage::Magnetometer { mag_raw: [w[0], w[1], w[2]], word4: w[3] },
            TYPE_QUATERNION => WitMessage::Quaternion { quat_wxyz: [0, 1, 2, 3].map(|i| scaled(i, QUAT_PER_COUNT)) },
            _ => WitMessage::Other { kind, words: w },
        }
    }

    /// The four words this message encodes to: each value divided by its scale, rounded to the
    /// nearest count and saturated to i16 (NaN becomes 0).
    fn to_words(self) -> [i16; 4] {
        // `as` saturates and maps NaN to 0.
        let count = |x: f32, k: f32| (x / k).round() as i16;
        match self {
            WitMessage::Accel { accel_imu_mps2: a, temp_c } => {
                let [x, y, z] = a.map(|v| count(v, ACCEL_MPS2_PER_COUNT));
                [x, y, z, count(temp_c, TEMP_C_PER_COUNT)]
            }
            WitMessage::AngularRate { ang_vel_imu_radps: g, temp_c } => {
                let [x, y, z] = g.map(|v| count(v, GYRO_RADPS_PER_COUNT));
                [x, y, z, count(temp_c, TEMP_C_PER_COUNT)]
            }
            WitMessage::Angle { roll_rad, pitch_rad, yaw_rad, temp_c } => [
                count(roll_rad, ANGLE_RAD_PER_COUNT),
                count(pitch_rad, ANGLE_RAD_PER_COUNT),
                count(yaw_rad, ANGLE_RAD_PER_COUNT),
                count(temp_c, TEMP_C_PER_COUNT),
            ],
            WitMessage::Magnetometer { mag_raw: [x, y, z], word4 } => [x, y, z, word4],
            WitMessage::Quaternion { quat_wxyz } => quat_wxyz.map(|v| count(v, QUAT_PER_COUNT)),
            WitMessage::Other { words, .. } => words,
        }
    }
}

/// The SUM byte: the low byte of the sum of the first ten bytes.
pub(crate) fn checksum(first_ten: &[u8; 10]) -> u8 {
    first_ten.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// A frame of the given type and words, with its checksum.
pub fn encode_words(kind: u8, words: [i16; 4]) -> [u8; FRAME_LEN] {
    let mut head = [0u8; 10];
    head[0] = HEADER;
    head[1] = kind;
    for (pair, word) in head[2..].chunks_exact_mut(2).zip(words) {
        pair.copy_from_slice(&word.to_le_bytes());
    }
    let mut frame = [0u8; FRAME_LEN];
    frame[..10].copy_from_slice(&head);
    frame[10] = checksum(&head);
    frame
}

/// A message as the device would send it. Values are rounded to the nearest count, so a decode
/// gives them back within half a count (see the scale constants), and saturate outside the
/// device's full scale (±16 g, ±2000 °/s, ±180°, ±1 for quaternions, ±327.67 °C).
pub fn encode(msg: &WitMessage) -> [u8; FRAME_LEN] {
    encode_words(msg.kind(), msg.to_words())
}

/// Why 11 bytes are not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first byte is not 0x55.
    BadHeader(u8),
    /// The type byte is outside WitMotion's 0x50..=0x5F.
    BadType(u8),
    BadChecksum {
        computed: u8,
        received: u8,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadHeader(b) => write!(f, "WitMotion frame starts with {b:#04X}, not 0x55"),
            FrameError::BadType(t) => write!(
                f,
                "WitMotion frame type {t:#04X} is outside 0x50..=0x5F; check the serial baud rate"
            ),
            FrameError::BadChecksum { computed, received } => write!(
                f,
                "WitMotion frame checksum is {received:#04X}, expected {computed:#04X}: a corrupted byte (check wiring and baud rate)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes one frame.
pub(crate) fn decode_frame(frame: &[u8; FRAME_LEN]) -> Result<WitMessage, FrameError> {
    let [header, kind, d0, d1, d2, d3, d4, d5, d6, d7, received] = *frame;
    if header != HEADER {
        return Err(FrameError::BadHeader(header));
    }
    if !is_wit_type(kind) {
        return Err(FrameError::BadType(kind));
    }
    let computed = checksum(&[header, kind, d0, d1, d2, d3, d4, d5, d6, d7]);
    if computed != received {
        return Err(FrameError::BadChecksum { computed, received });
    }
    let words = [[d0, d1], [d2, d3], [d4, d5], [d6, d7]].map(i16::from_le_bytes);
    Ok(WitMessage::from_words(kind, words))
}

/// A streaming parser: feed it bytes as they arrive, in any split. It scans for 0x55; a candidate
/// frame whose type byte or SUM is wrong loses its first byte and the rest is rescanned, so a frame
/// is found wherever it starts. Fixed-size and allocation-free.
///
/// Any stretch of 10 bytes with no 0x55 in it leaves the parser in sync: every candidate that began
/// before it has been decided by then. A false frame in noise still passes about 1 time in 256 per
/// plausible header; consumers should range-check values.
#[derive(Clone, Debug, Default)]
pub struct WitParser {
    buf: [u8; FRAME_LEN],
    len: usize,
    frames: u64,
    checksum_errors: u64,
    skipped_bytes: u64,
}

impl WitParser {
    pub const fn new() -> Self {
        Self { buf: [0; FRAME_LEN], len: 0, frames: 0, checksum_errors: 0, skipped_bytes: 0 }
    }

    /// The messages in `bytes`, in order. Bytes not consumed when the iterator is dropped are lost;
    /// a partial frame at the end is kept for the next call.
    pub fn parse<'a>(&'a mut self, bytes: &'a [u8]) -> WitMessages<'a> {
        WitMessages { parser: self, bytes }
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Candidate frames (header and type plausible) whose SUM did not match.
    pub fn checksum_errors(&self) -> u64 {
        self.checksum_errors
    }

    /// Bytes that were not part of a decoded frame.
    pub(crate) fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    fn push(&mut self, byte: u8) -> Option<WitMessage> {
        if self.len == 0 && byte != HEADER {
            self.skipped_bytes += 1;
            return None;
        }
        self.buf[self.len] = byte;
        self.len += 1;
        if self.len == 2 && !is_wit_type(byte) {
            self.drop_candidate();
            return None;
        }
        if self.len < FRAME_LEN {
            return None;
        }
        match decode_frame(&self.buf) {
            Ok(msg) => {
                self.len = 0;
                self.frames += 1;
                Some(msg)
            }
            Err(_) => {
                self.checksum_errors += 1;
                self.drop_candidate();
                None
            }
        }
    }

    /// Drops the candidate's header and moves the buffer to the next plausible header in it.
    fn drop_candidate(&mut self) {
        loop {
            let next = self.buf[1..self.len].iter().position(|&b| b == HEADER).map_or(self.len, |i| i + 1);
            self.skipped_bytes += next as u64;
            self.buf.copy_within(next..self.len, 0);
            self.len -= next;
            if self.len < 2 || is_wit_type(self.buf[1]) {
                return;
            }
        }
    }
}

/// Iterator returned by [`WitParser::parse`].
pub struct WitMessages<'a> {
    parser: &'a mut WitParser,
    bytes: &'a [u8],
}

impl Iterator for WitMessages<'_> {
    type Item = WitMessage;

    fn next(&mut self) -> Option<WitMessage> {
        while let Some((&byte, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            if let Some(msg) = self.parser.push(byte) {
                return Some(msg);
            }
        }
        None
    }
}

/// Which orientation frames complete a sample; it must match what the device is configured to
/// output, or no sample ever completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrientationSource {
    /// 0x53 (roll, pitch, yaw).
    Angle,
    /// 0x59.
    Quaternion,
    /// Both 0x53 and 0x59.
    Both,
}

/// One IMU sample assembled from one output period's burst of frames, in the sensor's axes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImuSample {
    pub accel_imu_mps2: [f32; 3],
    pub ang_vel_imu_radps: [f32; 3],
    /// Roll, pitch, yaw; present when the source includes 0x53.
    pub(crate) angle_rad: Option<[f32; 3]>,
    /// Present when the source includes 0x59.
    pub quat_wxyz: Option<[f32; 4]>,
    /// From the acceleration frame.
    pub temp_c: f32,
}

/// Assembles [`ImuSample`]s: the device sends its types in a burst each output period, in a fixed
/// order. A sample is complete once acceleration, angular rate and the configured orientation
/// frames have all arrived. A type arriving twice before that means frames were lost: the partial
/// set is dropped and counted, and the new frame starts the next set. Other types are ignored.
///
/// When frames are lost, a sample can still mix two consecutive periods (e.g. acceleration from one
/// burst, angle from the next); they are one output period apart.
#[derive(Clone, Debug)]
pub struct WitAccumulator {
    source: OrientationSource,
    accel: Option<([f32; 3], f32)>,
    gyro: Option<[f32; 3]>,
    angle: Option<[f32; 3]>,
    quat: Option<[f32; 4]>,
    incomplete_sets: u64,
}

impl WitAccumulator {
    pub fn new(source: OrientationSource) -> Self {
        Self { source, accel: None, gyro: None, angle: None, quat: None, incomplete_sets: 0 }
    }

    /// Sets dropped because a type repeated before the set completed.
    pub fn incomplete_sets(&self) -> u64 {
        self.incomplete_sets
    }

    /// Forgets a partial set (e.g. after a serial error).
    pub fn reset(&mut self) {
        (self.accel, self.gyro, self.angle, self.quat) = (None, None, None, None);
    }

    fn wants_angle(&self) -> bool {
        matches!(self.source, OrientationSource::Angle | OrientationSource::Both)
    }

    fn wants_quat(&self) -> bool {
        matches!(self.source, OrientationSource::Quaternion | OrientationSource::Both)
    }

    /// Adds a message; returns the sample it completes, if any.
    pub fn push(&mut self, msg: &WitMessage) -> Option<ImuSample> {
        let already_have = match msg {
            WitMessage::Accel { .. } => self.accel.is_some(),
            WitMessage::AngularRate { .. } => self.gyro.is_some(),
            WitMessage::Angle { .. } if self.wants_angle() => self.angle.is_some(),
            WitMessage::Quaternion { .. } if self.wants_quat() => self.quat.is_some(),
            _ => return None,
        };
        if already_have {
            self.incomplete_sets += 1;
            self.reset();
        }
        match *msg {
            WitMessage::Accel { accel_imu_mps2, temp_c } => self.accel = Some((accel_imu_mps2, temp_c)),
            WitMessage::AngularRate { ang_vel_imu_radps, .. } => self.gyro = Some(ang_vel_imu_radps),
            WitMessage::Angle { roll_rad, pitch_rad, yaw_rad, .. } => {
                self.angle = Some([roll_rad, pitch_rad, yaw_rad]);
            }
            WitMessage::Quaternion { quat_wxyz } => self.quat = Some(quat_wxyz),
            WitMessage::Magnetometer { .. } | WitMessage::Other { .. } => {}
        }
        let ((accel_imu_mps2, temp_c), ang_vel_imu_radps) = (self.accel?, self.gyro?);
        if (self.wants_angle() && self.angle.is_none()) || (self.wants_quat() && self.quat.is_none()) {
            return None;
        }
        let sample =
            ImuSample { accel_imu_mps2, ang_vel_imu_radps, angle_rad: self.angle, quat_wxyz: self.quat, temp_c };
        self.reset();
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Case count for the long "fuzz" property tests: `LOCOD_FUZZ_CASES=1000000 cargo test --release fuzz`.
    fn fuzz_cases() -> u32 {
        std::env::var("LOCOD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    }

    fn parse_all(chunks: &[&[u8]]) -> (Vec<WitMessage>, WitParser) {
        let mut parser = WitParser::new();
        let msgs = chunks.iter().flat_map(|c| parser.parse(c).collect::<Vec<_>>()).collect();
        (msgs, parser)
    }

    #[test]
    fn decodes_a_hand_checked_acceleration_frame() {
        // z = 2048 counts = 1 g; temperature 2500 = 25.00 °C.
        // SUM = 0x55 + 0x51 + 0x08 + 0xC4 + 0x09 = 0x17B -> 0x7B.
        let frame = [0x55, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0xC4, 0x09, 0x7B];
        assert_eq!(decode_frame(&frame), Ok(WitMessage::Accel { accel_imu_mps2: [0.0, 0.0, 9.80665], temp_c: 25.0 }));
        assert_eq!(encode(&decode_frame(&frame).unwrap()), frame);
    }

    #[test]
    fn decodes_angles_rates_and_quaternions() {
        // yaw = 0x4000 = 90°; SUM = 0x55 + 0x53 + 0x40 = 0xE8.
        let frame = [0x55, 0x53, 0, 0, 0, 0, 0x00, 0x40, 0, 0, 0xE8];
        let WitMessage::Angle { roll_rad, yaw_rad, .. } = decode_frame(&frame).unwrap() else {
            panic!("not an angle");
        };
        assert_eq!((roll_rad, yaw_rad), (0.0, PI / 2.0));

        let gyro = decode_frame(&encode_words(TYPE_ANGULAR_RATE, [16384, -16384, 0, 0])).unwrap();
        let WitMessage::AngularRate { ang_vel_imu_radps: g, .. } = gyro else { panic!("not a rate") };
        assert!((g[0] - 1000f32.to_radians()).abs() < 1e-4 && (g[1] + 1000f32.to_radians()).abs() < 1e-4);

        let q = decode_frame(&encode_words(TYPE_QUATERNION, [i16::MAX, 0, -16384, 0])).unwrap();
        assert_eq!(q, WitMessage::Quaternion { quat_wxyz: [32767.0 / 32768.0, 0.0, -0.5, 0.0] });

        let mag = decode_frame(&encode_words(TYPE_MAGNETOMETER, [1, -2, 3, 4])).unwrap();
        assert_eq!(mag, WitMessage::Magnetometer { mag_raw: [1, -2, 3], word4: 4 });
        let time = decode_frame(&encode_words(0x50, [1, 2, 3, 4])).unwrap();
        assert_eq!(time, WitMessage::Other { kind: 0x50, words: [1, 2, 3, 4] });
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let mut frame = encode_words(TYPE_ACCEL, [1, 2, 3, 4]);
        frame[10] ^= 1;
        assert!(matches!(decode_frame(&frame), Err(FrameError::BadChecksum { .. })));
        frame[0] = 0x54;
        assert_eq!(decode_frame(&frame), Err(FrameError::BadHeader(0x54)));
        let frame = encode_words(0x61, [0; 4]);
        assert_eq!(decode_frame(&frame), Err(FrameError::BadType(0x61)));
    }

    #[test]
    fn a_corrupted_frame_is_counted_and_the_next_one_found() {
        let good = encode_words(TYPE_ACCEL, [100, 200, 300, 2500]);
        let mut bad = good;
        bad[4] ^= 0x10;
        let stream = [&[0x00, 0x55, 0x99][..], &bad, &good].concat();
        let (msgs, parser) = parse_all(&[&stream]);
        assert_eq!(msgs, vec![decode_frame(&good).unwrap()]);
        assert_eq!(parser.checksum_errors(), 1);
        assert_eq!(parser.frames(), 1);
        assert_eq!(parser.skipped_bytes(), 3 + 11);
    }

    #[test]
    fn the_accumulator_completes_a_sample_per_burst() {
        let accel = WitMessage::Accel { accel_imu_mps2: [0.0, 0.0, 9.8], temp_c: 30.0 };
        let gyro = WitMessage::AngularRate { ang_vel_imu_radps: [0.1, 0.0, 0.0], temp_c: 30.0 };
        let angle = WitMessage::Angle { roll_rad: 0.1, pitch_rad: 0.2, yaw_rad: 0.3, temp_c: 30.0 };
        let quat = WitMessage::Quaternion { quat_wxyz: [1.0, 0.0, 0.0, 0.0] };
        let mag = WitMessage::Magnetometer { mag_raw: [1, 2, 3], word4: 0 };

        let mut acc = WitAccumulator::new(OrientationSource::Angle);
        assert_eq!(acc.push(&accel), None);
        assert_eq!(acc.push(&gyro), None);
        let sample = acc.push(&angle).unwrap();
        assert_eq!(sample.accel_imu_mps2, [0.0, 0.0, 9.8]);
        assert_eq!(sample.angle_rad, Some([0.1, 0.2, 0.3]));
        assert_eq!((sample.quat_wxyz, sample.temp_c), (None, 30.0));
        // Magnetometer and quaternion frames (not asked for) are ignored.
        assert_eq!(acc.push(&mag), None);
        assert_eq!(acc.push(&quat), None);

        // With both, the sample waits for the quaternion that follows the angle in the burst.
        let mut acc = WitAccumulator::new(OrientationSource::Both);
        for m in [accel, gyro, angle, mag] {
            assert_eq!(acc.push(&m), None);
        }
        let sample = acc.push(&quat).unwrap();
        assert_eq!((sample.angle_rad.is_some(), sample.quat_wxyz), (true, Some([1.0, 0.0, 0.0, 0.0])));
    }

    #[test]
    fn a_lost_frame_drops_the_partial_set() {
        let accel = WitMessage::Accel { accel_imu_mps2: [0.0; 3], temp_c: 0.0 };
        let gyro = WitMessage::AngularRate { ang_vel_imu_radps: [0.0; 3], temp_c: 0.0 };
        let quat = WitMessage::Quaternion { quat_wxyz: [1.0, 0.0, 0.0, 0.0] };
        let mut acc = WitAccumulator::new(OrientationSource::Quaternion);
        // Burst 1 loses its quaternion; burst 2 is complete.
        assert_eq!(acc.push(&accel), None);
        assert_eq!(acc.push(&gyro), None);
        assert_eq!(acc.push(&accel), None);
        assert_eq!(acc.incomplete_sets(), 1);
        assert_eq!(acc.push(&gyro), None);
        assert!(acc.push(&quat).is_some());
        assert_eq!(acc.incomplete_sets(), 1);
    }

    fn arb_message() -> impl Strategy<Value = WitMessage> {
        let undecoded_types: Vec<u8> = (0x50..=0x5F).filter(|k| !(0x51..=0x54).contains(k) && *k != 0x59).collect();
        let v3 = |m: f32| [-m..m, -m..m, -m..m];
        prop_oneof![
            (v3(150.0), -40.0f32..120.0).prop_map(|(a, t)| WitMessage::Accel { accel_imu_mps2: a, temp_c: t }),
            (v3(34.0), -40.0f32..120.0).prop_map(|(g, t)| WitMessage::AngularRate { ang_vel_imu_radps: g, temp_c: t }),
            (v3(PI * 0.999), -40.0f32..120.0).prop_map(|([r, p, y], t)| WitMessage::Angle {
                roll_rad: r,
                pitch_rad: p,
                yaw_rad: y,
                temp_c: t
            }),
            (any::<[i16; 3]>(), any::<i16>()).prop_map(|(m, w)| WitMessage::Magnetometer { mag_raw: m, word4: w }),
            [-1.0f32..0.99, -1.0f32..0.99, -1.0f32..0.99, -1.0f32..0.99]
                .prop_map(|q| WitMessage::Quaternion { quat_wxyz: q }),
            (prop::sample::select(undecoded_types), any::<[i16; 4]>())
                .prop_map(|(kind, words)| WitMessage::Other { kind, words }),
        ]
    }

    /// Half a count of each word's scale, with f32 slack: the encode-decode bound.
    fn half_counts(msg: &WitMessage) -> [f32; 4] {
        let h = |k: f32| k * 0.5 * 1.001 + 1e-6;
        let (k, temp) = match msg {
            WitMessage::Accel { .. } => (ACCEL_MPS2_PER_COUNT, TEMP_C_PER_COUNT),
            WitMessage::AngularRate { .. } => (GYRO_RADPS_PER_COUNT, TEMP_C_PER_COUNT),
            WitMessage::Angle { .. } => (ANGLE_RAD_PER_COUNT, TEMP_C_PER_COUNT),
            WitMessage::Quaternion { .. } => (QUAT_PER_COUNT, QUAT_PER_COUNT),
            WitMessage::Magnetometer { .. } | WitMessage::Other { .. } => return [0.0; 4],
        };
        [h(k), h(k), h(k), h(temp)]
    }

    fn values(msg: &WitMessage) -> [f32; 4] {
        match *msg {
            WitMessage::Accel { accel_imu_mps2: [x, y, z], temp_c } => [x, y, z, temp_c],
            WitMessage::AngularRate { ang_vel_imu_radps: [x, y, z], temp_c } => [x, y, z, temp_c],
            WitMessage::Angle { roll_rad, pitch_rad, yaw_rad, temp_c } => [roll_rad, pitch_rad, yaw_rad, temp_c],
            WitMessage::Quaternion { quat_wxyz } => quat_wxyz,
            WitMessage::Magnetometer { mag_raw: [x, y, z], word4 } => [x, y, z, word4].map(f32::from),
            WitMessage::Other { words, .. } => words.map(f32::from),
        }
    }

    /// Splits `bytes` at the given cut points (taken modulo the length).
    fn chunked<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(&bytes[start..c]);
            start = c;
        }
        chunks
    }

    proptest! {
        /// Encode then parse gives every value back within half a count: 2.4e-3 m/s², 5.3e-4 rad/s,
        /// 4.8e-5 rad, 1.5e-5 for quaternions, 0.005 °C; raw words exactly. However the stream is split.
        #[test]
        fn messages_round_trip_within_half_a_count(
            msgs in prop::collection::vec(arb_message(), 1..10),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
            let (back, parser) = parse_all(&chunked(&stream, &cuts));
            prop_assert_eq!(back.len(), msgs.len());
            prop_assert_eq!((parser.checksum_errors(), parser.skipped_bytes()), (0, 0));
            for (sent, got) in msgs.iter().zip(&back) {
                prop_assert_eq!(sent.kind(), got.kind());
                for ((s, g), bound) in values(sent).into_iter().zip(values(got)).zip(half_counts(sent)) {
                    prop_assert!((s - g).abs() <= bound, "{sent:?} -> {got:?}");
                }
            }
        }

        /// Any garbage, then 10 bytes without 0x55 (a quiet line), then a frame: the frame is found.
        #[test]
        fn a_frame_after_garbage_is_recovered(
            garbage in prop::collection::vec(prop_oneof![any::<u8>(), Just(0x55u8), 0x50u8..=0x5F], 0..200),
            quiet in prop::collection::vec(any::<u8>().prop_filter("not a header", |b| *b != HEADER), 10),
            msg in arb_message(),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let frame = encode(&msg);
            let stream = [&garbage[..], &quiet, &frame].concat();
            let (back, _) = parse_all(&chunked(&stream, &cuts));
            prop_assert_eq!(back.last().copied(), decode_frame(&frame).ok());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Any bytes, any split: no panic, the same messages as when fed in one piece, and every byte
        /// accounted for as part of a frame, skipped, or still buffered.
        #[test]
        fn fuzz_parser_never_panics_and_ignores_chunking(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(0x55u8), 0x50u8..=0x5F], 0..600),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let (whole, p) = parse_all(&[&bytes]);
            let (split, _) = parse_all(&chunked(&bytes, &cuts));
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(p.frames() * FRAME_LEN as u64 + p.skipped_bytes() + p.len as u64, bytes.len() as u64);
            let mut acc = WitAccumulator::new(OrientationSource::Both);
            for m in &whole {
                let _ = acc.push(m);
            }
        }
    }
}
