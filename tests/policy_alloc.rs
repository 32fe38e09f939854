//! A policy tick allocates nothing on the Rust side after warm-up (a counting global allocator
//! watches the student and the MPPI planner). What libtorch allocates inside the calls is counted
//! through an interposed `malloc` and reported, not asserted: it is libtorch's own business.

use locod::config::Config;
use locod::control::messages::{PolicyAction, Snapshot};
use locod::policy::load;
use locod::policy::mppi::MppiPlanner;
use locod::policy::student::Student;
use locod::policy::Policy;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

mod common;
#[allow(dead_code)] // each test crate uses part of it
mod test_models;

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

// Every malloc and posix_memalign in the process (libtorch's C++ `new` and tensor storage included)
// comes here while the test binary defines them: the executable's symbols are found before libc's.
static C_WATCHING: AtomicBool = AtomicBool::new(false);
static C_MALLOCS: AtomicU64 = AtomicU64::new(0);
static C_BYTES: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn __libc_malloc(size: usize) -> *mut libc::c_void;
    fn __libc_memalign(alignment: usize, size: usize) -> *mut libc::c_void;
}

/// libtorch's CPU allocator takes tensor storage from here (64-byte aligned).
///
/// # Safety
/// Same contract as C's `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut libc::c_void, alignment: usize, size: usize) -> i32 {
    if C_WATCHING.load(Ordering::Relaxed) {
        C_MALLOCS.fetch_add(1, Ordering::Relaxed);
        C_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
    // SAFETY: glibc's own allocator; `memptr` is valid per the caller's contract.
    let p = unsafe { __libc_memalign(alignment, size) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: see above.
    unsafe { *memptr = p };
    0
}

/// # Safety
/// Same contract as C's `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut libc::c_void {
    if C_WATCHING.load(Ordering::Relaxed) {
        C_MALLOCS.fetch_add(1, Ordering::Relaxed);
        C_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
    // SAFETY: glibc's own allocator, same contract.
    unsafe { __libc_malloc(size) }
}

fn config(name: &str) -> Config {
    Config::load(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)).unwrap()
}

fn snapshot(i: u64) -> Snapshot {
    let mut s = Snapshot { tick: i + 1, ..Default::default() };
    s.state.ang_vel_body_radps = [0.01 * i as f64, 0.0, 0.0];
    s.state.joints[0].q_rad = 0.6 + 0.001 * i as f64;
    s
}

/// Runs `ticks` policy ticks watched; returns (Rust allocations, C mallocs, C bytes) per tick.
fn watch(policy: &mut dyn Policy, ticks: u64) -> (u64, f64, f64) {
    let mut out = PolicyAction::default();
    for i in 0..5 {
        policy.act(&snapshot(i), None, &mut out).unwrap();
    }
    C_MALLOCS.store(0, Ordering::Relaxed);
    C_BYTES.store(0, Ordering::Relaxed);
    common::alloc::reset();
    C_WATCHING.store(true, Ordering::Relaxed);
    common::alloc::watch(true);
    for i in 0..ticks {
        policy.act(&snapshot(i), None, &mut out).unwrap();
        policy.prepare_next(); // as the policy thread does after publishing
    }
    common::alloc::watch(false);
    C_WATCHING.store(false, Ordering::Relaxed);
    let rust = common::alloc::count();
    let n = ticks as f64;
    (rust, C_MALLOCS.load(Ordering::Relaxed) as f64 / n, C_BYTES.load(Ordering::Relaxed) as f64 / n)
}

