//! The Lawicel slcan ASCII protocol that CANable-style USB-CAN adapters speak over a serial port:
//! encoding commands and frames into a caller's buffer, and a streaming decoder for what the adapter
//! sends back.
//!
//! Not for: opening or configuring the serial port, timing, or retries.
//!
//! Acknowledgements are optional in practice: the Lawicel protocol answers `\r` (or `z\r`/`Z\r` after
//! a transmit) for OK and `\x07` for an error, but CANable's slcan firmware sends no acknowledgement
//! at all. Callers must never wait for one; [`SlcanEvent::Ack`] and [`SlcanEvent::Nack`] are for
//! counting and diagnostics only, and cannot be matched to the command they answer.
//!
//! Only classic CAN is spoken: CAN FD lines (`d`, `D`, `b`, `B`) are reported as unexpected.

use crate::io::transport::can::{CanFrame, MAX_EXTENDED_ID, MAX_STANDARD_ID};
use std::fmt;

/// The longest encoding of a frame: `T`, 8 id digits, the length, 16 data digits, `\r`.
pub const MAX_ENCODED_LEN: usize = 27;

/// The longest line the decoder accepts, without its `\r`: an extended data frame with 8 bytes and
/// a 4-digit timestamp.
pub(crate) const MAX_LINE_LEN: usize = 30;

const HEX: &[u8; 16] = b"0123456789ABCDEF";
const BELL: u8 = 0x07;

/// Why a command could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Not one of the bitrates `Sn` can select.
    UnsupportedBitrate(u32),
    BufferTooSmall {
        needed: usize,
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::UnsupportedBitrate(bps) => write!(
                f,
                "slcan cannot select a bitrate of {bps} bit/s; use one of 10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000, 1000000"
            ),
            EncodeError::BufferTooSmall { needed, available } => write!(
                f,
                "slcan encode buffer holds {available} bytes but {needed} are needed (MAX_ENCODED_LEN is always enough)"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

fn put(out: &mut [u8], line: &[u8]) -> Result<usize, EncodeError> {
    let available = out.len();
    let dst = out.get_mut(..line.len()).ok_or(EncodeError::BufferTooSmall { needed: line.len(), available })?;
    dst.copy_from_slice(line);
    Ok(line.len())
}

/// The `n` of `Sn` for a bitrate in bit/s.
pub(crate) fn bitrate_code(bitrate_bps: u32) -> Result<u8, EncodeError> {
    crate::types::bus::slcan_bitrate_code(bitrate_bps).ok_or(EncodeError::UnsupportedBitrate(bitrate_bps))
}

/// `Sn\r`: set the bitrate (only while the channel is closed). Returns the bytes written.
pub fn encode_bitrate(bitrate_bps: u32, out: &mut [u8]) -> Result<usize, EncodeError> {
    let n = bitrate_code(bitrate_bps)?;
    put(out, &[b'S', b'0' + n, b'\r'])
}

/// `O\r`: open the channel.
pub(crate) fn encode_open(out: &mut [u8]) -> Result<usize, EncodeError> {
    put(out, b"O\r")
}

/// `C\r`: close the channel.
pub(crate) fn encode_close(out: &mut [u8]) -> Result<usize, EncodeError> {
    put(out, b"C\r")
}

/// A frame as `tIIIL<data>\r`, `TIIIIIIIIL<data>\r`, `rIIIL\r` or `RIIIIIIIIL\r`, uppercase hex.
/// Returns the bytes written; at most [`MAX_ENCODED_LEN`].
pub fn encode_frame(frame: &CanFrame, out: &mut [u8]) -> Result<usize, EncodeError> {
    let (kind, id_digits) = match (frame.is_extended(), frame.is_remote()) {
        (false, false) => (b't', 3),
        (true, false) => (b'T', 8),
        (false, true) => (b'r', 3),
        (true, true) => (b'R', 8),
    };
    let data = frame.data();
    let needed = 1 + id_digits + 1 + 2 * data.len() + 1;
    let available = out.len();
    let out = out.get_mut(..needed).ok_or(EncodeError::BufferTooSmall { needed, available })?;
    out[0] = kind;
    for (i, digit) in out[1..=id_digits].iter_mut().enumerate() {
        *digit = HEX[((frame.id() >> (4 * (id_digits - 1 - i))) & 0xF) as usize];
    }
    // A CanFrame's length is at most 8, so this is one digit.
    out[1 + id_digits] = HEX[frame.len() & 0xF];
    for (pair, byte) in out[2 + id_digits..needed - 1].chunks_exact_mut(2).zip(data) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xF)];
    }
    out[needed - 1] = b'\r';
    Ok(needed)
}

