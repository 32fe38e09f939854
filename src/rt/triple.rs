//! Triple buffer: a wait-free latest-value handoff from one writer thread to one reader thread.
//!
//! The writer always has a private back buffer to fill; publishing swaps it with the shared
//! middle buffer in one atomic step. The reader swaps its front buffer with the middle one only
//! when something new was published. Neither side ever waits for the other, and the reader always
//! sees a whole value (never a torn mix of two writes). Values are moved, not shared, so `T` needs
//! only `Send`.
//!
//! Not for: streams where every value matters (use `spsc`).

use super::sync::{Arc, AtomicU8, Ordering, UnsafeCell};

const INDEX_MASK: u8 = 0b011;
const FRESH: u8 = 0b100;

struct Shared<T> {
    buffers: [UnsafeCell<T>; 3],
    /// Index of the middle buffer, plus FRESH when the writer published since the reader's last swap.
    middle: AtomicU8,
}

// SAFETY: each buffer is owned by exactly one side at a time (writer's back, reader's front, or the
// middle that neither touches); ownership moves only through the AcqRel swap on `middle`, which
// also orders the buffer contents.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: see above; the buffers themselves are plain `T: Send`.
unsafe impl<T: Send> Send for Shared<T> {}

pub struct Writer<T> {
    shared: Arc<Shared<T>>,
    back: u8,
}

pub struct Reader<T> {
    shared: Arc<Shared<T>>,
    front: u8,
}

/// A triple buffer whose three slots start as clones of `initial`.
pub fn triple<T: Clone + Send>(initial: T) -> (Writer<T>, Reader<T>) {
    let shared = Arc::new(Shared {
        buffers: [UnsafeCell::new(initial.clone()), UnsafeCell::new(initial.clone()), UnsafeCell::new(initial)],
        middle: AtomicU8::new(1),
    });
    (Writer { shared: shared.clone(), back: 0 }, Reader { shared, front: 2 })
}

impl<T: Send> Writer<T> {
    /// The buffer the next `publish` will hand over. It holds an older value (not necessarily the
    /// last one published): overwrite every field you care about.
    pub fn back_mut(&mut self) -> &mut T {
        // SAFETY: `back` is owned by the writer alone until the swap in `publish`.
        self.shared.buffers[self.back as usize].with_mut(|p| unsafe { &mut *p })
    }

    /// Publishes the back buffer and takes the old middle one as the new back buffer.
    pub fn publish(&mut self) {
        let old = self.shared.middle.swap(self.back | FRESH, Ordering::AcqRel);
        self.back = old & INDEX_MASK;
    }

    /// Writes `value` into the back buffer and publishes it.
    pub fn write(&mut self, value: T) {
        *self.back_mut() = value;
        self.publish();
    }
}

impl<T: Send> Reader<T> {
    /// Takes the newest published value if there is one; returns `true` when it is new since the
    /// last call.
    pub fn update(&mut self) -> bool {
        if self.shared.middle.load(Ordering::Relaxed) & FRESH == 0 {
            return false;
        }
        let old = self.shared.middle.swap(self.front, Ordering::AcqRel);
        self.front = old & INDEX_MASK;
        true
    }

    /// The value taken by the last `update` (the initial value before any).
    pub fn get(&self) -> &T {
        // SAFETY: `front` is owned by the reader alone until its next swap in `update`.
        self.shared.buffers[self.front as usize].with(|p| unsafe { &*p })
    }

    /// `update` then `get`.
    pub fn latest(&mut self) -> &T {
        self.update();
        self.get()
    }
}
