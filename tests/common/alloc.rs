//! A counting global allocator for the zero-allocation tests: it counts the allocations the
//! current thread makes while it is watched (`watch(true)`), and defers to the system allocator.
//! A test binary installs it with
//! `#[global_allocator] static ALLOC: common::alloc::Counting = common::alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Starts or stops counting this thread's allocations.
pub fn watch(on: bool) {
    WATCHING.with(|w| w.set(on));
}

/// Allocations counted on this thread so far.
pub fn count() -> u64 {
    COUNT.with(|c| c.get())
}

pub fn reset() {
    COUNT.with(|c| c.set(0));
}

fn note() {
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            COUNT.with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: defers to the system allocator; only counts calls made while this thread is watched.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