#[test]
fn policy_ticks_allocate_nothing_in_rust_and_libtorch_allocations_are_measured() {
    let cfg = config("student.toml");
    let opened = |cfg: &Config, name: &str| {
        load::open(&test_models::path(name).unwrap(), cfg, None, &[], tch::Device::Cpu).unwrap()
    };
    // The interposed malloc sees libtorch: a tensor allocation is counted.
    C_WATCHING.store(true, Ordering::Relaxed);
    let probe = tch::Tensor::zeros([4096], (tch::Kind::Float, tch::Device::Cpu));
    C_WATCHING.store(false, Ordering::Relaxed);
    drop(probe);
    let interposed = C_MALLOCS.load(Ordering::Relaxed) > 0;

    let mut student = Student::new(opened(&cfg, "student.pt"), &cfg).unwrap();
    let mut gru = Student::new(opened(&cfg, "student_gru.pt"), &cfg).unwrap();
    let mut mcfg = config("mppi.toml");
    mcfg.mppi.budget_ms = Some(1e6);
    let mut fused = MppiPlanner::new(opened(&mcfg, "world_model.pt"), &mcfg).unwrap();
    let mut stepped = MppiPlanner::new(opened(&mcfg, "world_model_stepped.pt"), &mcfg).unwrap();

    for (name, p, ticks) in [
        ("student", &mut student as &mut dyn Policy, 200),
        ("recurrent student", &mut gru, 200),
        ("mppi, fused rollout", &mut fused, 20),
        ("mppi, stepped rollout", &mut stepped, 20),
    ] {
        let (rust, c_mallocs, c_bytes) = watch(p, ticks);
        if interposed {
            println!("{name}: libtorch malloc per tick: {c_mallocs:.0} calls, {:.1} KiB", c_bytes / 1024.0);
        } else {
            println!("{name}: libtorch allocations not measurable here (malloc not interposed)");
        }
        assert_eq!(rust, 0, "{name}: {rust} Rust allocations in {ticks} ticks");
    }
}

/// The policy thread's side of a hot reload (`Cycle::switch`, then the new model's first ticks)
/// allocates nothing in Rust: the model was built on the reload thread, and the one it replaced
/// goes back there to be dropped. A model that fails its checks never reaches the handoff.
#[test]
fn a_model_switch_on_the_policy_thread_allocates_nothing_and_a_broken_model_never_arrives() {
    use locod::policy::reload::{Handoff, Outcome, Reloader, Request};
    use locod::policy::Cycle;
    use std::sync::Arc;
    let student_path = test_models::path("student.pt").unwrap();
    let gru_path = test_models::path("student_gru.pt").unwrap();
    let mut cfg = config("student.toml");
    // The broken file lives in the temporary directory: a reload may name models there.
    cfg.controller.reload_dirs = vec![std::env::temp_dir(), gru_path.parent().unwrap().to_path_buf()];
    let handoff = Arc::new(Handoff::default());
    let mut reloader = Reloader::new(&cfg, false, false, handoff.clone());
    let opened = load::open(&student_path, &cfg, None, &[], tch::Device::Cpu).unwrap();
    let mut policy: Box<dyn Policy> = Box::new(Student::new(opened, &cfg).unwrap());
    let mut cycle = Cycle::new(None, Some(handoff.clone()));
    let mut out = PolicyAction::default();
    for i in 0..5 {
        cycle.act(policy.as_mut(), &snapshot(i), &mut out).unwrap().unwrap();
    }
    assert!(!cycle.switch(&mut policy, 1), "nothing waits yet");

    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), b"not a model").unwrap();
    match reloader.load(&Request { model: Some(broken.path().to_path_buf()), controller: None, source: "test" }) {
        Outcome::Refused { reason, .. } => assert!(reason.contains("cannot load the model"), "{reason}"),
        o => panic!("a broken file was not refused: {o}"),
    }
    assert!(!cycle.switch(&mut policy, 2), "a refused model reached the handoff");

    match reloader.load(&Request { model: Some(gru_path.clone()), controller: None, source: "test" }) {
        Outcome::Ready { name, .. } => assert!(name.contains("recurrent"), "{name}"),
        o => panic!("{o}"),
    }
    common::alloc::reset();
    common::alloc::watch(true);
    let switched = cycle.switch(&mut policy, 3);
    for i in 5..25 {
        cycle.act(policy.as_mut(), &snapshot(i), &mut out).unwrap().unwrap();
        policy.prepare_next();
    }
    common::alloc::watch(false);
    assert!(switched);
    assert_eq!(common::alloc::count(), 0, "Rust allocations in a switch and 20 ticks after it");
    assert!(policy.name().contains("recurrent"), "{}", policy.name());
    let s = handoff.take_switched().expect("the switch is reported");
    assert_eq!((s.from_t_ns, s.model.path, s.controller.as_str()), (3, gru_path, "default"));
}