/// Something the adapter said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlcanEvent {
    /// A received frame. A timestamp suffix, if the adapter sent one, was checked and dropped: the
    /// host stamps frames on arrival.
    Frame(CanFrame),
    /// `\r`, `z\r` or `Z\r`: a command was accepted. Optional: see the module header.
    Ack,
    /// `\x07`: a command was refused.
    Nack,
}

/// A line from the adapter that could not be understood. The decoder has already dropped it and
/// goes on with the next line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlcanError {
    /// A character that should be a hex digit is not.
    BadHex(u8),
    /// The length digit is above 8 (CAN FD lengths are not supported).
    BadDlc(u8),
    /// The line's length matches its length digit neither without nor with a 4-digit timestamp.
    BadLength {
        kind: u8,
        len: usize,
    },
    IdOutOfRange {
        id: u32,
        extended: bool,
    },
    /// More than [`MAX_LINE_LEN`] bytes before a `\r`.
    LineTooLong,
    /// A line that starts with something other than `t`, `T`, `r`, `R` (or a bare `z`/`Z`): a reply
    /// to a query such as `V` or `F`, a CAN FD frame, or noise.
    UnexpectedLine(u8),
    /// A `\x07` arrived in the middle of a line; the partial line is dropped (a Nack follows).
    Interrupted,
}

impl fmt::Display for SlcanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "check the serial baud rate and that the adapter runs slcan firmware";
        match self {
            SlcanError::BadHex(b) => write!(f, "slcan line has {b:#04X} where a hex digit belongs; {HINT}"),
            SlcanError::BadDlc(d) => {
                write!(f, "slcan frame length {d} is above 8 (CAN FD is not supported); {HINT}")
            }
            SlcanError::BadLength { kind, len } => write!(
                f,
                "slcan '{}' line of {len} characters does not match its length digit; {HINT}",
                char::from(*kind)
            ),
            SlcanError::IdOutOfRange { id, extended } => {
                let bits = if *extended { 29 } else { 11 };
                write!(f, "slcan frame id {id:#X} does not fit in {bits} bits; {HINT}")
            }
            SlcanError::LineTooLong => {
                write!(f, "slcan line longer than {MAX_LINE_LEN} characters before a \\r; {HINT}")
            }
            SlcanError::UnexpectedLine(b) => write!(
                f,
                "slcan line starts with {b:#04X}, not a classic CAN frame (t, T, r, R); a query reply, CAN FD, or {HINT}"
            ),
            SlcanError::Interrupted => f.write_str(
                "slcan line interrupted by an error bell; the adapter refused a command mid-line",
            ),
        }
    }
}

impl std::error::Error for SlcanError {}

fn hex_digit(c: u8) -> Result<u8, SlcanError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(SlcanError::BadHex(c)),
    }
}

fn hex_value(digits: &[u8]) -> Result<u32, SlcanError> {
    digits.iter().try_fold(0u32, |acc, &c| Ok((acc << 4) | u32::from(hex_digit(c)?)))
}

