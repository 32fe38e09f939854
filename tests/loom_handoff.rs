//! Model-checks the lock-free handoffs with loom: the very source files the daemon uses,
//! compiled against loom's atomics and cells, under every interleaving loom explores.

// The handoff sources import their primitives from `super::sync`: at this crate's root that is
// the loom-backed module below.
mod sync {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    pub use loom::sync::Arc;
}
#[allow(dead_code)]
#[path = "../src/rt/spsc.rs"]
mod spsc;
#[allow(dead_code)]
#[path = "../src/rt/triple.rs"]
mod triple;

use spsc::spsc;
use triple::triple;

#[test]
fn triple_buffer_reads_whole_values_in_order() {
    loom::model(|| {
        let (mut w, mut r) = triple([0u32; 2]);
        let writer = loom::thread::spawn(move || {
            w.write([1, 1]);
            w.write([2, 2]);
        });
        let mut last = 0;
        for _ in 0..3 {
            let v = *r.latest();
            assert_eq!(v[0], v[1], "torn read");
            assert!(v[0] >= last, "went backwards");
            last = v[0];
        }
        writer.join().unwrap();
        assert_eq!(*r.latest(), [2, 2], "the last write is always visible after join");
    });
}

#[test]
fn spsc_delivers_in_order_without_loss_or_duplication() {
    loom::model(|| {
        let (mut p, mut c) = spsc::<u32>(2);
        let producer = loom::thread::spawn(move || {
            let mut sent = 0;
            for v in 1..=3 {
                if p.push(v).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            if let Some(v) = c.pop() {
                got.push(v);
            }
        }
        let sent = producer.join().unwrap();
        while let Some(v) = c.pop() {
            got.push(v);
        }
        assert_eq!(got.len(), sent);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    });
}
