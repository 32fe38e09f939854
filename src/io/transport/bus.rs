//! A CAN bus as the motors see it, whatever carries the frames: a transmit handle that the control
//! thread calls (never blocks), and a receive handle that the bus's receive thread blocks on.
//!
//! Implementations: SocketCAN (`socketcan_bus` over `socketcan`), an slcan adapter on a serial port
//! (`slcan_bus`), and an in-memory cable for tests and the simulator (`membus`). Not for: what the frames mean.

use super::can::CanFrame;
use crate::config::{Bus, BusKind};
use crate::io::OpenError;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Why a frame was not sent. `Copy`: it is returned on the control path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFault {
    /// The transmit queue (kernel, adapter or serial buffer) is full; the frame was dropped.
    QueueFull,
    /// Dropped without trying: a back-off after a full queue is still running.
    BackingOff,
    /// The interface is down or the device is gone.
    Down,
}

/// Frames sent and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub sent: u64,
    pub dropped: u64,
}

pub trait BusTx: Send {
    fn send(&mut self, frame: &CanFrame) -> Result<(), TxFault>;
    fn counters(&self) -> TxCounters;
}

/// The state of the bus as the controller reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BusState {
    Active = 0,
    Warning = 1,
    Passive = 2,
    BusOff = 3,
    /// Interface down or device unplugged.
    Down = 4,
}

impl BusState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => BusState::Active,
            1 => BusState::Warning,
            2 => BusState::Passive,
            3 => BusState::BusOff,
            _ => BusState::Down,
        }
    }
}

/// A bus state shared between the receive thread (writer) and the control thread (reader).
#[derive(Debug, Default)]
pub(crate) struct SharedBusState(AtomicU8);

impl SharedBusState {
    pub fn get(&self) -> BusState {
        BusState::from_u8(self.0.load(Ordering::Acquire))
    }
    pub fn set(&self, s: BusState) {
        self.0.store(s as u8, Ordering::Release);
    }
}

/// What one `recv` saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxItem {
    /// A frame and its CLOCK_MONOTONIC arrival time.
    Frame(CanFrame, u64),
    /// The bus changed state.
    State(BusState),
    /// Nothing within the timeout.
    Idle,
}

/// What a receive side dropped before any frame reached the motors, since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Lines (slcan) or frames that did not decode: garbage on the link.
    pub decode_errors: u64,
    /// Frames decoded but dropped because the receive queue was full.
    pub(crate) queue_dropped: u64,
}

pub trait BusRx: Send {
    fn recv(&mut self, timeout: Duration) -> RxItem;
    /// Counters since opening; a transport that cannot lose or garble frames keeps them at zero.
    fn counters(&self) -> RxCounters {
        RxCounters::default()
    }
}

/// The health of one bus's receive side, in atomics its receive thread writes and anyone may
/// read (`locod motors`, the supervisor's status line, telemetry). Counters only grow.
#[derive(Debug, Default)]
pub(crate) struct BusHealth {
    decode_errors: std::sync::atomic::AtomicU64,
    queue_dropped: std::sync::atomic::AtomicU64,
    unknown: std::sync::atomic::AtomicU64,
    malformed: std::sync::atomic::AtomicU64,
}

/// `BusHealth` read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusCounts {
    /// Lines or frames that did not decode (garbage on the link).
    pub decode_errors: u64,
    /// Frames no configured motor sent (another node, or spoofed).
    pub unknown: u64,
    /// Replies from a configured motor's id that did not decode.
    pub malformed: u64,
    /// Frames dropped because the receive queue was full.
    pub(crate) queue_dropped: u64,
}

impl BusHealth {
    /// Records the receive side's counters and the reply router's.
    pub fn record(&self, rx: RxCounters, unknown: u64, malformed: u64) {
        self.decode_errors.store(rx.decode_errors, Ordering::Relaxed);
        self.queue_dropped.store(rx.queue_dropped, Ordering::Relaxed);
        self.unknown.store(unknown, Ordering::Relaxed);
        self.malformed.store(malformed, Ordering::Relaxed);
    }

    pub fn counts(&self) -> BusCounts {
        BusCounts {
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
        }
    }
}

impl BusCounts {
    pub fn total(&self) -> u64 {
        self.decode_errors + self.unknown + self.malformed + self.queue_dropped
    }
}

impl std::fmt::Display for BusCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} undecodable, {} unknown frames, {} malformed replies, {} dropped (receive queue full)",
            self.decode_errors, self.unknown, self.malformed, self.queue_dropped
        )
    }
}

/// The two halves of an open bus.
pub(crate) type BusPair = (Box<dyn BusTx>, Box<dyn BusRx>);

/// Opens a configured bus. The in-memory robot has no bus (`kind = "mem"` is refused here).
pub fn open(bus: &Bus) -> Result<BusPair, OpenError> {
    let device = bus.device.as_deref().unwrap_or_default();
    let backoff = Duration::from_secs_f64(bus.tx_backoff_ms / 1e3);
    match bus.kind {
        BusKind::Socketcan => {
            let options = super::socketcan::CanOptions { tx_backoff: backoff, ..Default::default() };
            let (tx, rx) = super::socketcan::SocketCan::open(device, &options)
                .map_err(|e| OpenError::Bus { bus: bus.name.clone(), source: Box::new(e) })?;
            Ok((Box::new(tx), Box::new(rx)))
        }
        BusKind::Slcan => {
            let (tx, rx) = super::slcan_bus::open(device, bus.bitrate, backoff)
                .map_err(|e| OpenError::Bus { bus: bus.name.clone(), source: e.into() })?;
            Ok((Box::new(tx), Box::new(rx)))
        }
        BusKind::Mem => Err(OpenError::Bus {
            bus: bus.name.clone(),
            source: "kind \"mem\" is the in-memory robot, not a bus".into(),
        }),
    }
}
