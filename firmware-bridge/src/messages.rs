//! The messages exchanged between the sensor microcontroller (MCU) and the host, and the frame header they
//! travel with.
//!
//! For: the data model of the link, shared verbatim by firmware and daemon. Not for: bytes on the wire
//! (see [`crate::frame`]) or interpreting the data (depth projection, estimation live in locod).
//!
//! # Wire compatibility
//!
//! postcard is not self-describing: an enum variant is sent as its index and a struct as its fields in
//! declaration order. Therefore:
//!
//! * the order of variants in [`McuMessage`] and [`HostMessage`] **is the wire format and is
//!   append-only**: new variants go at the end, existing ones are never reordered, removed or changed;
//! * a struct's fields are never reordered, added or removed without bumping [`crate::PROTOCOL_VERSION`].
//!
//! An old peer that receives an appended variant fails to decode that one frame
//! ([`crate::DecodeError::Postcard`]) and carries on with the next.

use serde::{Deserialize, Serialize};

/// Zones in the largest supported multi-zone ToF grid (8x8).
pub const MAX_DEPTH_ZONES: usize = 64;
/// Encoder channels one [`Encoders`] message can carry.
pub const MAX_ENCODERS: usize = 16;
/// Bytes in [`Hello::device_name`].
pub const DEVICE_NAME_LEN: usize = 16;

/// Precedes every message in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Per-direction sequence number, +1 for every frame the sender produced (wrapping). A gap means frames
    /// were lost; see [`crate::SeqTracker`].
    pub seq: u16,
    /// Sender's monotonic clock in µs when the frame was produced. For MCU → host frames this is the
    /// microcontroller clock since its boot (u64: never wraps in practice, and postcard's varint keeps it
    /// at 5 bytes for the first 9.5 hours). For host → MCU frames it is the host's CLOCK_MONOTONIC in µs,
    /// informational only.
    pub time_us: u64,
}

/// One unit on the wire: header plus message. `M` is [`McuMessage`] or [`HostMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Frame<M> {
    pub header: Header,
    pub message: M,
}

/// A frame sent by the microcontroller.
pub type McuFrame = Frame<McuMessage>;
/// A frame sent by the host.
pub type HostFrame = Frame<HostMessage>;

/// Microcontroller → host. **Variant order is the wire format: append only.**
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum McuMessage {
    /// 0: handshake, sent after boot and whenever the host sends [`HostMessage::HelloRequest`].
    Hello(Hello),
    /// 1: one inertial sample.
    Imu(Imu),
    /// 2: one multi-zone ToF frame from one sensor.
    Depth(Depth),
    /// 3: wheel / joint encoder counts, on robots that have them.
    Encoders(Encoders),
    /// 4: liveness and link health, about 10 Hz.
    Heartbeat(Heartbeat),
    /// 5: answer to [`HostMessage::Ping`], for time sync.
    Pong(Pong),
    /// 6: something went wrong on the microcontroller.
    Fault(Fault),
}

/// Host → microcontroller. **Variant order is the wire format: append only.**
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum HostMessage {
    /// 0: asks the microcontroller to send [`McuMessage::Hello`].
    HelloRequest {
        /// The host's [`crate::PROTOCOL_VERSION`].
        protocol_version: u16,
    },
    /// 1: the host's verdict on the microcontroller's Hello. Informational: the firmware streams either
    /// way (it may signal a rejected handshake on an LED).
    HelloAck { protocol_version: u16, accepted: bool },
    /// 2: time-sync probe; answered by [`McuMessage::Pong`].
    Ping {
        /// Host CLOCK_MONOTONIC in ns when the ping was sent; echoed back.
        host_time_ns: u64,
    },
    /// 3: change stream rates.
    Configure(Configure),
    /// 4: reboot the microcontroller (its clock and sequence numbers restart; a Hello follows).
    Reset,
}

/// Handshake payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The firmware's [`crate::PROTOCOL_VERSION`]; the host refuses a mismatch.
    pub protocol_version: u16,
    /// Firmware version, `[major, minor, patch]`.
    pub firmware_version: [u8; 3],
    /// Unique board id (for example the flash unique id).
    pub device_id: u64,
    /// Human-readable board name, ASCII, NUL-padded.
    pub device_name: [u8; DEVICE_NAME_LEN],
}

impl Hello {
    /// Builds the name field from `name`, truncated to [`DEVICE_NAME_LEN`] bytes.
    pub fn name_bytes(name: &str) -> [u8; DEVICE_NAME_LEN] {
        let mut out = [0u8; DEVICE_NAME_LEN];
        for (dst, src) in out.iter_mut().zip(name.bytes()) {
            *dst = src;
        }
        out
    }

    /// The name up to its first NUL, if it is UTF-8.
    pub fn name(&self) -> Option<&str> {
        let end = self.device_name.iter().position(|&b| b == 0).unwrap_or(DEVICE_NAME_LEN);
        core::str::from_utf8(&self.device_name[..end]).ok()
    }
}

/// One IMU sample in the IMU's own frame (the mounting rotation is configuration on the host).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Imu {
    /// Specific force, m/s² (reads +9.81 on z when level and still, z up).
    pub accel_mps2: [f32; 3],
    /// Angular rate, rad/s.
    pub gyro_radps: [f32; 3],
    /// Attitude `[w, x, y, z]` if the IMU or firmware fuses one.
    pub quat_wxyz: Option<[f32; 4]>,
    /// Die temperature, °C.
    pub temperature_c: f32,
}

