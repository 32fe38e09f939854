//! Real-time thread set-up: SCHED_FIFO priority, CPU affinity, locked memory, prefaulted stack.
//!
//! Each step is attempted and its outcome reported, so a daemon without CAP_SYS_NICE or
//! RLIMIT_MEMLOCK (a laptop, a container, CI) says once what it could not do and runs anyway.
//! Not for: what the thread runs, or its timing.

use std::fmt;

/// What a thread asks for. `None` leaves that aspect as inherited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtSpec {
    pub(crate) fifo_priority: Option<i32>,
    pub cpu: Option<usize>,
}

/// What was achieved, step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtOutcome {
    pub(crate) fifo: Option<Result<i32, String>>,
    pub(crate) affinity: Option<Result<usize, String>>,
}

impl RtOutcome {
    pub(crate) fn all_granted(&self) -> bool {
        !matches!(self.fifo, Some(Err(_))) && !matches!(self.affinity, Some(Err(_)))
    }
}

impl fmt::Display for RtOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match &self.fifo {
            Some(Ok(p)) => parts.push(format!("SCHED_FIFO {p}")),
            Some(Err(e)) => parts.push(format!("SCHED_FIFO refused ({e}): running SCHED_OTHER")),
            None => parts.push("SCHED_OTHER".to_string()),
        }
        match &self.affinity {
            Some(Ok(c)) => parts.push(format!("cpu {c}")),
            Some(Err(e)) => parts.push(format!("affinity refused ({e}): any cpu")),
            None => {}
        }
        f.write_str(&parts.join(", "))
    }
}

fn errno_text() -> String {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) => "no permission: needs CAP_SYS_NICE or LimitRTPRIO".into(),
        _ => e.to_string(),
    }
}

/// Applies `spec` to the calling thread.
pub fn apply(spec: RtSpec) -> RtOutcome {
    let mut out = RtOutcome::default();
    if let Some(prio) = spec.fifo_priority {
        let param = libc::sched_param { sched_priority: prio };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        out.fifo = Some(if rc == 0 { Ok(prio) } else { Err(errno_text()) });
    }
    if let Some(cpu) = spec.cpu {
        // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let rc = if cpu < libc::CPU_SETSIZE as usize {
            // SAFETY: `cpu` is below CPU_SETSIZE, checked above.
            unsafe { libc::CPU_SET(cpu, &mut set) };
            // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the given size.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) }
        } else {
            -1
        };
        out.affinity = Some(if rc == 0 {
            Ok(cpu)
        } else if cpu >= online_cpus() {
            Err(format!("cpu {cpu} does not exist, this machine has {}", online_cpus()))
        } else {
            Err(errno_text())
        });
    }
    out
}

pub(crate) fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Locks current and future pages into RAM so the control path never takes a page fault.
pub fn lock_memory() -> Result<(), String> {
    // SAFETY: mlockall has no memory-safety preconditions.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(match e.raw_os_error() {
            Some(libc::ENOMEM) | Some(libc::EPERM) => {
                "RLIMIT_MEMLOCK too small: set LimitMEMLOCK=infinity or run with CAP_IPC_LOCK".into()
            }
            _ => e.to_string(),
        })
    }
}

/// Touches `bytes` of stack so that its pages are mapped (and, after `lock_memory`, locked)
/// before the first real-time cycle.
#[inline(never)]
pub(crate) fn prefault_stack(bytes: usize) {
    const CHUNK: usize = 4096;
    fn touch(depth: usize) {
        let mut page = [0u8; CHUNK];
        // Volatile so the compiler cannot elide the page.
        // SAFETY: `page` is a valid local array.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), depth as u8) };
        if depth > 0 {
            touch(depth - 1);
        }
        std::hint::black_box(&page);
    }
    touch(bytes / CHUNK);
}

/// Stack of the control and policy threads, and how much of it is touched before the first cycle.
pub(crate) const RT_STACK_BYTES: usize = 8 << 20;
pub(crate) const RT_PREFAULT_BYTES: usize = 512 << 10;

/// A thread that could not be started. Its source is the operating system's error.
#[derive(Debug)]
pub struct SpawnError {
    /// What the thread is, for people ("control", "IMU", "logger").
    pub what: String,
    pub source: std::io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start the {} thread", self.what)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How a named thread is set up before its body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Nothing: an ordinary thread.
    Plain,
    /// `apply(spec)` first (receive threads: one step below the control thread).
    Rt(RtSpec),
    /// `apply(spec)` on a large stack, `RT_PREFAULT_BYTES` of it touched first (control, policy).
    RtPrefaulted(RtSpec),
}

/// Starts the thread `name` (`what` names it in errors) with `setup` applied before `body`, which
/// gets what the set-up achieved. Every named thread of locod starts here.
pub fn spawn<T: Send + 'static>(
    name: &str,
    what: &str,
    setup: Setup,
    body: impl FnOnce(RtOutcome) -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, SpawnError> {
    let mut builder = std::thread::Builder::new().name(name.into());
    if let Setup::RtPrefaulted(_) = setup {
        builder = builder.stack_size(RT_STACK_BYTES);
    }
    builder
        .spawn(move || {
            let outcome = match setup {
                Setup::Plain => RtOutcome::default(),
                Setup::Rt(spec) => apply(spec),
                Setup::RtPrefaulted(spec) => {
                    let outcome = apply(spec);
                    prefault_stack(RT_PREFAULT_BYTES);
                    outcome
                }
            };
            body(outcome)
        })
        .map_err(|source| SpawnError { what: what.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_asked_nothing_reported() {
        let out = apply(RtSpec::default());
        assert_eq!(out, RtOutcome::default());
        assert!(out.all_granted());
        assert_eq!(out.to_string(), "SCHED_OTHER");
    }

    #[test]
    fn a_missing_cpu_is_refused_with_a_reason() {
        let out = std::thread::spawn(|| apply(RtSpec { fifo_priority: None, cpu: Some(4096) })).join().unwrap();
        let err = out.affinity.unwrap().unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn prefaulting_the_stack_returns() {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| prefault_stack(256 * 1024))
            .unwrap()
            .join()
            .unwrap();
    }
}
