//! Real-time infrastructure: time, the deadline scheduler, timing histograms, thread set-up,
//! lock-free handoffs between threads, and systemd integration.
//!
//! Not for: anything that knows about robots.

pub mod clock;
pub(crate) mod hist;
pub mod sched;
pub mod spsc;
pub mod sync;
pub mod systemd;
pub mod thread;
pub mod triple;

#[cfg(test)]
mod handoff_tests;
