//! SocketCAN as a bus: the raw socket's handles (`socketcan`) behind `BusTx` and `BusRx`, its
//! errors mapped to the bus's faults and states.
//!
//! Not for: the socket itself (`socketcan`), what the frames mean.

use super::bus::{BusRx, BusState, BusTx, RxItem, TxCounters, TxFault};
use super::can::CanFrame;
use std::time::Duration;

impl BusTx for super::socketcan::CanTx {
    fn send(&mut self, frame: &CanFrame) -> Result<(), TxFault> {
        use super::socketcan::TxError;
        super::socketcan::CanTx::send(self, frame).map_err(|e| match e {
            TxError::QueueFull => TxFault::QueueFull,
            TxError::BackingOff => TxFault::BackingOff,
            TxError::InterfaceDown { .. } | TxError::InterfaceGone { .. } | TxError::Io { .. } => TxFault::Down,
        })
    }

    fn counters(&self) -> TxCounters {
        let s = self.stats();
        TxCounters { sent: s.sent, dropped: s.dropped_queue_full + s.dropped_backoff + s.errors }
    }
}

impl BusRx for super::socketcan::CanRx {
    fn recv(&mut self, timeout: Duration) -> RxItem {
        use super::socketcan::{BusError, RxError, RxEvent};
        match super::socketcan::CanRx::recv(self, timeout) {
            Ok(RxEvent::Frame { frame, t_ns }) => RxItem::Frame(frame, t_ns),
            Ok(RxEvent::BusError { error, .. }) => match error {
                BusError::BusOff => RxItem::State(BusState::BusOff),
                BusError::ErrorPassive => RxItem::State(BusState::Passive),
                BusError::ErrorWarning => RxItem::State(BusState::Warning),
                BusError::Restarted | BusError::BackToErrorActive => RxItem::State(BusState::Active),
                _ => RxItem::Idle,
            },
            Ok(RxEvent::Timeout) | Err(RxError::Malformed(_)) => RxItem::Idle,
            Err(RxError::InterfaceDown { .. } | RxError::InterfaceGone { .. } | RxError::Io { .. }) => {
                std::thread::sleep(timeout); // nothing to read until the interface returns
                RxItem::State(BusState::Down)
            }
        }
    }
}
