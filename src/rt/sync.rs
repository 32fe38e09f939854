//! The synchronisation primitives the lock-free handoffs are written against.
//!
//! In the daemon these are std's. The loom test (tests/loom_handoff.rs) compiles the same handoff
//! source files against loom's versions of these names, so the model checker explores the very
//! code that runs on the robot. Keep `triple.rs` and `spsc.rs` importing only from here.

pub use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
pub use std::sync::Arc;

/// `std::cell::UnsafeCell` with loom's closure-based access API.
#[derive(Debug)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

impl<T> UnsafeCell<T> {
    pub fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