fn parse_line(line: &[u8]) -> Result<SlcanEvent, SlcanError> {
    let Some((&kind, rest)) = line.split_first() else {
        return Ok(SlcanEvent::Ack);
    };
    let (extended, remote) = match kind {
        b't' => (false, false),
        b'T' => (true, false),
        b'r' => (false, true),
        b'R' => (true, true),
        b'z' | b'Z' if rest.is_empty() => return Ok(SlcanEvent::Ack),
        other => return Err(SlcanError::UnexpectedLine(other)),
    };
    let bad_length = SlcanError::BadLength { kind, len: line.len() };
    let id_digits = if extended { 8 } else { 3 };
    let (Some(id_hex), Some(&dlc_char)) = (rest.get(..id_digits), rest.get(id_digits)) else {
        return Err(bad_length);
    };
    let id = hex_value(id_hex)?;
    let dlc = hex_digit(dlc_char)?;
    if dlc > 8 {
        return Err(SlcanError::BadDlc(dlc));
    }
    let payload = &rest[id_digits + 1..];
    let data_digits = if remote { 0 } else { 2 * usize::from(dlc) };
    let (data_hex, timestamp_hex) = match payload.len().checked_sub(data_digits) {
        Some(0) => (payload, &[][..]),
        Some(4) => payload.split_at(data_digits),
        _ => return Err(bad_length),
    };
    hex_value(timestamp_hex)?;
    let max_id = if extended { MAX_EXTENDED_ID } else { MAX_STANDARD_ID };
    if id > max_id {
        return Err(SlcanError::IdOutOfRange { id, extended });
    }
    let mut data = [0u8; 8];
    for (byte, pair) in data.iter_mut().zip(data_hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    let frame = if remote {
        CanFrame::remote(id, extended, usize::from(dlc))
    } else if extended {
        CanFrame::extended(id, &data[..usize::from(dlc)])
    } else {
        CanFrame::standard(id, &data[..usize::from(dlc)])
    };
    // The id and length were range-checked above, so the frame always exists.
    frame.map(SlcanEvent::Frame).ok_or(SlcanError::IdOutOfRange { id, extended })
}

/// A streaming decoder for what an slcan adapter sends: feed it chunks as they arrive from the
/// serial port, in any split. Fixed-size and allocation-free. A bad line yields one error and the
/// decoder resynchronises at the next `\r`.
#[derive(Clone, Debug)]
pub struct SlcanDecoder {
    line: [u8; MAX_LINE_LEN],
    len: usize,
    /// The current line outgrew the buffer; its bytes are dropped until its `\r`.
    overlong: bool,
    /// A bell ended a partial line: its error was yielded, the Nack is still owed.
    nack_owed: bool,
}

impl Default for SlcanDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SlcanDecoder {
    pub const fn new() -> Self {
        Self { line: [0; MAX_LINE_LEN], len: 0, overlong: false, nack_owed: false }
    }

    /// Forgets any partial line (e.g. after reopening the port).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The events in `bytes`, in order. Bytes not consumed when the iterator is dropped are lost;
    /// a partial line at the end is kept for the next call.
    pub fn decode<'a>(&'a mut self, bytes: &'a [u8]) -> SlcanEvents<'a> {
        SlcanEvents { decoder: self, bytes }
    }

    fn end_line(&mut self) -> Result<SlcanEvent, SlcanError> {
        let result = if self.overlong { Err(SlcanError::LineTooLong) } else { parse_line(&self.line[..self.len]) };
        self.len = 0;
        self.overlong = false;
        result
    }

    fn push(&mut self, byte: u8) -> Option<Result<SlcanEvent, SlcanError>> {
        match byte {
            b'\r' => Some(self.end_line()),
            BELL if self.len == 0 && !self.overlong => Some(Ok(SlcanEvent::Nack)),
            BELL => {
                let error = if self.overlong { SlcanError::LineTooLong } else { SlcanError::Interrupted };
                self.len = 0;
                self.overlong = false;
                self.nack_owed = true;
                Some(Err(error))
            }
            // Tolerate `\r\n` line ends from adapters or terminals that send them.
            b'\n' if self.len == 0 && !self.overlong => None,
            _ => {
                match self.line.get_mut(self.len) {
                    Some(slot) => {
                        *slot = byte;
                        self.len += 1;
                    }
                    None => self.overlong = true,
                }
                None
            }
        }
    }
}

/// Iterator returned by [`SlcanDecoder::decode`].
pub struct SlcanEvents<'a> {
    decoder: &'a mut SlcanDecoder,
    bytes: &'a [u8],
}

