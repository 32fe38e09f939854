//! Checks the SocketCAN transport against a real kernel CAN stack: meant to run inside the QEMU guest
//! of `scripts/qemu-can/run.sh`, which provides an interface `vcan0` that is up (override with
//! `--iface NAME`). Prints one `PASS`/`FAIL`/`INFO` line per check and exits 1 if any check failed.
//!
//! Everything goes through the transport's public API, except the two things it deliberately cannot
//! do: writing an error frame (done here with the `socketcan` crate, to play a faulty controller)
//! and taking the interface down (a `SIOCSIFFLAGS` ioctl).

use std::time::{Duration, Instant};

// The transport's own sources, compiled into this separate package rather than through the locod
// library (whose binaries link libtorch), so that the guest gets a small binary. `rt` re-exports
// the clock so that the transport's `crate::rt::clock` resolves here as it does in locod.
#[allow(dead_code)] // the probe uses part of the frame API
#[path = "../../../src/io/transport/can.rs"]
mod can;
#[allow(dead_code)]
#[path = "../../../src/rt/clock.rs"]
pub mod clock;
mod rt {
    pub use super::clock;
}
#[allow(dead_code)] // and part of the transport's
#[path = "../../../src/io/transport/socketcan.rs"]
mod socketcan;

use can::CanFrame;
use clock::monotonic_ns;
use socketcan::{
    BusError, CanError, CanOptions, CanRx, CanTx, ControllerProblem, ErrorMask, IdFilter, RxError, RxEvent, SocketCan,
    TxError,
};

const ENABLE: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC];
const SHORT: Duration = Duration::from_millis(200);
/// Longest a non-blocking send may take before the probe calls it blocked (see `burst`).
const MAX_SEND: Duration = Duration::from_millis(500);

struct Report {
    failures: u32,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("PASS {name}: {detail}"),
            Err(detail) => {
                self.failures += 1;
                println!("FAIL {name}: {detail}");
            }
        }
    }
}

fn open(iface: &str, options: CanOptions) -> Result<(CanTx, CanRx), String> {
    SocketCan::open(iface, &options).map_err(|e| format!("open {iface}: {e}"))
}

/// The next data frame within `timeout`, skipping nothing: anything else is an error.
fn next_frame(rx: &mut CanRx, timeout: Duration) -> Result<(CanFrame, u64), String> {
    match rx.recv(timeout) {
        Ok(RxEvent::Frame { frame, t_ns }) => Ok((frame, t_ns)),
        other => Err(format!("expected a frame, got {other:?}")),
    }
}

fn expect_silence(rx: &mut CanRx, timeout: Duration) -> Result<(), String> {
    match rx.recv(timeout) {
        Ok(RxEvent::Timeout) => Ok(()),
        other => Err(format!("expected nothing, got {other:?}")),
    }
}

fn enable_loopback(iface: &str) -> Result<String, String> {
    let own = CanOptions { receive_own: true, ..CanOptions::default() };
    let (mut tx, mut rx_own) = open(iface, own)?;
    let (_tx2, mut rx_other) = open(iface, CanOptions::default())?;
    let (mut tx_quiet, mut rx_quiet) = open(iface, CanOptions::default())?;
    let enable = CanFrame::standard(0x001, &ENABLE).unwrap();
    tx.send(&enable).map_err(|e| format!("send: {e}"))?;
    let (back, _) = next_frame(&mut rx_own, SHORT).map_err(|e| format!("own-message loopback: {e}"))?;
    let (other, _) = next_frame(&mut rx_other, SHORT).map_err(|e| format!("second socket: {e}"))?;
    if back != enable || other != enable {
        return Err(format!("sent {enable:?}, got back {back:?} and {other:?}"));
    }
    // Without receive_own our own receive handle stays quiet; others still see the frame.
    rx_quiet.recv(Duration::ZERO).ok();
    tx_quiet.send(&enable).map_err(|e| format!("send: {e}"))?;
    expect_silence(&mut rx_quiet, Duration::from_millis(50)).map_err(|e| format!("receive_own off: {e}"))?;
    next_frame(&mut rx_other, SHORT).map_err(|e| format!("second socket, second frame: {e}"))?;
    Ok(format!("{enable:?} came back on the own handle and on a second socket; receive_own=false keeps it off ours"))
}