/// One frame of a multi-zone ToF sensor (for example a VL53L8CX), row-major, row 0 at the top of the field
/// of view. A 4x4 frame uses the first 16 entries; the rest are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depth {
    /// Index of the sensor on this board (its pose is host configuration).
    pub sensor: u8,
    pub rows: u8,
    pub cols: u8,
    /// Per-zone distance in mm.
    #[serde(with = "fixed_array")]
    pub distance_mm: [u16; MAX_DEPTH_ZONES],
    /// Per-zone target status as the sensor reports it; see [`Depth::zone_valid`].
    #[serde(with = "fixed_array")]
    pub status: [u8; MAX_DEPTH_ZONES],
}

impl Depth {
    /// VL53L8CX statuses meaning "valid range" (5) and "valid, large pulse" (9).
    pub const VALID_STATUSES: [u8; 2] = [5, 9];

    /// An all-zero frame of the given shape.
    pub const fn empty(sensor: u8, rows: u8, cols: u8) -> Self {
        Depth { sensor, rows, cols, distance_mm: [0; MAX_DEPTH_ZONES], status: [0; MAX_DEPTH_ZONES] }
    }

    /// Number of zones in use: `rows * cols`, capped at [`MAX_DEPTH_ZONES`] (a peer may send nonsense).
    pub fn zone_count(&self) -> usize {
        (self.rows as usize * self.cols as usize).min(MAX_DEPTH_ZONES)
    }

    /// Distance of zone `i` in mm if it is in use and its status says valid.
    pub fn zone_valid(&self, i: usize) -> Option<u16> {
        if i < self.zone_count() && Self::VALID_STATUSES.contains(&self.status[i]) {
            Some(self.distance_mm[i])
        } else {
            None
        }
    }
}

/// Encoder counts; channels `len..` are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoders {
    /// Channels in use, at most [`MAX_ENCODERS`].
    pub len: u8,
    /// Raw accumulated counts (wrapping); counts per revolution are host configuration.
    #[serde(with = "fixed_array")]
    pub counts: [i32; MAX_ENCODERS],
}

impl Encoders {
    /// The channels in use (`len` capped at [`MAX_ENCODERS`]).
    pub fn active(&self) -> &[i32] {
        &self.counts[..(self.len as usize).min(MAX_ENCODERS)]
    }
}

/// Link-health counters kept by a [`crate::FrameDecoder`] (wrapping u32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxCounters {
    pub frames_ok: u32,
    pub cobs_errors: u32,
    pub crc_errors: u32,
    /// Undecodable message bodies (including unknown, newer variants) and trailing bytes.
    pub postcard_errors: u32,
    pub overflows: u32,
}

/// Periodic liveness message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Milliseconds since boot (wraps after 49 days; the header's `time_us` does not).
    pub uptime_ms: u32,
    /// What the microcontroller's decoder saw of the host's frames.
    pub rx: RxCounters,
    /// Frames the firmware could not send (transmit queue full).
    pub tx_dropped: u32,
    /// Failed sensor reads (bus errors, timeouts).
    pub sensor_errors: u32,
}

/// Answer to a ping. With the header's `time_us` (transmit time) this gives a four-timestamp exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's `host_time_ns`, echoed.
    pub host_time_ns: u64,
    /// Microcontroller clock in µs when the ping was received.
    pub mcu_rx_time_us: u64,
}

/// A microcontroller fault. Codes are `u16` constants in [`fault_code`] rather than an enum, so that new
/// firmware can add codes that old hosts still decode (and show as numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub code: u16,
    /// Code-specific detail (a bus error code, a sensor index, ...).
    pub detail: u32,
}

/// Values of [`Fault::code`]. Append only.
pub mod fault_code {
    pub const IMU_INIT: u16 = 1;
    pub const IMU_READ: u16 = 2;
    pub const TOF_INIT: u16 = 3;
    pub const TOF_READ: u16 = 4;
    pub const ENCODER: u16 = 5;
    pub const TX_OVERFLOW: u16 = 6;
    pub const WATCHDOG_RESET: u16 = 7;
    pub const BROWNOUT: u16 = 8;
}

/// Requested stream rates; 0 turns a stream off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configure {
    pub imu_rate_hz: u16,
    /// Per sensor.
    pub depth_rate_hz: u8,
    /// 4 (4x4) or 8 (8x8).
    pub depth_resolution: u8,
    pub encoder_rate_hz: u16,
    pub heartbeat_rate_hz: u8,
}

/// serde for `[T; N]` with any `N` (serde's derive stops at 32). Encodes as a tuple, which postcard writes
/// as the N elements back to back with no length prefix.
mod fixed_array {
    use core::fmt;
    use core::marker::PhantomData;
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::{Serialize, SerializeTuple, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(
        array: &[T; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for item in array {
            tuple.serialize_element(item)?;
        }
        tuple.end()
    }

    pub fn deserialize<'de, D, T, const N: usize>(deserializer: D) -> Result<[T; N], D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default + Copy,
    {
        struct ArrayVisitor<T, const N: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + Default + Copy, const N: usize> Visitor<'de> for ArrayVisitor<T, N> {
            type Value = [T; N];

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of {N} elements")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[T; N], A::Error> {
                let mut out = [T::default(); N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }

        deserializer.deserialize_tuple(N, ArrayVisitor::<T, N>(PhantomData))
    }
}