impl Iterator for SlcanEvents<'_> {
    type Item = Result<SlcanEvent, SlcanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.decoder.nack_owed {
            self.decoder.nack_owed = false;
            return Some(Ok(SlcanEvent::Nack));
        }
        while let Some((&byte, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            if let Some(event) = self.decoder.push(byte) {
                return Some(event);
            }
        }
        None
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

    fn encode(frame: &CanFrame) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let n = encode_frame(frame, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn decode_all(chunks: &[&[u8]]) -> Vec<Result<SlcanEvent, SlcanError>> {
        let mut decoder = SlcanDecoder::new();
        chunks.iter().flat_map(|c| decoder.decode(c).collect::<Vec<_>>()).collect()
    }

    fn frame_event(frame: CanFrame) -> Result<SlcanEvent, SlcanError> {
        Ok(SlcanEvent::Frame(frame))
    }

    #[test]
    fn enabling_motor_1_at_1_mbit_matches_the_spec() {
        let mut buf = [0u8; 64];
        let mut n = encode_bitrate(1_000_000, &mut buf).unwrap();
        n += encode_open(&mut buf[n..]).unwrap();
        let enable = super::super::mit::special_frame(1, super::super::mit::Special::Enable).unwrap();
        n += encode_frame(&enable, &mut buf[n..]).unwrap();
        assert_eq!(&buf[..n], b"S8\rO\rt0018FFFFFFFFFFFFFFFC\r");
        assert_eq!(encode_close(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"C\r");
    }

    #[test]
    fn bitrates_map_to_their_codes_and_others_are_refused() {
        let mut buf = [0u8; 3];
        for (n, bps) in crate::types::bus::SLCAN_BITRATES_BPS.iter().enumerate() {
            assert_eq!(encode_bitrate(*bps, &mut buf), Ok(3));
            assert_eq!(buf, [b'S', b'0' + n as u8, b'\r']);
        }
        assert_eq!(bitrate_code(125_000), Ok(4));
        assert_eq!(encode_bitrate(83_333, &mut buf), Err(EncodeError::UnsupportedBitrate(83_333)));
        assert!(EncodeError::UnsupportedBitrate(1).to_string().contains("1000000"));
    }

    #[test]
    fn encodes_every_frame_kind() {
        let ext = CanFrame::extended(0x1234_5678, &[0x11, 0x22]).unwrap();
        assert_eq!(encode(&ext), b"T1234567821122\r");
        assert_eq!(encode(&CanFrame::remote(0x123, false, 0).unwrap()), b"r1230\r");
        assert_eq!(encode(&CanFrame::remote(0x1, true, 4).unwrap()), b"R000000014\r");
        assert_eq!(encode(&CanFrame::standard(0x7FF, &[]).unwrap()), b"t7FF0\r");
        let longest = CanFrame::extended(0x1FFF_FFFF, &[0xAB; 8]).unwrap();
        assert_eq!(encode(&longest).len(), MAX_ENCODED_LEN);
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let f = CanFrame::standard(1, &[1, 2, 3]).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(encode_frame(&f, &mut buf), Err(EncodeError::BufferTooSmall { needed: 12, available: 8 }));
        assert_eq!(encode_open(&mut buf[..1]), Err(EncodeError::BufferTooSmall { needed: 2, available: 1 }));
    }

    #[test]
    fn decodes_frames_acks_and_nacks() {
        let events = decode_all(&[b"t0018FFFFFFFFFFFFFFFC\r\rz\rZ\r\x07r7FF8\rT1FFFFFFF0\r"]);
        assert_eq!(
            events,
            vec![
                frame_event(CanFrame::standard(1, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC]).unwrap()),
                Ok(SlcanEvent::Ack),
                Ok(SlcanEvent::Ack),
                Ok(SlcanEvent::Ack),
                Ok(SlcanEvent::Nack),
                frame_event(CanFrame::remote(0x7FF, false, 8).unwrap()),
                frame_event(CanFrame::extended(0x1FFF_FFFF, &[]).unwrap()),
            ]
        );
    }

    #[test]
    fn accepts_lowercase_hex_crlf_and_timestamp_suffixes() {
        let events = decode_all(&[b"t1232abcd\r\n", b"t1232ABCDEA60\r", b"r0013ffff\r", b"T000000010EA5F\r"]);
        let f = CanFrame::standard(0x123, &[0xAB, 0xCD]).unwrap();
        assert_eq!(
            events,
            vec![
                frame_event(f),
                frame_event(f),
                frame_event(CanFrame::remote(1, false, 3).unwrap()),
                frame_event(CanFrame::extended(1, &[]).unwrap()),
            ]
        );
    }

    #[test]
    fn bad_lines_are_typed_errors_and_the_next_line_still_decodes() {
        let good = b"t0010\r";
        let cases: [(&[u8], SlcanError); 10] = [
            (b"t00G0\r", SlcanError::BadHex(b'G')),
            (b"t0019\r", SlcanError::BadDlc(9)),
            (b"t00120\r", SlcanError::BadLength { kind: b't', len: 6 }),
            (b"t0012001\r", SlcanError::BadLength { kind: b't', len: 8 }),
            (b"t00\r", SlcanError::BadLength { kind: b't', len: 3 }),
            (b"t8000\r", SlcanError::IdOutOfRange { id: 0x800, extended: false }),
            (b"T200000000\r", SlcanError::IdOutOfRange { id: 0x2000_0000, extended: true }),
            (b"t0010XYZW\r", SlcanError::BadHex(b'X')),
            (b"V1013\r", SlcanError::UnexpectedLine(b'V')),
            (&[b't'; 40], SlcanError::LineTooLong),
        ];
        for (bad, error) in cases {
            let mut line = bad.to_vec();
            if line.last() != Some(&b'\r') {
                line.push(b'\r');
            }
            let events = decode_all(&[&line, good]);
            assert_eq!(events, vec![Err(error), frame_event(CanFrame::standard(1, &[]).unwrap())], "{line:?}");
        }
    }

    #[test]
    fn a_bell_mid_line_drops_the_line_and_still_nacks() {
        let mut decoder = SlcanDecoder::new();
        // The iterator is dropped after the error: the owed Nack comes with the next call.
        assert_eq!(decoder.decode(b"t00").collect::<Vec<_>>(), vec![]);
        assert_eq!(decoder.decode(b"\x07").next(), Some(Err(SlcanError::Interrupted)));
        assert_eq!(
            decoder.decode(b"t0010\r").collect::<Vec<_>>(),
            vec![Ok(SlcanEvent::Nack), frame_event(CanFrame::standard(1, &[]).unwrap())]
        );
    }

    #[test]
    fn errors_tell_the_user_what_to_check() {
        assert!(SlcanError::LineTooLong.to_string().contains("baud rate"));
        assert!(SlcanError::BadDlc(12).to_string().contains("CAN FD"));
    }

    fn arb_frame() -> impl Strategy<Value = CanFrame> {
        (any::<bool>(), any::<bool>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..=8), 0usize..=8).prop_map(
            |(extended, remote, id, data, rlen)| {
                let id = if extended { id & MAX_EXTENDED_ID } else { id & MAX_STANDARD_ID };
                match (remote, extended) {
                    (true, _) => CanFrame::remote(id, extended, rlen),
                    (false, true) => CanFrame::extended(id, &data),
                    (false, false) => CanFrame::standard(id, &data),
                }
                .unwrap()
            },
        )
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

    /// Bytes that reach the decoder's deeper paths more often than uniform bytes do.
    fn slcan_ish_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
        let alphabet: Vec<u8> = b"tTrRzZV0123456789ABCDEFabcdefG\r\r\r\n\x07\x00\xFF".to_vec();
        prop::collection::vec(prop_oneof![3 => prop::sample::select(alphabet), 1 => any::<u8>()], 0..max_len)
    }

    proptest! {
        /// Encode then decode gives back the identical frame, however the bytes are split, with or
        /// without a timestamp suffix.
        #[test]
        fn frames_round_trip_exactly(
            frames in prop::collection::vec((arb_frame(), prop::option::of(any::<u16>())), 1..8),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = Vec::new();
            for (frame, timestamp) in &frames {
                let mut line = encode(frame);
                if let Some(ts) = timestamp {
                    line.pop();
                    line.extend_from_slice(format!("{ts:04X}\r").as_bytes());
                }
                stream.extend_from_slice(&line);
            }
            let events = decode_all(&chunked(&stream, &cuts));
            let expected: Vec<_> = frames.iter().map(|(f, _)| frame_event(*f)).collect();
            prop_assert_eq!(events, expected);
        }

        /// After any garbage and a `\r`, a valid line is decoded.
        #[test]
        fn a_frame_after_garbage_is_recovered(
            garbage in slcan_ish_bytes(100),
            frame in arb_frame(),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = garbage;
            stream.push(b'\r');
            stream.extend_from_slice(&encode(&frame));
            let events = decode_all(&chunked(&stream, &cuts));
            prop_assert_eq!(events.last(), Some(&frame_event(frame)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Any bytes, any split: no panic, and the same events as when fed in one piece.
        #[test]
        fn fuzz_decoder_never_panics_and_ignores_chunking(
            bytes in prop_oneof![slcan_ish_bytes(400), prop::collection::vec(any::<u8>(), 0..400)],
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = decode_all(&[&bytes]);
            let split = decode_all(&chunked(&bytes, &cuts));
            prop_assert_eq!(whole, split);
        }
    }
}