fn filters(iface: &str) -> Result<String, String> {
    let (mut tx, _rx) = open(iface, CanOptions::default())?;
    let only_1 = CanOptions { filters: vec![IdFilter::standard(0x001)], ..CanOptions::default() };
    let (_ftx, mut frx) = open(iface, only_1)?;
    let ext_1 = CanOptions { filters: vec![IdFilter::extended(0x001)], ..CanOptions::default() };
    let (_etx, mut erx) = open(iface, ext_1)?;
    let f2 = CanFrame::standard(0x002, &[2]).unwrap();
    let f1 = CanFrame::standard(0x001, &[1]).unwrap();
    let e1 = CanFrame::extended(0x001, &[3]).unwrap();
    for f in [f2, e1, f1] {
        tx.send(&f).map_err(|e| format!("send {f:?}: {e}"))?;
    }
    let (got, _) = next_frame(&mut frx, SHORT)?;
    if got != f1 {
        return Err(format!("filter 0x001 delivered {got:?} first"));
    }
    expect_silence(&mut frx, Duration::from_millis(50)).map_err(|e| format!("filter 0x001: {e}"))?;
    let (got, _) = next_frame(&mut erx, SHORT)?;
    if got != e1 {
        return Err(format!("extended filter 0x001 delivered {got:?}"));
    }
    expect_silence(&mut erx, Duration::from_millis(50)).map_err(|e| format!("extended filter: {e}"))?;
    Ok("a socket filtered to 0x001 saw only 0x001 (not 0x002, not extended 0x001)".into())
}

fn timestamps(iface: &str) -> Result<String, String> {
    let (mut tx, _rx) = open(iface, CanOptions::default())?;
    let (_tx2, mut rx) = open(iface, CanOptions::default())?;
    let mut lat_ns = Vec::new();
    for i in 0..20u8 {
        let before = monotonic_ns();
        tx.send(&CanFrame::standard(0x010, &[i]).unwrap()).map_err(|e| format!("send: {e}"))?;
        let (f, t_ns) = next_frame(&mut rx, SHORT)?;
        let after = monotonic_ns();
        if f.data() != [i] {
            return Err(format!("frame {i} came back as {f:?}"));
        }
        if t_ns < before || t_ns > after {
            return Err(format!("t_ns {t_ns} outside [{before}, {after}]"));
        }
        lat_ns.push(t_ns - before);
    }
    lat_ns.sort_unstable();
    Ok(format!(
        "20 frames, each t_ns within [before send, after recv]; send-to-stamp median {} us, max {} us (TCG guest)",
        lat_ns[10] / 1000,
        lat_ns[19] / 1000
    ))
}

fn recv_timeout(iface: &str) -> Result<String, String> {
    let (_tx, mut rx) = open(iface, CanOptions::default())?;
    let start = Instant::now();
    expect_silence(&mut rx, Duration::from_millis(30))?;
    let waited = start.elapsed();
    if waited < Duration::from_millis(30) {
        return Err(format!("returned Timeout after only {waited:?}"));
    }
    let start = Instant::now();
    expect_silence(&mut rx, Duration::ZERO)?;
    Ok(format!("30 ms timeout returned after {waited:?}; zero timeout polled in {:?}", start.elapsed()))
}

fn burst(iface: &str, sndbuf_bytes: Option<u32>, count: u32) -> Result<String, String> {
    let options = CanOptions { sndbuf_bytes, ..CanOptions::default() };
    let (mut tx, _rx) = open(iface, options)?;
    // A listener that never reads: its receive buffer fills and the kernel drops for it, not for us.
    let (_ltx, mut listener) = open(iface, CanOptions::default())?;
    let frame = CanFrame::standard(0x020, &[0xAA; 8]).unwrap();
    let mut slowest = Duration::ZERO;
    let (mut queue_full, mut backing_off, mut other) = (0u32, 0u32, None);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        match tx.send(&frame) {
            Ok(()) => {}
            Err(TxError::QueueFull) => queue_full += 1,
            Err(TxError::BackingOff) => backing_off += 1,
            Err(e) => other = Some(e),
        }
        slowest = slowest.max(t.elapsed());
    }
    let total = start.elapsed();
    if let Some(e) = other {
        return Err(format!("unexpected send error: {e}"));
    }
    let mut received = 0u32;
    while let Ok(RxEvent::Frame { .. }) = listener.recv(Duration::from_millis(20)) {
        received += 1;
    }
    let stats = tx.stats();
    // A blocking send would wait until the queue drains, i.e. forever on a stuck device; 500 ms leaves
    // room for a TCG guest's scheduling hiccups (20 ms seen) while catching that.
    if slowest > MAX_SEND {
        return Err(format!("a send took {slowest:?}: it blocked"));
    }
    Ok(format!(
        "sndbuf {}: {count} sends in {total:?} (slowest {slowest:?}), QueueFull {queue_full}, BackingOff {backing_off}, \
         stats {stats:?}; a non-reading listener got {received} (the rest dropped on its receive queue)",
        sndbuf_bytes.map_or("default".into(), |b| format!("{b} B"))
    ))
}

