//! locod: a real-time onboard controller daemon for learned locomotion controllers.
//!
//! Data flows one way: `io` (sensors) → `estimate` → `control` → `io` (actuators), with the
//! policy thread beside the loop and teleop (zenoh) talking to it through its inbox. `types` is the
//! ground floor every layer exchanges; `rt` holds the real-time machinery, `config` the typed
//! configuration, `robot` the drivers composed with their estimators. docs/ARCHITECTURE.md has the
//! map and the floors (which module may use which).

pub mod bench;
pub mod bringup;
pub mod config;
pub mod control;
pub mod daemon;
pub mod estimate;
pub mod finetune;
pub mod io;
pub mod log;
pub mod policy;
pub mod report;
pub mod robot;
pub mod rt;
pub mod sensors_view;
#[cfg(feature = "sim")]
pub mod sim;
pub mod teleop;
pub mod types;
