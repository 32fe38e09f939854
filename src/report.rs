//! Messages for people: to stderr, with sd-daemon priority prefixes when stderr is the journal.
//!
//! Only non-real-time threads report; the control loop emits events that the supervisor reports.

use std::fmt::Display;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

fn to_journal() -> bool {
    static J: OnceLock<bool> = OnceLock::new();
    *J.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some())
}

pub fn log(level: Level, message: impl Display) {
    if to_journal() {
        eprintln!("<{}>{message}", level as u8);
    } else {
        let tag = match level {
            Level::Error => "error: ",
            Level::Warning => "warning: ",
            Level::Info => "",
        };
        eprintln!("locod: {tag}{message}");
    }
}

pub fn info(message: impl Display) {
    log(Level::Info, message)
}

pub fn warn(message: impl Display) {
    log(Level::Warning, message)
}

pub fn error(message: impl Display) {
    log(Level::Error, message)
}

/// An error and its sources, outermost first, joined by ": ": what the journal shows of an error
/// that crossed module boundaries (each boundary's error names its step, the leaf says why).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
