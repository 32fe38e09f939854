//! A bounded single-producer single-consumer ring of fixed-size records.
//!
//! The producer (a real-time thread) never waits: when the ring is full, `push` hands the value
//! back and the caller counts a drop. The consumer drains at its own pace. The capacity is
//! allocated once, at construction.
//!
//! Not for: latest-value handoffs where old values are worthless (use `triple`).

use super::sync::{Arc, AtomicUsize, Ordering, UnsafeCell};
use std::mem::MaybeUninit;

struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Next slot the consumer reads; only the consumer stores it.
    head: AtomicUsize,
    /// Next slot the producer writes; only the producer stores it.
    tail: AtomicUsize,
}

// SAFETY: a slot is written by the producer only while it is outside [head, tail) and read by the
// consumer only while inside it; the Release store of tail/head after the access and the Acquire
// load before it order the slot contents between the two threads.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let cap = self.slots.len();
        for i in head..tail {
            // SAFETY: slots in [head, tail) hold initialised values not yet taken; we have `&mut self`.
            self.slots[i % cap].with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

pub struct Producer<T> {
    ring: Arc<Ring<T>>,
}

pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
}

/// A ring holding at most `capacity` values (at least 1).
pub fn spsc<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(1);
    let slots = (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let ring = Arc::new(Ring { slots, head: AtomicUsize::new(0), tail: AtomicUsize::new(0) });
    (Producer { ring: ring.clone() }, Consumer { ring })
}

impl<T: Send> Producer<T> {
    /// Appends `value`, or returns it when the ring is full. Never blocks, never allocates.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        let ring = &*self.ring;
        let tail = ring.tail.load(Ordering::Relaxed);
        let head = ring.head.load(Ordering::Acquire);
        let cap = ring.slots.len();
        if tail - head == cap {
            return Err(value);
        }
        // SAFETY: the slot at `tail` is outside [head, tail), so the consumer does not touch it.
        ring.slots[tail % cap].with_mut(|p| unsafe { (*p).write(value) });
        ring.tail.store(tail + 1, Ordering::Release);
        Ok(())
    }

    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }
}

impl<T: Send> Consumer<T> {
    /// Takes the oldest value, if any.
    pub fn pop(&mut self) -> Option<T> {
        let ring = &*self.ring;
        let head = ring.head.load(Ordering::Relaxed);
        let tail = ring.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let cap = ring.slots.len();
        // SAFETY: the slot at `head` is inside [head, tail): initialised by the producer, whose
        // Release store of `tail` we acquired; the producer will not reuse it until `head` moves.
        let value = ring.slots[head % cap].with(|p| unsafe { (*p).assume_init_read() });
        ring.head.store(head + 1, Ordering::Release);
        Some(value)
    }

    pub fn len(&self) -> usize {
        let tail = self.ring.tail.load(Ordering::Acquire);
        tail - self.ring.head.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
