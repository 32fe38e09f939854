//! Health of the sensor links, in atomics the receive threads write and anyone may read
//! (`locod sensors`, the supervisor): per-device counters that only grow and gauges that hold the
//! latest value.
//!
//! Not for: the threads themselves (`imu`, `bridge`; started by `robot::sensors`).

use super::bridge::LinkState;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// Names of the board → host message kinds, in `McuMessage` variant order.
pub(crate) const BRIDGE_MESSAGE_KINDS: [&str; 7] = ["hello", "imu", "depth", "encoders", "heartbeat", "pong", "fault"];

/// Health of the IMU stream, whichever device delivers it.
#[derive(Debug, Default)]
pub struct ImuStats {
    /// Samples published.
    pub samples: AtomicU64,
    /// WitMotion: frames decoded, checksum errors, bytes outside frames, partial sample sets.
    pub frames: AtomicU64,
    pub checksum_errors: AtomicU64,
    pub(crate) skipped_bytes: AtomicU64,
    pub incomplete_sets: AtomicU64,
    /// WitMotion port: opened, lost, open now.
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub connected: AtomicBool,
}

/// `BridgeStats::board_protocol_version` before any Hello.
pub(crate) const NO_VERSION: u32 = u32::MAX;

/// Health of the firmware-bridge link. Counters only grow; gauges hold the latest value.
#[derive(Debug)]
pub struct BridgeStats {
    /// A `LinkState` as u8.
    pub state: AtomicU8,
    /// Frames decoded, per `BRIDGE_MESSAGE_KINDS`.
    pub messages: [AtomicU64; 7],
    /// Frames from a board that was refused (or has not said Hello yet), not used.
    pub ignored: AtomicU64,
    /// Depth frames from a sensor index no `[[depth.sensor]]` names.
    pub(crate) unknown_sensor: AtomicU64,
    pub cobs_errors: AtomicU64,
    pub crc_errors: AtomicU64,
    /// Bodies that are not a message this locod knows (newer variants included).
    pub postcard_errors: AtomicU64,
    pub(crate) overflows: AtomicU64,
    /// Frames lost according to sequence gaps, and backward jumps.
    pub seq_dropped: AtomicU64,
    pub(crate) seq_resyncs: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    /// The board's protocol version from its last Hello (`NO_VERSION` before one).
    pub board_protocol_version: AtomicU32,
    /// Hellos whose version differed from ours.
    pub version_mismatches: AtomicU64,
    /// Firmware version `major << 16 | minor << 8 | patch`.
    pub firmware_version: AtomicU32,
    pub pings_sent: AtomicU64,
    /// Ping/pong exchanges used by time sync.
    pub(crate) timesync_exchanges: AtomicU64,
    /// Host time minus MCU time (ns) at the newest exchange; valid when `timesync_bound_ns` > 0.
    pub(crate) timesync_offset_ns: AtomicI64,
    /// The estimator's error bound at the newest exchange, ns; 0 = no estimate yet.
    pub timesync_bound_ns: AtomicU64,
    /// MCU clock rate error, parts per billion.
    pub(crate) timesync_skew_ppb: AtomicI64,
    /// Whether sample timestamps use the mapped MCU time (else arrival time).
    pub timesync_converged: AtomicBool,
    pub(crate) last_fault_code: AtomicU32,
}

impl Default for BridgeStats {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(LinkState::Disconnected as u8),
            messages: Default::default(),
            ignored: AtomicU64::new(0),
            unknown_sensor: AtomicU64::new(0),
            cobs_errors: AtomicU64::new(0),
            crc_errors: AtomicU64::new(0),
            postcard_errors: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            seq_dropped: AtomicU64::new(0),
            seq_resyncs: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            board_protocol_version: AtomicU32::new(NO_VERSION),
            version_mismatches: AtomicU64::new(0),
            firmware_version: AtomicU32::new(0),
            pings_sent: AtomicU64::new(0),
            timesync_exchanges: AtomicU64::new(0),
            timesync_offset_ns: AtomicI64::new(0),
            timesync_bound_ns: AtomicU64::new(0),
            timesync_skew_ppb: AtomicI64::new(0),
            timesync_converged: AtomicBool::new(false),
            last_fault_code: AtomicU32::new(0),
        }
    }
}

impl BridgeStats {
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Relaxed))
    }

    pub fn message_count(&self, kind: usize) -> u64 {
        self.messages[kind].load(Relaxed)
    }

    /// Frames decoded of every kind.
    pub fn frames(&self) -> u64 {
        self.messages.iter().map(|m| m.load(Relaxed)).sum()
    }

    /// Frames that arrived broken: COBS, CRC, unknown body, overflow.
    pub fn decode_errors(&self) -> u64 {
        [&self.cobs_errors, &self.crc_errors, &self.postcard_errors, &self.overflows]
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    }
}

/// Health of every sensor thread, shared with whoever displays or logs it.
#[derive(Debug, Default)]
pub struct SensorStats {
    pub imu: ImuStats,
    pub bridge: BridgeStats,
}
