//! Framing: `COBS( postcard(frame) ++ CRC-32C little-endian ) ++ 0x00`, an encoder into a caller's buffer
//! and a streaming decoder that resynchronises on the next 0x00 after any garbage.
//!
//! For: turning [`Frame`]s into bytes and a byte stream back into frames, allocation-free, on both ends.
//! Not for: reading the port, deciding what to do about a bad frame (the caller counts and moves on), or
//! sequence tracking (see [`crate::SeqTracker`]).

use core::fmt;
use core::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cobs;
use crate::messages::{Frame, RxCounters};

/// CRC-32C (Castagnoli), as used by iSCSI: good error detection on short packets and hardware support on
/// many MCUs.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// Bytes of CRC after the postcard body.
pub const CRC_LEN: usize = 4;
/// Upper bound of a postcard-encoded [`Frame`] of either direction (the largest, an 8x8
/// [`crate::Depth`] with worst-case varints, is 273 bytes; the rest is room for appended variants).
pub const MAX_MESSAGE_LEN: usize = 320;
/// Upper bound of an encoded frame on the wire, delimiter included.
pub const MAX_FRAME_LEN: usize = cobs::max_encoded_len(MAX_MESSAGE_LEN + CRC_LEN) + 1;

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The message serialises to more than [`MAX_MESSAGE_LEN`] bytes (or postcard failed otherwise).
    MessageTooLarge,
    /// The output buffer cannot hold the encoded frame; [`MAX_FRAME_LEN`] always suffices.
    BufferTooSmall { needed: usize, available: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::MessageTooLarge => {
                write!(f, "message serialises to more than {MAX_MESSAGE_LEN} bytes")
            }
            EncodeError::BufferTooSmall { needed, available } => {
                write!(f, "frame needs up to {needed} bytes of output buffer, got {available}")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why one 0x00-delimited packet did not yield a frame. The decoder has already resynchronised: the next
/// packet is decoded afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid COBS (line noise, or a packet that started mid-frame).
    Cobs(cobs::CobsError),
    /// The decoded packet is too short to hold a CRC and a message.
    TooShort { len: usize },
    /// CRC mismatch: `expected` is computed over the received body, `got` is the CRC the packet carried.
    Crc { expected: u32, got: u32 },
    /// CRC fine, but the body is not a message of this protocol (a version mismatch, or a variant appended
    /// by a newer peer).
    Postcard(postcard::Error),
    /// The message decoded but left bytes over (a version mismatch).
    TrailingBytes { extra: usize },
    /// More than the decoder's capacity arrived without a delimiter; `discarded` bytes were dropped.
    Overflow { discarded: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Cobs(cobs::CobsError::ZeroByte { at }) => {
                write!(f, "invalid COBS: zero byte at {at}")
            }
            DecodeError::Cobs(cobs::CobsError::Truncated { at }) => {
                write!(f, "invalid COBS: block at {at} runs past the packet end")
            }
            DecodeError::TooShort { len } => {
                write!(f, "packet of {len} bytes is too short for a frame")
            }
            DecodeError::Crc { expected, got } => {
                write!(f, "CRC mismatch: computed {expected:#010x}, packet carries {got:#010x}")
            }
            DecodeError::Postcard(e) => write!(f, "CRC ok but body does not decode ({e}); protocol version mismatch?"),
            DecodeError::TrailingBytes { extra } => {
                write!(f, "message decoded with {extra} bytes left over; protocol version mismatch?")
            }
            DecodeError::Overflow { discarded } => {
                write!(f, "no delimiter within decoder capacity; discarded {discarded} bytes")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// Encodes `frame` into `out` (delimiter included) and returns the number of bytes written.
pub fn encode_frame<M: Serialize>(frame: &Frame<M>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut raw = [0u8; MAX_MESSAGE_LEN + CRC_LEN];
    let body_len =
        postcard::to_slice(frame, &mut raw[..MAX_MESSAGE_LEN]).map_err(|_| EncodeError::MessageTooLarge)?.len();
    let crc = CRC32C.checksum(&raw[..body_len]);
    let raw_len = body_len + CRC_LEN;
    raw[body_len..raw_len].copy_from_slice(&crc.to_le_bytes());

    let needed = cobs::max_encoded_len(raw_len) + 1;
    if out.len() < needed {
        return Err(EncodeError::BufferTooSmall { needed, available: out.len() });
    }
    let n = cobs::encode(&raw[..raw_len], &mut out[..needed - 1])
        .map_err(|_| EncodeError::BufferTooSmall { needed, available: out.len() })?;
    out[n] = 0;
    Ok(n + 1)
}

/// Streaming decoder of frames carrying `M`, with a fixed buffer of `N` bytes (the largest encoded packet
/// it accepts). Feed it bytes in any chunking; each 0x00 ends a packet and yields one result. Empty
/// packets (repeated 0x00) are skipped, so a sender may emit a lone 0x00 to flush the receiver.
pub struct FrameDecoder<M, const N: usize = MAX_FRAME_LEN> {
    buf: [u8; N],
    len: usize,
    /// Bytes dropped since the buffer overflowed; `Some` until the next delimiter.
    overflow: Option<usize>,
    counters: RxCounters,
    _message: PhantomData<fn() -> M>,
}

impl<M: DeserializeOwned, const N: usize> Default for FrameDecoder<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: DeserializeOwned, const N: usize> FrameDecoder<M, N> {
    pub const fn new() -> Self {
        FrameDecoder { buf: [0; N], len: 0, overflow: None, counters: zero_counters(), _message: PhantomData }
    }

    /// Counts of good frames and of each kind of error so far.
    pub fn counters(&self) -> RxCounters {
        self.counters
    }

    /// Drops any partial packet (for example after reopening the port).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = None;
    }

    /// Pushes one byte; returns a result when it completes a non-empty packet.
    pub fn push_byte(&mut self, byte: u8) -> Option<Result<Frame<M>, DecodeError>> {
        if byte != 0 {
            if let Some(discarded) = self.overflow.as_mut() {
                *discarded += 1;
            } else if self.len == N {
                self.overflow = Some(N + 1);
                self.len = 0;
            } else {
                self.buf[self.len] = byte;
                self.len += 1;
            }
            return None;
        }
        if let Some(discarded) = self.overflow.take() {
            self.counters.overflows = self.counters.overflows.wrapping_add(1);
            return Some(Err(DecodeError::Overflow { discarded }));
        }
        if self.len == 0 {
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        let result = decode_packet(&mut self.buf[..len]);
        let counter = match &result {
            Ok(_) => &mut self.counters.frames_ok,
            Err(DecodeError::Cobs(_)) | Err(DecodeError::TooShort { .. }) => &mut self.counters.cobs_errors,
            Err(DecodeError::Crc { .. }) => &mut self.counters.crc_errors,
            Err(DecodeError::Postcard(_)) | Err(DecodeError::TrailingBytes { .. }) => {
                &mut self.counters.postcard_errors
            }
            Err(DecodeError::Overflow { .. }) => &mut self.counters.overflows,
        };
        *counter = counter.wrapping_add(1);
        Some(result)
    }

    /// Iterates over the results completed by `bytes`. Bytes are consumed as the iterator advances: drive it
    /// to the end (a `for` loop does) or bytes after the last result taken are never seen.
    pub fn feed<'a>(&'a mut self, bytes: &'a [u8]) -> Feed<'a, M, N> {
        Feed { decoder: self, bytes }
    }
}

const fn zero_counters() -> RxCounters {
    RxCounters { frames_ok: 0, cobs_errors: 0, crc_errors: 0, postcard_errors: 0, overflows: 0 }
}

fn decode_packet<M: DeserializeOwned>(packet: &mut [u8]) -> Result<Frame<M>, DecodeError> {
    let len = cobs::decode_in_place(packet).map_err(DecodeError::Cobs)?;
    // Smallest frame: 1-byte seq, 1-byte time, 1-byte variant tag.
    if len < CRC_LEN + 3 {
        return Err(DecodeError::TooShort { len });
    }
    let (body, crc_bytes) = packet[..len].split_at(len - CRC_LEN);
    let got = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let expected = CRC32C.checksum(body);
    if expected != got {
        return Err(DecodeError::Crc { expected, got });
    }
    let (frame, rest) = postcard::take_from_bytes::<Frame<M>>(body).map_err(DecodeError::Postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() });
    }
    Ok(frame)
}

/// Iterator returned by [`FrameDecoder::feed`].
pub struct Feed<'a, M, const N: usize> {
    decoder: &'a mut FrameDecoder<M, N>,
    bytes: &'a [u8],
}

impl<M, const N: usize> Feed<'_, M, N> {
    /// Bytes not yet pushed into the decoder.
    pub fn remaining(&self) -> &[u8] {
        self.bytes
    }
}

impl<M: DeserializeOwned, const N: usize> Iterator for Feed<'_, M, N> {
    type Item = Result<Frame<M>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((&byte, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            if let Some(result) = self.decoder.push_byte(byte) {
                return Some(result);
            }
        }
        None
    }
}
