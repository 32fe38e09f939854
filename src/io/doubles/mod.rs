//! Test doubles that speak the real interfaces: the in-memory robot (`mem`, also `kind = "mem"` in
//! a configuration) and an MIT-mode motor emulator on the other end of a bus (`motor_emulator`).
//!
//! Not for: anything a real robot runs.

pub mod mem;
pub mod motor_emulator;
