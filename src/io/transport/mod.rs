//! Transports: what carries CAN frames and bytes. The bus traits (`bus`: a transmit handle that
//! never blocks, a receive handle that blocks with a timeout and stamps arrivals) and their
//! adapters: SocketCAN (`socketcan`, `socketcan_bus`), slcan over a serial port (`slcan_bus`,
//! `serial`), and the in-memory cable (`membus`); the frame type (`can`).
//!
//! Not for: what the frames mean (`protocol`).

pub mod bus;
pub mod can;
pub mod membus;
pub mod serial;
pub(crate) mod slcan_bus;
pub mod socketcan;
pub mod socketcan_bus;
