//! The link between locod and its sensor microcontroller: message types, framing, sequence tracking, and
//! (with the `std` feature) host-side time sync and a board emulator.
//!
//! For: both ends of the wire. The firmware depends on this crate with `default-features = false` and gets
//! a `#![no_std]` library that needs no allocator; the daemon uses the default `std` feature. Not for:
//! opening serial ports or scheduling (the caller owns I/O and time), or interpreting sensor data.
//!
//! Wire format: `COBS( postcard(Frame) ++ CRC-32C little-endian ) ++ 0x00`; see `README.md`.
//!
//! ```
//! use firmware_bridge::{encode_frame, FrameDecoder, Header, McuFrame, McuMessage, Pong, MAX_FRAME_LEN};
//!
//! let frame = McuFrame {
//!     header: Header { seq: 7, time_us: 1_000 },
//!     message: McuMessage::Pong(Pong { host_time_ns: 42, mcu_rx_time_us: 990 }),
//! };
//! let mut wire = [0u8; MAX_FRAME_LEN];
//! let n = encode_frame(&frame, &mut wire).unwrap();
//!
//! let mut decoder = FrameDecoder::<McuMessage>::new();
//! let decoded: Vec<_> = decoder.feed(&wire[..n]).collect();
//! assert_eq!(decoded, [Ok(frame)]);
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod cobs;
mod frame;
mod messages;
mod seq;

#[cfg(feature = "std")]
pub mod emulator;
#[cfg(feature = "std")]
pub mod timesync;

pub use frame::{
    encode_frame, DecodeError, EncodeError, Feed, FrameDecoder, CRC32C, CRC_LEN, MAX_FRAME_LEN, MAX_MESSAGE_LEN,
};
pub use messages::{
    fault_code, Configure, Depth, Encoders, Fault, Frame, Header, Heartbeat, Hello, HostFrame, HostMessage, Imu,
    McuFrame, McuMessage, Pong, RxCounters, DEVICE_NAME_LEN, MAX_DEPTH_ZONES, MAX_ENCODERS,
};
pub use seq::SeqTracker;

/// Version of the wire protocol, exchanged in [`Hello`] and [`HostMessage::HelloRequest`]. Bumped on any
/// change that is not appending an enum variant (a changed field, a reordered variant); the host refuses
/// to stream from a board whose version differs.
pub const PROTOCOL_VERSION: u16 = 1;
