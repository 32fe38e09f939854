//! Threaded tests of the handoffs with std's atomics (tests/loom_handoff.rs model-checks them).

use super::spsc::spsc;
use super::triple::triple;

#[test]
fn triple_buffer_reader_sees_latest_and_only_once() {
    let (mut w, mut r) = triple(0u64);
    assert!(!r.update());
    assert_eq!(*r.get(), 0);
    w.write(1);
    w.write(2);
    assert!(r.update());
    assert_eq!(*r.get(), 2);
    assert!(!r.update());
    assert_eq!(*r.latest(), 2);
}

#[test]
fn triple_buffer_never_tears_under_contention() {
    // Each value is an array whose elements must all be equal; a torn read would mix two writes.
    let (mut w, mut r) = triple([0u64; 16]);
    let writer = std::thread::spawn(move || {
        for i in 1..=200_000u64 {
            *w.back_mut() = [i; 16];
            w.publish();
        }
    });
    let mut last = 0;
    while last < 200_000 {
        let v = *r.latest();
        assert!(v.iter().all(|&x| x == v[0]), "torn read {v:?}");
        assert!(v[0] >= last, "went back in time: {} < {last}", v[0]);
        last = v[0];
    }
    writer.join().unwrap();
}

#[test]
fn spsc_is_fifo_and_reports_full() {
    let (mut p, mut c) = spsc::<u32>(3);
    assert_eq!(p.capacity(), 3);
    assert!(p.push(1).is_ok() && p.push(2).is_ok() && p.push(3).is_ok());
    assert_eq!(p.push(4), Err(4));
    assert_eq!(c.len(), 3);
    assert_eq!(c.pop(), Some(1));
    assert!(p.push(4).is_ok());
    assert_eq!((c.pop(), c.pop(), c.pop(), c.pop()), (Some(2), Some(3), Some(4), None));
    assert!(c.is_empty());
}

#[test]
fn spsc_transfers_everything_across_threads_in_order() {
    let (mut p, mut c) = spsc::<u64>(64);
    let producer = std::thread::spawn(move || {
        let mut dropped = 0u64;
        for i in 0..100_000u64 {
            while p.push(i).is_err() {
                dropped += 1;
                std::hint::spin_loop();
            }
        }
        dropped
    });
    let mut expected = 0;
    while expected < 100_000 {
        if let Some(v) = c.pop() {
            assert_eq!(v, expected);
            expected += 1;
        }
    }
    producer.join().unwrap();
}

#[test]
fn spsc_drops_values_left_in_the_ring() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let drops = Arc::new(AtomicUsize::new(0));
    struct D(Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (mut p, c) = spsc::<D>(4);
    for _ in 0..3 {
        assert!(p.push(D(drops.clone())).is_ok());
    }
    drop(p);
    drop(c);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}
