//! The control loop's inbox. Other threads (teleop, the CLI, the policy thread, tests) write
//! through a `Commander`; the control thread reads through `Inputs`, lock-free.
//!
//! The `Commander` side serialises its writers with a mutex that only non-real-time threads ever
//! take; the control thread only reads triple buffers and atomics. E-stops are counted, not
//! overwritten, so an e-stop can never be lost behind a later request.

use super::messages::{ModeRequest, PolicyAction, VelocityMsg};
use crate::rt::clock::monotonic_ns;
use crate::rt::triple::{self, Reader, Writer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct RequestMsg {
    seq: u64,
    request: Option<ModeRequest>,
}

struct Writers {
    request: Writer<RequestMsg>,
    next_seq: u64,
    teleop: Writer<VelocityMsg>,
    autonomy: Writer<VelocityMsg>,
}

/// The writing side, for any number of non-real-time threads.
#[derive(Clone)]
pub struct Commander {
    writers: Arc<Mutex<Writers>>,
    estops: Arc<AtomicU64>,
}

/// The reading side, owned by the control thread.
pub struct Inputs {
    request: Reader<RequestMsg>,
    seen_seq: u64,
    estops: Arc<AtomicU64>,
    seen_estops: u64,
    pub teleop: Reader<VelocityMsg>,
    pub autonomy: Reader<VelocityMsg>,
    pub policy: Option<Reader<PolicyAction>>,
}

/// The policy thread's writing side.
pub type ActionWriter = Writer<PolicyAction>;

pub fn inbox() -> (Commander, Inputs) {
    let (rw, rr) = triple::triple(RequestMsg::default());
    let (tw, tr) = triple::triple(VelocityMsg::default());
    let (aw, ar) = triple::triple(VelocityMsg::default());
    let estops = Arc::new(AtomicU64::new(0));
    let commander = Commander {
        writers: Arc::new(Mutex::new(Writers { request: rw, next_seq: 1, teleop: tw, autonomy: aw })),
        estops: estops.clone(),
    };
    let inputs = Inputs { request: rr, seen_seq: 0, estops, seen_estops: 0, teleop: tr, autonomy: ar, policy: None };
    (commander, inputs)
}

impl Inputs {
    /// Connects a policy thread; returns its writing side.
    pub fn connect_policy(&mut self) -> ActionWriter {
        let (w, r) = triple::triple(PolicyAction::default());
        self.policy = Some(r);
        w
    }

    /// A mode request not seen before, if any.
    pub(crate) fn take_request(&mut self) -> Option<ModeRequest> {
        let msg = *self.request.latest();
        if msg.seq == self.seen_seq {
            return None;
        }
        self.seen_seq = msg.seq;
        msg.request
    }

    /// True when an e-stop was requested since the last call.
    pub(crate) fn take_estop(&mut self) -> bool {
        let n = self.estops.load(Ordering::Acquire);
        let new = n != self.seen_estops;
        self.seen_estops = n;
        new
    }
}

impl Commander {
    fn with<R>(&self, f: impl FnOnce(&mut Writers) -> R) -> R {
        let mut w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut w)
    }

    pub fn request_mode(&self, request: ModeRequest) {
        self.with(|w| {
            let seq = w.next_seq;
            w.next_seq += 1;
            w.request.write(RequestMsg { seq, request: Some(request) });
        });
    }

    pub fn estop(&self) {
        self.estops.fetch_add(1, Ordering::AcqRel);
    }

    /// A teleop velocity command `[vx, vy, yaw rate]`, stamped now.
    pub fn teleop_velocity(&self, vel: [f64; 3]) {
        let t_ns = monotonic_ns();
        self.with(|w| w.teleop.write(VelocityMsg { vel, t_ns }));
    }

    /// An autonomy velocity command, stamped now.
    pub(crate) fn autonomy_velocity(&self, vel: [f64; 3]) {
        let t_ns = monotonic_ns();
        self.with(|w| w.autonomy.write(VelocityMsg { vel, t_ns }));
    }

    /// A teleop velocity command with an explicit timestamp (tests driving a manual clock).
    pub fn teleop_velocity_at(&self, vel: [f64; 3], t_ns: u64) {
        self.with(|w| w.teleop.write(VelocityMsg { vel, t_ns }));
    }

    pub fn autonomy_velocity_at(&self, vel: [f64; 3], t_ns: u64) {
        self.with(|w| w.autonomy.write(VelocityMsg { vel, t_ns }));
    }
}