/// Writes an error frame the way a CAN controller driver would deliver one.
fn inject_error(iface: &str, class: u32, data: &[u8]) -> Result<(), String> {
    use ::socketcan::{CanErrorFrame, Socket};
    let sock = ::socketcan::CanSocket::open(iface).map_err(|e| format!("raw socket: {e}"))?;
    let frame = CanErrorFrame::new_error(class, data).map_err(|e| format!("error frame: {e}"))?;
    sock.write_frame(&::socketcan::CanFrame::Error(frame)).map_err(|e| format!("kernel refused the error frame: {e}"))
}

fn error_frames(iface: &str) -> Result<String, String> {
    let (_tx, mut rx) = open(iface, CanOptions::default())?;
    let (_ntx, mut rx_none) = open(iface, CanOptions { error_mask: ErrorMask::NONE, ..CanOptions::default() })?;
    let cases: [(u32, [u8; 8], BusError); 5] = [
        (0x040, [0; 8], BusError::BusOff),
        (0x100, [0; 8], BusError::Restarted),
        (0x004, [0, 0x20, 0, 0, 0, 0, 0, 0], BusError::ErrorPassive),
        (0x004, [0, 0x08, 0, 0, 0, 0, 0, 0], BusError::ErrorWarning),
        (0x004, [0, 0x01, 0, 0, 0, 0, 0, 0], BusError::ControllerProblem(ControllerProblem::RxOverflow)),
    ];
    for (class, data, want) in cases {
        inject_error(iface, class, &data)?;
        match rx.recv(SHORT) {
            Ok(RxEvent::BusError { error, .. }) if error == want => {}
            other => return Err(format!("class {class:#X} data {data:02X?}: want {want:?}, got {other:?}")),
        }
    }
    // NO_ACK is outside the default mask: filtered by the kernel.
    inject_error(iface, 0x020, &[0; 8])?;
    expect_silence(&mut rx, Duration::from_millis(50)).map_err(|e| format!("NO_ACK with default mask: {e}"))?;
    expect_silence(&mut rx_none, Duration::from_millis(50)).map_err(|e| format!("error mask NONE: {e}"))?;
    let bus_errors = rx.stats().bus_errors;
    Ok(format!(
        "kernel delivered injected error frames on {iface}: BusOff, Restarted, ErrorPassive, ErrorWarning, RxOverflow \
         decoded; NO_ACK filtered by the default mask; mask NONE saw nothing ({bus_errors} counted)"
    ))
}

fn set_up(iface: &str, up: bool) -> Result<(), String> {
    // SAFETY: plain syscall; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `ifreq` is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` holds a NUL-terminated name; the kernel fills `ifru_flags`.
    let mut rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) };
    if rc == 0 {
        // SAFETY: SIOCGIFFLAGS succeeded, so `ifru_flags` is the initialised member.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up_bit = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | up_bit } else { flags & !up_bit };
        // SAFETY: as above; SIOCSIFFLAGS reads the name and flags.
        rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` came from socket() above and is not used afterwards.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(format!("SIOCSIFFLAGS {iface}: {err}"));
    }
    Ok(())
}

fn interface_down(iface: &str) -> Result<String, String> {
    let (mut tx, mut rx) = open(iface, CanOptions::default())?;
    set_up(iface, false)?;
    let result = (|| {
        let sent = tx.send(&CanFrame::standard(0x001, &ENABLE).unwrap());
        if !matches!(sent, Err(TxError::InterfaceDown { .. })) {
            return Err(format!("send on a down interface: {sent:?}"));
        }
        let got = rx.recv(SHORT);
        if !matches!(got, Err(RxError::InterfaceDown { .. })) {
            return Err(format!("recv after the interface went down: {got:?}"));
        }
        match SocketCan::open(iface, &CanOptions::default()) {
            Err(e @ CanError::InterfaceDown { .. }) => Ok(format!("send, recv and open all said so: \"{e}\"")),
            other => Err(format!("open of a down interface: {:?}", other.map(|_| ()))),
        }
    })();
    set_up(iface, true)?;
    result
}

/// A pseudo-terminal whose slave side carries the slcan line discipline: the kernel then has a real
/// CAN network device, `slcanN`, whose frames come out of the master side as Lawicel ASCII. As long
/// as nobody reads the master, the device's transmit queue fills, like a bus that does not accept
/// frames.
struct Slcan {
    master: std::fs::File,
    _slave: std::fs::File,
    ifname: String,
}

const N_SLCAN: libc::c_int = 17;

impl Slcan {
    /// `Ok(None)` when the kernel has no slcan line discipline.
    fn attach() -> Result<Option<Self>, String> {
        use std::os::fd::FromRawFd;
        let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        // SAFETY: plain syscall; the descriptor is owned by the File below.
        let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if m < 0 {
            return Err(os("posix_openpt"));
        }
        // SAFETY: `m` is a fresh descriptor owned by nobody else.
        let master = unsafe { std::fs::File::from_raw_fd(m) };
        let mut path = [0 as libc::c_char; 64];
        // SAFETY: `m` is a pty master; `path` is writable for its full length.
        let prepared = unsafe {
            libc::grantpt(m) == 0 && libc::unlockpt(m) == 0 && libc::ptsname_r(m, path.as_mut_ptr(), path.len()) == 0
        };
        if !prepared {
            return Err(os("preparing the pty"));
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path into `path`.
        let s = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if s < 0 {
            return Err(os("opening the pty slave"));
        }
        // SAFETY: `s` is a fresh descriptor owned by nobody else.
        let slave = unsafe { std::fs::File::from_raw_fd(s) };
        let ldisc = N_SLCAN;
        // SAFETY: TIOCSETD reads one int from the pointer.
        if unsafe { libc::ioctl(s, libc::TIOCSETD, &ldisc) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(None);
            }
            return Err(format!("attaching slcan: {e}"));
        }
        let mut name = [0u8; 16];
        // SAFETY: slcan's SIOCGIFNAME writes the NUL-terminated device name, at most IFNAMSIZ bytes.
        if unsafe { libc::ioctl(s, libc::SIOCGIFNAME as _, name.as_mut_ptr()) } != 0 {
            return Err(os("SIOCGIFNAME on the slcan tty"));
        }
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let ifname = String::from_utf8_lossy(&name[..len]).into_owned();
        // SAFETY: `m` is open; F_SETFL with O_NONBLOCK only changes the file status flags.
        if unsafe { libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return Err(os("making the pty master non-blocking"));
        }
        set_up(&ifname, true)?;
        Ok(Some(Self { master, _slave: slave, ifname }))
    }

    /// Everything the device wrote so far, waiting until it has been quiet for `quiet`.
    fn drain(&mut self, quiet: Duration) -> String {
        use std::io::Read;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    out.extend_from_slice(&buf[..n]);
                    last = Instant::now();
                }
                _ => std::thread::sleep(Duration::from_micros(500)),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn slcan_queue_full() -> Result<String, String> {
    use std::io::Write;
    let Some(mut dev) = Slcan::attach()? else {
        return Ok("SKIP: this kernel has no slcan line discipline".into());
    };
    let iface = dev.ifname.clone();
    let backoff = Duration::from_millis(2);
    let (mut tx, mut rx) = open(&iface, CanOptions { tx_backoff: backoff, ..CanOptions::default() })?;
    dev.drain(Duration::from_millis(20)); // "O\r" from opening the device

    // Both directions in the Lawicel encoding of the spec (protocols.md, slcan).
    tx.send(&CanFrame::standard(0x001, &ENABLE).unwrap()).map_err(|e| format!("send: {e}"))?;
    let wire = dev.drain(Duration::from_millis(20));
    if wire != "t0018FFFFFFFFFFFFFFFC\r" {
        return Err(format!("enable frame went out as {wire:?}"));
    }
    dev.master.write_all(b"t0021AB\r").map_err(|e| format!("writing to the pty: {e}"))?;
    let (got, _) = next_frame(&mut rx, SHORT)?;
    if got != CanFrame::standard(0x002, &[0xAB]).unwrap() {
        return Err(format!("t0021AB came in as {got:?}"));
    }

    // Nobody reads the device now: its queue fills.
    let frame = CanFrame::standard(0x020, &[0x55; 8]).unwrap();
    let mut first_full = None;
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    for i in 0..20_000u32 {
        let t = Instant::now();
        let r = tx.send(&frame);
        slowest = slowest.max(t.elapsed());
        match r {
            Ok(()) | Err(TxError::BackingOff) => {}
            Err(TxError::QueueFull) => {
                first_full.get_or_insert(i);
            }
            Err(e) => return Err(format!("send {i}: {e}")),
        }
    }
    let burst = start.elapsed();
    let stats = tx.stats();
    let Some(first_full) = first_full else {
        return Err(format!("20000 sends never filled the queue: {stats:?}"));
    };
    if slowest > MAX_SEND {
        return Err(format!("a send took {slowest:?}: it blocked"));
    }
    if stats.dropped_backoff == 0 {
        return Err(format!("QueueFull did not start a back-off: {stats:?}"));
    }
    // Right after a QueueFull the next send is skipped; after the back-off the kernel is asked again.
    let _ = tx.send(&frame);
    let again = tx.send(&frame);
    if again != Err(TxError::BackingOff) {
        return Err(format!("send right after a full queue: {again:?}"));
    }
    std::thread::sleep(backoff + Duration::from_millis(1));
    let retry = tx.send(&frame);
    if retry != Err(TxError::QueueFull) {
        return Err(format!("send after the back-off, queue still stuck: {retry:?}"));
    }

    // Reading the device lets it drain; sends work again once the back-off is over.
    let drained = dev.drain(Duration::from_millis(100));
    std::thread::sleep(backoff + Duration::from_millis(1));
    let recovered = tx.send(&frame);
    if recovered.is_err() {
        return Err(format!("send after the device drained: {recovered:?}"));
    }
    let sent_lines = drained.matches('\r').count();
    Ok(format!(
        "{iface}: first QueueFull at send {first_full} (~{sent_lines} frames were in the pty and the qdisc), \
         20000 sends in {burst:?}, slowest {slowest:?}; back-off skipped sends, queue-full again after it, \
         recovered once drained; {:?}",
        tx.stats()
    ))
}

fn open_errors() -> Result<String, String> {
    let missing = SocketCan::open("nosuch0", &CanOptions::default());
    let Err(e1 @ CanError::InterfaceNotFound { .. }) = missing else {
        return Err(format!("nosuch0: {:?}", missing.map(|_| ())));
    };
    let lo = SocketCan::open("lo", &CanOptions::default());
    let Err(e2 @ CanError::NotCanInterface { .. }) = lo else {
        return Err(format!("lo: {:?}", lo.map(|_| ())));
    };
    Ok(format!("\"{e1}\" / \"{e2}\""))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut iface = "vcan0".to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iface" => iface = args.next().expect("--iface needs a name"),
            other => {
                eprintln!("usage: can-probe [--iface NAME]  (unknown argument {other:?})");
                std::process::exit(2);
            }
        }
    }

    let mut r = Report { failures: 0 };
    r.check("open-errors", open_errors());
    r.check("enable-loopback", enable_loopback(&iface));
    r.check("filters", filters(&iface));
    r.check("timestamps", timestamps(&iface));
    r.check("recv-timeout", recv_timeout(&iface));
    r.check("burst-default-sndbuf", burst(&iface, None, 20_000));
    r.check("burst-small-sndbuf", burst(&iface, Some(1), 20_000));
    r.check("error-frames", error_frames(&iface));
    r.check("interface-down", interface_down(&iface));
    r.check("slcan-queue-full", slcan_queue_full());

    if r.failures > 0 {
        println!("can-probe: {} check(s) failed", r.failures);
        std::process::exit(1);
    }
    println!("can-probe: all checks passed");
}
