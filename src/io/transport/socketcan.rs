//! Linux SocketCAN transport: one raw CAN socket on an interface, split into a send handle for the
//! control loop and a receive handle for a dedicated receive thread.
//!
//! - [`CanTx::send`] never blocks. A full transmit queue (`ENOBUFS` from the qdisc, `EAGAIN` from the
//!   socket buffer) drops the frame, is counted, and starts a short back-off during which sends are
//!   skipped rather than hammering the kernel; the control loop sends a fresh command next tick anyway.
//! - [`CanRx::recv`] waits up to a timeout and returns a frame stamped with CLOCK_MONOTONIC taken right
//!   after the read returned (kernel `SO_TIMESTAMP*` stamps are CLOCK_REALTIME, so they are not used),
//!   a decoded bus error (bus-off, error-passive, restarted...), or a timeout.
//!
//! Both handles share one socket (a `dup`), so `receive_own` decides whether our own transmissions come
//! back to our receive handle, while `loopback` lets other local sockets (candump, a logger) see them.
//!
//! Not for: the meaning of payloads (motor protocols), CAN FD, or bringing interfaces up (that needs
//! netlink and privileges; the errors say which `ip` command to run).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use ::socketcan::{CanSocket, Socket, SocketOptions};

use super::can::CanFrame;
use crate::rt::clock::monotonic_ns;

const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;
const CAN_SFF_MASK: u32 = 0x0000_07FF;
const CAN_EFF_MASK: u32 = 0x1FFF_FFFF;
/// Kernel limit on the number of filters one raw socket takes (`CAN_RAW_FILTER_MAX`).
pub const MAX_FILTERS: usize = 512;
/// Longest accepted transmit back-off: longer would silence commands past a motor's watchdog.
pub const MAX_TX_BACKOFF: Duration = Duration::from_secs(1);

/// Linux `IFNAMSIZ` (including the terminating NUL).
const IFNAMSIZ: usize = 16;

// ---------------------------------------------------------------------------------------------
// Interface names

/// A network interface name stored inline, so that the errors of the real-time path can name the
/// interface without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IfName {
    bytes: [u8; IFNAMSIZ],
    len: u8,
}

impl IfName {
    /// Checks the name the way the kernel does: 1 to 15 bytes, no `/`, `:`, whitespace or NUL.
    pub fn new(name: &str) -> Result<Self, CanError> {
        let invalid = |reason| CanError::InvalidInterfaceName { ifname: name.to_owned(), reason };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() >= IFNAMSIZ {
            return Err(invalid("it is longer than 15 bytes"));
        }
        if name == "." || name == ".." {
            return Err(invalid("`.` and `..` are not interface names"));
        }
        if name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace()) {
            return Err(invalid("it contains `/`, `:`, whitespace or NUL"));
        }
        let mut bytes = [0u8; IFNAMSIZ];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self { bytes, len: name.len() as u8 })
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from a `&str` in `new`, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// Accept frames whose identifier matches `id` on the bits set in `mask`. Standard and extended
/// frames never match each other's filters; data and remote frames both pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdFilter {
    id: u32,
    mask: u32,
    extended: bool,
}

impl IdFilter {
    /// Exactly this 11-bit identifier.
    pub fn standard(id: u32) -> Self {
        Self { id, mask: CAN_SFF_MASK, extended: false }
    }

    /// 11-bit identifiers equal to `id` on the bits of `mask` (e.g. `0x000/0x7F0` for 0x000..0x00F).
    pub fn standard_masked(id: u32, mask: u32) -> Self {
        Self { id, mask, extended: false }
    }

    /// Exactly this 29-bit identifier.
    pub fn extended(id: u32) -> Self {
        Self { id, mask: CAN_EFF_MASK, extended: true }
    }

    /// 29-bit identifiers equal to `id` on the bits of `mask`.
    pub fn extended_masked(id: u32, mask: u32) -> Self {
        Self { id, mask, extended: true }
    }

    fn max(&self) -> u32 {
        if self.extended {
            CAN_EFF_MASK
        } else {
            CAN_SFF_MASK
        }
    }

    /// The kernel's `(can_id, can_mask)`: the EFF flag joins both so the frame format must match.
    fn to_kernel(self) -> (u32, u32) {
        let eff = if self.extended { CAN_EFF_FLAG } else { 0 };
        (self.id | eff, self.mask | CAN_EFF_FLAG)
    }
}

/// Which classes of error frames the receive handle gets (`CAN_RAW_ERR_FILTER`). Combine with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorMask(u32);

impl ErrorMask {
    pub const NONE: Self = Self(0);
    pub const TX_TIMEOUT: Self = Self(0x001);
    pub const LOST_ARBITRATION: Self = Self(0x002);
    /// Controller problems: rx/tx overflow, error-warning, error-passive, back to error-active.
    pub const CONTROLLER: Self = Self(0x004);
    /// Protocol violations (bit, form, stuff errors). Floods on a badly terminated bus.
    pub const PROTOCOL: Self = Self(0x008);
    pub const TRANSCEIVER: Self = Self(0x010);
    /// No acknowledgement: every frame while no other node (e.g. no powered motor) is on the bus.
    pub const NO_ACK: Self = Self(0x020);
    pub const BUS_OFF: Self = Self(0x040);
    pub const BUS_ERROR: Self = Self(0x080);
    pub const RESTARTED: Self = Self(0x100);
    pub const ALL: Self = Self(0x1FF);
    /// The state changes a controller must react to, without the per-frame floods
    /// (`PROTOCOL`, `NO_ACK`, `BUS_ERROR`, `LOST_ARBITRATION`).
    pub const DEFAULT: Self = Self(Self::BUS_OFF.0 | Self::CONTROLLER.0 | Self::RESTARTED.0 | Self::TX_TIMEOUT.0);

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ErrorMask {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// How [`SocketCan::open`] sets the socket up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanOptions {
    /// Other sockets on this machine (candump, a logger) see the frames we send. Kernel default: on.
    pub loopback: bool,
    /// Our own receive handle also sees the frames we send (needs `loopback`). Kernel default: off.
    pub receive_own: bool,
    /// Identifiers the receive handle accepts; empty accepts every frame.
    pub filters: Vec<IdFilter>,
    /// Error frames the receive handle gets.
    pub error_mask: ErrorMask,
    /// After the kernel reports a full transmit queue, drop sends for this long; zero disables.
    pub tx_backoff: Duration,
    /// `SO_SNDBUF` in bytes (the kernel doubles it and enforces a minimum of about 4.6 KB). A small
    /// buffer bounds how many stale commands can queue; `None` keeps the system default.
    pub sndbuf_bytes: Option<u32>,
}

impl Default for CanOptions {
    fn default() -> Self {
        Self {
            loopback: true,
            receive_own: false,
            filters: Vec::new(),
            error_mask: ErrorMask::DEFAULT,
            tx_backoff: Duration::from_millis(1),
            sndbuf_bytes: None,
        }
    }
}

impl CanOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.receive_own && !self.loopback {
            return Err(OptionsError::ReceiveOwnWithoutLoopback);
        }
        if self.filters.len() > MAX_FILTERS {
            return Err(OptionsError::TooManyFilters { count: self.filters.len() });
        }
        for (index, f) in self.filters.iter().enumerate() {
            if f.id > f.max() || f.mask > f.max() {
                return Err(OptionsError::FilterOutOfRange { index, filter: *f });
            }
        }
        if self.error_mask.0 & !ErrorMask::ALL.0 != 0 {
            return Err(OptionsError::UnknownErrorClass { bits: self.error_mask.0 });
        }
        if self.tx_backoff > MAX_TX_BACKOFF {
            return Err(OptionsError::BackoffTooLong { backoff: self.tx_backoff });
        }
        if let Some(bytes) = self.sndbuf_bytes {
            if bytes == 0 || bytes > i32::MAX as u32 {
                return Err(OptionsError::BadSndbuf { bytes });
            }
        }
        Ok(())
    }
}

/// A [`CanOptions`] value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionsError {
    ReceiveOwnWithoutLoopback,
    TooManyFilters { count: usize },
    FilterOutOfRange { index: usize, filter: IdFilter },
    UnknownErrorClass { bits: u32 },
    BackoffTooLong { backoff: Duration },
    BadSndbuf { bytes: u32 },
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReceiveOwnWithoutLoopback => {
                write!(f, "receive_own needs loopback: the kernel only returns our frames to us when loopback is on")
            }
            Self::TooManyFilters { count } => {
                write!(f, "{count} receive filters given, the kernel takes at most {MAX_FILTERS}: merge them with masks")
            }
            Self::FilterOutOfRange { index, filter } => write!(
                f,
                "receive filter {index} (id {:#X}, mask {:#X}) does not fit a {}-bit identifier",
                filter.id,
                filter.mask,
                if filter.extended { 29 } else { 11 }
            ),
            Self::UnknownErrorClass { bits } => {
                write!(f, "error mask {bits:#X} has bits outside the CAN error classes ({:#X})", ErrorMask::ALL.0)
            }
            Self::BackoffTooLong { backoff } => write!(
                f,
                "tx back-off of {} ms is longer than the {} ms allowed: commands would stop long enough to trip motor watchdogs",
                backoff.as_millis(),
                MAX_TX_BACKOFF.as_millis()
            ),
            Self::BadSndbuf { bytes } => {
                write!(f, "send buffer of {bytes} bytes: give 1 ..= {} bytes or leave it unset", i32::MAX)
            }
        }
    }
}

impl std::error::Error for OptionsError {}

// ---------------------------------------------------------------------------------------------
// Opening

/// Why an interface could not be opened. Start-up only, so it may allocate.
#[derive(Debug)]
pub enum CanError {
    /// `socket(PF_CAN, ...)` failed: the kernel has no CAN, or the `can`/`can-raw` modules are absent.
    NoKernelSupport {
        errno: i32,
    },
    InvalidInterfaceName {
        ifname: String,
        reason: &'static str,
    },
    InterfaceNotFound {
        ifname: String,
    },
    NotCanInterface {
        ifname: String,
    },
    InterfaceDown {
        ifname: String,
    },
    InvalidOptions(OptionsError),
    Io {
        ifname: String,
        op: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for CanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKernelSupport { errno } if *errno == libc::EPROTONOSUPPORT => write!(
                f,
                "CAN raw sockets are unavailable (errno {errno}): load the can-raw module (`modprobe can-raw`)"
            ),
            Self::NoKernelSupport { errno } => write!(
                f,
                "this kernel has no CAN support (PF_CAN unavailable, errno {errno}): load the can and can-raw \
                 modules (`modprobe can-raw`) or run on a kernel built with CONFIG_CAN"
            ),
            Self::InvalidInterfaceName { ifname, reason } => {
                write!(f, "{ifname:?} is not a valid interface name: {reason}")
            }
            Self::InterfaceNotFound { ifname } => write!(
                f,
                "CAN interface {ifname} not found: check the adapter and its driver, then bring it up with \
                 `ip link set {ifname} up type can bitrate 1000000` (a virtual bus for tests: \
                 `ip link add dev {ifname} type vcan && ip link set {ifname} up`)"
            ),
            Self::NotCanInterface { ifname } => write!(
                f,
                "interface {ifname} exists but is not a CAN interface: `ip -details link show` lists the can/vcan ones"
            ),
            Self::InterfaceDown { ifname } => write!(
                f,
                "CAN interface {ifname} is down: bring it up with `ip link set {ifname} up type can bitrate 1000000`"
            ),
            Self::InvalidOptions(e) => write!(f, "invalid CAN options: {e}"),
            Self::Io { ifname, op, source } => write!(f, "CAN interface {ifname}: {op} failed: {source}"),
        }
    }
}

impl std::error::Error for CanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidOptions(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opens CAN interfaces.
pub struct SocketCan;

impl SocketCan {
    /// Opens one raw CAN socket on `ifname`, configured by `options`, and splits it into a send and a
    /// receive handle. The interface must exist and be up.
    pub fn open(ifname: &str, options: &CanOptions) -> Result<(CanTx, CanRx), CanError> {
        options.validate().map_err(CanError::InvalidOptions)?;
        let name = IfName::new(ifname)?;
        let io_err = |op: &'static str| move |source: io::Error| CanError::Io { ifname: ifname.to_owned(), op, source };

        let sock = CanSocket::open(ifname).map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            classify_open_error(errno, ifname, interface_exists(ifname), pf_can_errno())
                .unwrap_or_else(|| io_err("opening a CAN socket")(e))
        })?;
        if !interface_is_up(&sock, &name).map_err(io_err("reading the interface flags"))? {
            return Err(CanError::InterfaceDown { ifname: ifname.to_owned() });
        }

        sock.set_nonblocking(true).map_err(io_err("making the socket non-blocking"))?;
        sock.set_loopback(options.loopback).map_err(io_err("setting CAN_RAW_LOOPBACK"))?;
        sock.set_recv_own_msgs(options.receive_own).map_err(io_err("setting CAN_RAW_RECV_OWN_MSGS"))?;
        if !options.filters.is_empty() {
            let filters: Vec<(u32, u32)> = options.filters.iter().map(|f| f.to_kernel()).collect();
            sock.set_filters(&filters).map_err(io_err("setting CAN_RAW_FILTER"))?;
        }
        sock.set_error_filter(options.error_mask.bits()).map_err(io_err("setting CAN_RAW_ERR_FILTER"))?;
        if let Some(bytes) = options.sndbuf_bytes {
            sock.as_raw_socket().set_send_buffer_size(bytes as usize).map_err(io_err("setting SO_SNDBUF"))?;
        }

        let dup = sock.as_raw_socket().try_clone().map_err(io_err("duplicating the socket"))?;
        let rx_sock = CanSocket::from(OwnedFd::from(dup));
        let tx = CanTx { sock, ifname: name, state: TxState::new(options.tx_backoff) };
        let rx = CanRx { sock: rx_sock, ifname: name, stats: RxStats::default() };
        Ok((tx, rx))
    }
}

/// Maps the errno of a failed open to a specific error; `None` leaves it a plain I/O error.
/// `pf_can_errno` is the errno of a bare `socket(PF_CAN)` (0 when that works).
fn classify_open_error(errno: i32, ifname: &str, exists: bool, pf_can_errno: i32) -> Option<CanError> {
    let ifname = ifname.to_owned();
    match errno {
        libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Some(CanError::NoKernelSupport { errno }),
        // The crate resolves the name before creating the socket, so a missing interface hides a
        // missing CAN stack: report the more fundamental problem first.
        libc::ENODEV if !exists && pf_can_errno != 0 => Some(CanError::NoKernelSupport { errno: pf_can_errno }),
        libc::ENODEV if !exists => Some(CanError::InterfaceNotFound { ifname }),
        // bind() refuses interfaces whose type is not ARPHRD_CAN with ENODEV.
        libc::ENODEV => Some(CanError::NotCanInterface { ifname }),
        libc::ENETDOWN => Some(CanError::InterfaceDown { ifname }),
        _ => None,
    }
}

fn interface_exists(ifname: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(ifname) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// errno of `socket(PF_CAN, SOCK_RAW, CAN_RAW)`, or 0 if the kernel accepts it.
fn pf_can_errno() -> i32 {
    // SAFETY: plain syscall with constant arguments; the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::PF_CAN, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::CAN_RAW) };
    if fd < 0 {
        return io::Error::last_os_error().raw_os_error().unwrap_or(0);
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    unsafe { libc::close(fd) };
    0
}

fn interface_is_up(sock: &CanSocket, ifname: &IfName) -> io::Result<bool> {
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.as_str().bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (IfName is at most 15 bytes); the
    // kernel writes only `ifr_flags` for SIOCGIFFLAGS.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags as libc::c_int & libc::IFF_UP != 0)
}

// ---------------------------------------------------------------------------------------------
// Sending

/// Why a frame was not sent. The frame is dropped in every case; `Copy` and allocation-free because
/// it is returned on the control path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// The kernel's transmit queue is full (ENOBUFS/EAGAIN); a back-off has started.
    QueueFull,
    /// Skipped without asking the kernel: a back-off after `QueueFull` is still running.
    BackingOff,
    InterfaceDown {
        ifname: IfName,
    },
    InterfaceGone {
        ifname: IfName,
    },
    Io {
        ifname: IfName,
        errno: i32,
    },
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull => {
                write!(f, "CAN transmit queue full: frame dropped (is the bus connected and terminated?)")
            }
            Self::BackingOff => write!(f, "CAN transmit queue was full moments ago: frame dropped during the back-off"),
            Self::InterfaceDown { ifname } => write!(
                f,
                "CAN interface {ifname} is down: bring it up with `ip link set {ifname} up type can bitrate 1000000`"
            ),
            Self::InterfaceGone { ifname } => {
                write!(f, "CAN interface {ifname} disappeared (adapter unplugged?): reopen it once it is back")
            }
            Self::Io { ifname, errno } => {
                write!(f, "CAN send on {ifname} failed: {}", io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for TxError {}

/// Counters of a send handle since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    pub sent: u64,
    pub dropped_queue_full: u64,
    pub dropped_backoff: u64,
    pub errors: u64,
}

/// The counting and back-off of a send handle, apart from the socket so tests can drive the clock.
#[derive(Debug)]
struct TxState {
    backoff_ns: u64,
    /// Sends are skipped until this CLOCK_MONOTONIC time; 0 when no back-off is running.
    until_ns: u64,
    stats: TxStats,
}

impl TxState {
    fn new(backoff: Duration) -> Self {
        Self { backoff_ns: backoff.as_nanos() as u64, until_ns: 0, stats: TxStats::default() }
    }

    /// Whether a send may go to the kernel now. Reads the clock only while a back-off is running.
    fn gate(&mut self, now_ns: impl FnOnce() -> u64) -> Result<(), TxError> {
        if self.until_ns != 0 {
            if now_ns() < self.until_ns {
                self.stats.dropped_backoff += 1;
                return Err(TxError::BackingOff);
            }
            self.until_ns = 0;
        }
        Ok(())
    }

    /// Accounts for the kernel's answer (`Err(errno)` on failure).
    fn record(&mut self, result: Result<(), i32>, ifname: IfName, now_ns: impl FnOnce() -> u64) -> Result<(), TxError> {
        let errno = match result {
            Ok(()) => {
                self.stats.sent += 1;
                return Ok(());
            }
            Err(errno) => errno,
        };
        let err = tx_error_from_errno(errno, ifname);
        if err == TxError::QueueFull {
            self.stats.dropped_queue_full += 1;
            if self.backoff_ns > 0 {
                // max(1): 0 means "no back-off running".
                self.until_ns = now_ns().saturating_add(self.backoff_ns).max(1);
            }
        } else {
            self.stats.errors += 1;
        }
        Err(err)
    }
}

fn tx_error_from_errno(errno: i32, ifname: IfName) -> TxError {
    match errno {
        libc::ENOBUFS | libc::EAGAIN => TxError::QueueFull,
        libc::ENETDOWN => TxError::InterfaceDown { ifname },
        libc::ENODEV | libc::ENXIO => TxError::InterfaceGone { ifname },
        _ => TxError::Io { ifname, errno },
    }
}

/// The send half: owned by the control loop.
pub struct CanTx {
    sock: CanSocket,
    ifname: IfName,
    state: TxState,
}

impl CanTx {
    /// Queues `frame` for transmission without blocking. On error the frame is dropped.
    pub fn send(&mut self, frame: &CanFrame) -> Result<(), TxError> {
        self.state.gate(monotonic_ns)?;
        let raw = ::socketcan::CanFrame::from(to_raw(frame));
        let result = self.sock.write_frame(&raw).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
        self.state.record(result, self.ifname, monotonic_ns)
    }

    pub fn stats(&self) -> TxStats {
        self.state.stats
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_str()
    }
}

fn to_raw(frame: &CanFrame) -> libc::can_frame {
    let mut raw = ::socketcan::frame::can_frame_default();
    raw.can_id = frame.id()
        | if frame.is_extended() { CAN_EFF_FLAG } else { 0 }
        | if frame.is_remote() { CAN_RTR_FLAG } else { 0 };
    raw.can_dlc = frame.len() as u8;
    raw.data[..frame.data().len()].copy_from_slice(frame.data());
    raw
}

// ---------------------------------------------------------------------------------------------
// Receiving

/// One thing the receive handle saw. `t_ns` is CLOCK_MONOTONIC right after the read returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxEvent {
    Frame {
        frame: CanFrame,
        t_ns: u64,
    },
    /// An error frame; `error` is its most severe condition, `frame` has all of them.
    BusError {
        error: BusError,
        frame: ErrorFrame,
        t_ns: u64,
    },
    Timeout,
}

/// A condition reported by an error frame (linux/can/error.h), most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The controller left the bus after too many errors; nothing is sent until it restarts.
    BusOff,
    /// The controller restarted after bus-off.
    Restarted,
    /// An error counter passed 127: the controller may no longer flag errors actively.
    ErrorPassive,
    ControllerProblem(ControllerProblem),
    /// An error counter passed 96.
    ErrorWarning,
    /// A frame was not acknowledged: no other node on the bus, or it is unpowered.
    NoAck,
    TxTimeout,
    /// Bit, form or stuff error; `kind` and `location` are `data[2]` and `data[3]` of the frame.
    Protocol {
        kind: u8,
        location: u8,
    },
    /// Transceiver status, `data[4]` of the frame.
    Transceiver(u8),
    /// Bus error without further detail (`CAN_ERR_BUSERROR`).
    Unspecified,
    /// Lost arbitration at this bit (0 unknown).
    LostArbitration {
        bit: u8,
    },
    /// The controller is error-active again after warning or passive.
    BackToErrorActive,
    /// An error frame with no class this decoder knows.
    Unknown {
        class: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerProblem {
    RxOverflow,
    TxOverflow,
    Unspecified,
}

const ERR_TX_TIMEOUT: u32 = 0x001;
const ERR_LOSTARB: u32 = 0x002;
const ERR_CRTL: u32 = 0x004;
const ERR_PROT: u32 = 0x008;
const ERR_TRX: u32 = 0x010;
const ERR_ACK: u32 = 0x020;
const ERR_BUSOFF: u32 = 0x040;
const ERR_BUSERROR: u32 = 0x080;
const ERR_RESTARTED: u32 = 0x100;
const ERR_CNT: u32 = 0x200;
const CRTL_RX_OVERFLOW: u8 = 0x01;
const CRTL_TX_OVERFLOW: u8 = 0x02;
const CRTL_RX_WARNING: u8 = 0x04;
const CRTL_TX_WARNING: u8 = 0x08;
const CRTL_RX_PASSIVE: u8 = 0x10;
const CRTL_TX_PASSIVE: u8 = 0x20;
const CRTL_ACTIVE: u8 = 0x40;

/// An error frame as the kernel delivers it: the error class bits of `can_id` and 8 data bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    class: u32,
    data: [u8; 8],
}

impl ErrorFrame {
    /// `class` is `can_id` without `CAN_ERR_FLAG`; bits above the error mask are ignored.
    pub fn new(class: u32, data: [u8; 8]) -> Self {
        Self { class: class & 0x1FFF_FFFF, data }
    }

    pub fn class(&self) -> u32 {
        self.class
    }

    pub fn data(&self) -> &[u8; 8] {
        &self.data
    }

    /// Every condition the frame reports, most severe first.
    pub fn conditions(&self) -> impl Iterator<Item = BusError> {
        let has = |bit: u32| self.class & bit != 0;
        let crtl = if has(ERR_CRTL) { self.data[1] } else { 0 };
        let crtl_has = |bits: u8| crtl & bits != 0;
        let overflow = if crtl_has(CRTL_RX_OVERFLOW) {
            Some(ControllerProblem::RxOverflow)
        } else if crtl_has(CRTL_TX_OVERFLOW) {
            Some(ControllerProblem::TxOverflow)
        } else if has(ERR_CRTL) && crtl == 0 {
            Some(ControllerProblem::Unspecified)
        } else {
            None
        };
        let both_overflows = crtl_has(CRTL_RX_OVERFLOW) && crtl_has(CRTL_TX_OVERFLOW);
        let known = ERR_TX_TIMEOUT
            | ERR_LOSTARB
            | ERR_CRTL
            | ERR_PROT
            | ERR_TRX
            | ERR_ACK
            | ERR_BUSOFF
            | ERR_BUSERROR
            | ERR_RESTARTED
            | ERR_CNT;
        let only_unknown = self.class & known & !ERR_CNT == 0 && self.class & !known != 0;
        [
            has(ERR_BUSOFF).then_some(BusError::BusOff),
            has(ERR_RESTARTED).then_some(BusError::Restarted),
            crtl_has(CRTL_RX_PASSIVE | CRTL_TX_PASSIVE).then_some(BusError::ErrorPassive),
            overflow.map(BusError::ControllerProblem),
            both_overflows.then_some(BusError::ControllerProblem(ControllerProblem::TxOverflow)),
            crtl_has(CRTL_RX_WARNING | CRTL_TX_WARNING).then_some(BusError::ErrorWarning),
            has(ERR_ACK).then_some(BusError::NoAck),
            has(ERR_TX_TIMEOUT).then_some(BusError::TxTimeout),
            has(ERR_PROT).then_some(BusError::Protocol { kind: self.data[2], location: self.data[3] }),
            has(ERR_TRX).then_some(BusError::Transceiver(self.data[4])),
            has(ERR_BUSERROR).then_some(BusError::Unspecified),
            has(ERR_LOSTARB).then_some(BusError::LostArbitration { bit: self.data[0] }),
            crtl_has(CRTL_ACTIVE).then_some(BusError::BackToErrorActive),
            only_unknown.then_some(BusError::Unknown { class: self.class }),
        ]
        .into_iter()
        .flatten()
    }

    /// The most severe condition (`Unknown` if the frame names none this decoder knows).
    pub fn most_severe(&self) -> BusError {
        self.conditions().next().unwrap_or(BusError::Unknown { class: self.class })
    }

    /// Transmit and receive error counters, if the driver reported them (`CAN_ERR_CNT`).
    pub fn counters(&self) -> Option<(u8, u8)> {
        (self.class & ERR_CNT != 0).then_some((self.data[6], self.data[7]))
    }
}

/// A received `can_frame` that makes no sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Classic CAN carries at most 8 bytes.
    BadLength { can_id: u32, len: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength { can_id, len } => {
                write!(f, "received CAN frame {can_id:#X} claims {len} data bytes (classic CAN has at most 8)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoded {
    Frame(CanFrame),
    Error(ErrorFrame),
}

/// Decodes the fields of a kernel `can_frame`.
fn decode_raw(can_id: u32, len: u8, data: &[u8; 8]) -> Result<Decoded, DecodeError> {
    if can_id & CAN_ERR_FLAG != 0 {
        return Ok(Decoded::Error(ErrorFrame::new(can_id & CAN_EFF_MASK, *data)));
    }
    let bad = DecodeError::BadLength { can_id, len };
    if len > 8 {
        return Err(bad);
    }
    let extended = can_id & CAN_EFF_FLAG != 0;
    let id = can_id & if extended { CAN_EFF_MASK } else { CAN_SFF_MASK };
    let frame = if can_id & CAN_RTR_FLAG != 0 {
        CanFrame::remote(id, extended, len as usize)
    } else if extended {
        CanFrame::extended(id, &data[..len as usize])
    } else {
        CanFrame::standard(id, &data[..len as usize])
    };
    frame.map(Decoded::Frame).ok_or(bad)
}

/// Why a receive failed. `Copy` and allocation-free: returned on the receive thread's hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxError {
    InterfaceDown { ifname: IfName },
    InterfaceGone { ifname: IfName },
    Malformed(DecodeError),
    Io { ifname: IfName, errno: i32 },
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfaceDown { ifname } => write!(
                f,
                "CAN interface {ifname} went down: bring it up with `ip link set {ifname} up type can bitrate 1000000`"
            ),
            Self::InterfaceGone { ifname } => {
                write!(f, "CAN interface {ifname} disappeared (adapter unplugged?): reopen it once it is back")
            }
            Self::Malformed(e) => write!(f, "{e}"),
            Self::Io { ifname, errno } => {
                write!(f, "CAN receive on {ifname} failed: {}", io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for RxError {}

fn rx_error_from_errno(errno: i32, ifname: IfName) -> RxError {
    match errno {
        libc::ENETDOWN => RxError::InterfaceDown { ifname },
        libc::ENODEV | libc::ENXIO => RxError::InterfaceGone { ifname },
        _ => RxError::Io { ifname, errno },
    }
}

/// Counters of a receive handle since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStats {
    pub frames: u64,
    pub bus_errors: u64,
    pub malformed: u64,
}

/// The receive half: owned by a dedicated receive thread.
pub struct CanRx {
    sock: CanSocket,
    ifname: IfName,
    stats: RxStats,
}

impl CanRx {
    /// Waits up to `timeout` for a frame or an error frame. A zero timeout polls. While the
    /// interface is down this returns `InterfaceDown` instead of `Timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<RxEvent, RxError> {
        let deadline_ns = monotonic_ns().saturating_add(timeout.as_nanos().min(u64::MAX as u128) as u64);
        loop {
            let now = monotonic_ns();
            let left_ns = deadline_ns.saturating_sub(now);
            let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ts = libc::timespec {
                tv_sec: (left_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (left_ns % 1_000_000_000) as libc::c_long,
            };
            // SAFETY: `pfd` and `ts` are valid for the duration of the call; one descriptor; no sigmask.
            let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if n < 0 {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                if errno == libc::EINTR {
                    continue;
                }
                return Err(rx_error_from_errno(errno, self.ifname));
            }
            if n == 0 {
                return self.timeout_or_down();
            }
            match self.sock.read_raw_frame() {
                Ok(raw) => {
                    let t_ns = monotonic_ns();
                    return self.event(raw.can_id, raw.can_dlc, &raw.data, t_ns);
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    // Spurious wake-up or a signal: wait again for what is left of the timeout.
                    if errno == libc::EAGAIN || errno == libc::EINTR {
                        if monotonic_ns() >= deadline_ns {
                            return self.timeout_or_down();
                        }
                        continue;
                    }
                    return Err(rx_error_from_errno(errno, self.ifname));
                }
            }
        }
    }

    /// A quiet socket does not mean a working bus: the kernel reports an interface going down only
    /// once per socket (to whichever handle asks first), so ask the interface itself.
    fn timeout_or_down(&self) -> Result<RxEvent, RxError> {
        match interface_is_up(&self.sock, &self.ifname) {
            Ok(true) => Ok(RxEvent::Timeout),
            Ok(false) => Err(RxError::InterfaceDown { ifname: self.ifname }),
            Err(e) => Err(rx_error_from_errno(e.raw_os_error().unwrap_or(libc::EIO), self.ifname)),
        }
    }

    fn event(&mut self, can_id: u32, len: u8, data: &[u8; 8], t_ns: u64) -> Result<RxEvent, RxError> {
        match decode_raw(can_id, len, data) {
            Ok(Decoded::Frame(frame)) => {
                self.stats.frames += 1;
                Ok(RxEvent::Frame { frame, t_ns })
            }
            Ok(Decoded::Error(frame)) => {
                self.stats.bus_errors += 1;
                Ok(RxEvent::BusError { error: frame.most_severe(), frame, t_ns })
            }
            Err(e) => {
                self.stats.malformed += 1;
                Err(RxError::Malformed(e))
            }
        }
    }

    pub fn stats(&self) -> RxStats {
        self.stats
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    #[test]
    fn default_options_are_valid_and_enable_the_state_errors() {
        let o = CanOptions::default();
        assert_eq!(o.validate(), Ok(()));
        assert!(o.error_mask.contains(ErrorMask::BUS_OFF | ErrorMask::CONTROLLER | ErrorMask::RESTARTED));
        assert!(!o.error_mask.contains(ErrorMask::NO_ACK));
        assert!(o.loopback && !o.receive_own);
    }

    #[test]
    fn options_that_cannot_work_are_rejected_with_the_reason() {
        let base = CanOptions::default();
        let o = CanOptions { loopback: false, receive_own: true, ..base.clone() };
        assert_eq!(o.validate(), Err(OptionsError::ReceiveOwnWithoutLoopback));

        let o = CanOptions { filters: vec![IdFilter::standard(1); MAX_FILTERS + 1], ..base.clone() };
        assert_eq!(o.validate(), Err(OptionsError::TooManyFilters { count: MAX_FILTERS + 1 }));

        let o = CanOptions { filters: vec![IdFilter::standard(1), IdFilter::standard(0x800)], ..base.clone() };
        let e = o.validate().unwrap_err();
        assert_eq!(e, OptionsError::FilterOutOfRange { index: 1, filter: IdFilter::standard(0x800) });
        assert!(e.to_string().contains("11-bit"), "{e}");
        let o = CanOptions { filters: vec![IdFilter::extended_masked(0x1FFF_FFFF, 0x1FFF_FFFF)], ..base.clone() };
        assert_eq!(o.validate(), Ok(()));
        let o = CanOptions { filters: vec![IdFilter::extended(0x2000_0000)], ..base.clone() };
        assert!(o.validate().is_err());

        let o = CanOptions { error_mask: ErrorMask(0x400), ..base.clone() };
        assert_eq!(o.validate(), Err(OptionsError::UnknownErrorClass { bits: 0x400 }));

        let o = CanOptions { tx_backoff: Duration::from_millis(1500), ..base.clone() };
        assert!(o.validate().unwrap_err().to_string().contains("watchdog"));
        let o = CanOptions { tx_backoff: Duration::ZERO, ..base.clone() };
        assert_eq!(o.validate(), Ok(()));

        let o = CanOptions { sndbuf_bytes: Some(0), ..base };
        assert_eq!(o.validate(), Err(OptionsError::BadSndbuf { bytes: 0 }));
    }

    #[test]
    fn filters_keep_standard_and_extended_apart() {
        assert_eq!(IdFilter::standard(0x001).to_kernel(), (0x001, 0x7FF | CAN_EFF_FLAG));
        assert_eq!(IdFilter::extended(0x001).to_kernel(), (0x001 | CAN_EFF_FLAG, CAN_EFF_MASK | CAN_EFF_FLAG));
        assert_eq!(IdFilter::standard_masked(0x010, 0x7F0).to_kernel(), (0x010, 0x7F0 | CAN_EFF_FLAG));
    }

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        assert_eq!(name("can0").as_str(), "can0");
        assert_eq!(name("a23456789012345").as_str().len(), 15);
        for bad in ["", "a234567890123456", "can 0", "a/b", "a:b", "..", "a\0"] {
            let e = IfName::new(bad).unwrap_err();
            assert!(matches!(e, CanError::InvalidInterfaceName { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn open_errnos_map_to_actionable_errors() {
        let e = classify_open_error(libc::EAFNOSUPPORT, "can0", false, libc::EAFNOSUPPORT).unwrap();
        assert!(matches!(e, CanError::NoKernelSupport { errno: 97 }));
        assert!(e.to_string().contains("this kernel has no CAN support (PF_CAN unavailable"), "{e}");

        let e = classify_open_error(libc::EPROTONOSUPPORT, "can0", true, 0).unwrap();
        assert!(e.to_string().contains("modprobe can-raw"), "{e}");

        // The name lookup fails first on a kernel without CAN: still report the missing stack.
        let e = classify_open_error(libc::ENODEV, "can0", false, libc::EAFNOSUPPORT).unwrap();
        assert!(matches!(e, CanError::NoKernelSupport { errno: 97 }), "{e}");

        let e = classify_open_error(libc::ENODEV, "can0", false, 0).unwrap();
        assert!(matches!(e, CanError::InterfaceNotFound { .. }));
        assert!(e.to_string().contains("interface can0 not found"), "{e}");
        assert!(e.to_string().contains("`ip link set can0 up type can bitrate 1000000`"), "{e}");

        let e = classify_open_error(libc::ENODEV, "lo", true, 0).unwrap();
        assert!(matches!(e, CanError::NotCanInterface { .. }), "{e}");

        let e = classify_open_error(libc::ENETDOWN, "can1", true, 0).unwrap();
        assert!(e.to_string().contains("`ip link set can1 up"), "{e}");

        assert!(classify_open_error(libc::EMFILE, "can0", true, 0).is_none());
    }

    #[test]
    fn open_on_this_machine_fails_with_a_typed_error_not_a_panic() {
        // Works on hosts with and without CAN: neither name is a usable CAN interface.
        match SocketCan::open("nosuchcan9", &CanOptions::default()) {
            Err(CanError::NoKernelSupport { .. }) | Err(CanError::InterfaceNotFound { .. }) => {}
            other => panic!("unexpected: {:?}", other.map(|_| ())),
        }
        match SocketCan::open("lo", &CanOptions::default()) {
            Err(CanError::NoKernelSupport { .. }) | Err(CanError::NotCanInterface { .. }) => {}
            other => panic!("unexpected: {:?}", other.map(|_| ())),
        }
        let bad = CanOptions { loopback: false, receive_own: true, ..CanOptions::default() };
        assert!(matches!(SocketCan::open("can0", &bad), Err(CanError::InvalidOptions(_))));
    }

    #[test]
    fn send_errnos_map_to_tx_errors() {
        let n = name("can0");
        assert_eq!(tx_error_from_errno(libc::ENOBUFS, n), TxError::QueueFull);
        assert_eq!(tx_error_from_errno(libc::EAGAIN, n), TxError::QueueFull);
        assert_eq!(tx_error_from_errno(libc::ENETDOWN, n), TxError::InterfaceDown { ifname: n });
        assert_eq!(tx_error_from_errno(libc::ENXIO, n), TxError::InterfaceGone { ifname: n });
        assert_eq!(tx_error_from_errno(libc::EIO, n), TxError::Io { ifname: n, errno: libc::EIO });
        assert!(TxError::InterfaceDown { ifname: n }.to_string().contains("ip link set can0 up"));
        assert_eq!(rx_error_from_errno(libc::ENETDOWN, n), RxError::InterfaceDown { ifname: n });
        assert_eq!(rx_error_from_errno(libc::ENODEV, n), RxError::InterfaceGone { ifname: n });
    }

    #[test]
    fn queue_full_starts_a_backoff_that_skips_sends_until_it_expires() {
        let n = name("vcan0");
        let mut s = TxState::new(Duration::from_millis(1));
        let ms = 1_000_000;
        assert_eq!(s.gate(|| panic!("no clock read while no back-off runs")), Ok(()));
        assert_eq!(s.record(Ok(()), n, || unreachable!()), Ok(()));
        assert_eq!(s.gate(|| unreachable!()), Ok(()));
        assert_eq!(s.record(Err(libc::ENOBUFS), n, || 10 * ms), Err(TxError::QueueFull));
        assert_eq!(s.gate(|| 10 * ms), Err(TxError::BackingOff));
        assert_eq!(s.gate(|| 11 * ms - 1), Err(TxError::BackingOff));
        assert_eq!(s.gate(|| 11 * ms), Ok(()));
        assert_eq!(s.record(Ok(()), n, || unreachable!()), Ok(()));
        assert_eq!(s.gate(|| unreachable!()), Ok(()));
        assert_eq!(s.record(Err(libc::ENETDOWN), n, || unreachable!()), Err(TxError::InterfaceDown { ifname: n }));
        assert_eq!(s.gate(|| unreachable!()), Ok(()), "only a full queue backs off");
        assert_eq!(s.stats, TxStats { sent: 2, dropped_queue_full: 1, dropped_backoff: 2, errors: 1 });
    }

    #[test]
    fn zero_backoff_never_skips() {
        let mut s = TxState::new(Duration::ZERO);
        assert_eq!(s.record(Err(libc::EAGAIN), name("c"), || 5), Err(TxError::QueueFull));
        assert_eq!(s.gate(|| unreachable!()), Ok(()));
    }

    #[test]
    fn frames_round_trip_through_the_kernel_layout() {
        let frames = [
            CanFrame::standard(0x001, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC]).unwrap(),
            CanFrame::standard(0x7FF, &[]).unwrap(),
            CanFrame::extended(0x1234_5678, &[1, 2, 3]).unwrap(),
            CanFrame::remote(0x123, false, 6).unwrap(),
            CanFrame::remote(0x1FFF_FFFF, true, 8).unwrap(),
        ];
        for f in frames {
            let raw = to_raw(&f);
            assert_eq!(decode_raw(raw.can_id, raw.can_dlc, &raw.data), Ok(Decoded::Frame(f)), "{f:?}");
        }
        assert_eq!(to_raw(&frames[2]).can_id, 0x1234_5678 | CAN_EFF_FLAG);
        assert_eq!(to_raw(&frames[3]).can_id, 0x123 | CAN_RTR_FLAG);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert_eq!(decode_raw(0x001, 9, &[0; 8]), Err(DecodeError::BadLength { can_id: 1, len: 9 }));
    }

    fn err(class: u32, data: [u8; 8]) -> ErrorFrame {
        match decode_raw(CAN_ERR_FLAG | class, 8, &data) {
            Ok(Decoded::Error(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_frames_decode_to_bus_errors() {
        assert_eq!(err(ERR_BUSOFF, [0; 8]).most_severe(), BusError::BusOff);
        assert_eq!(err(ERR_RESTARTED, [0; 8]).most_severe(), BusError::Restarted);
        assert_eq!(err(ERR_CRTL, [0, CRTL_TX_PASSIVE, 0, 0, 0, 0, 0, 0]).most_severe(), BusError::ErrorPassive);
        assert_eq!(err(ERR_CRTL, [0, CRTL_RX_WARNING, 0, 0, 0, 0, 0, 0]).most_severe(), BusError::ErrorWarning);
        assert_eq!(
            err(ERR_CRTL, [0, CRTL_RX_OVERFLOW, 0, 0, 0, 0, 0, 0]).most_severe(),
            BusError::ControllerProblem(ControllerProblem::RxOverflow)
        );
        assert_eq!(err(ERR_CRTL, [0; 8]).most_severe(), BusError::ControllerProblem(ControllerProblem::Unspecified));
        assert_eq!(err(ERR_CRTL, [0, CRTL_ACTIVE, 0, 0, 0, 0, 0, 0]).most_severe(), BusError::BackToErrorActive);
        assert_eq!(err(ERR_ACK, [0; 8]).most_severe(), BusError::NoAck);
        assert_eq!(err(ERR_TX_TIMEOUT, [0; 8]).most_severe(), BusError::TxTimeout);
        assert_eq!(
            err(ERR_PROT, [0, 0, 0x04, 0x0F, 0, 0, 0, 0]).most_severe(),
            BusError::Protocol { kind: 0x04, location: 0x0F }
        );
        assert_eq!(err(ERR_TRX, [0, 0, 0, 0, 0x40, 0, 0, 0]).most_severe(), BusError::Transceiver(0x40));
        assert_eq!(err(ERR_LOSTARB, [7, 0, 0, 0, 0, 0, 0, 0]).most_severe(), BusError::LostArbitration { bit: 7 });
        assert_eq!(err(ERR_BUSERROR, [0; 8]).most_severe(), BusError::Unspecified);
        assert_eq!(err(0x1000, [0; 8]).most_severe(), BusError::Unknown { class: 0x1000 });
    }

    #[test]
    fn one_error_frame_can_report_several_conditions() {
        // What a controller sends going bus-off: state change, bus-off and the counters.
        let f = err(ERR_BUSOFF | ERR_CRTL | ERR_CNT, [0, CRTL_TX_PASSIVE | CRTL_RX_WARNING, 0, 0, 0, 0, 255, 12]);
        let all: Vec<_> = f.conditions().collect();
        assert_eq!(all, [BusError::BusOff, BusError::ErrorPassive, BusError::ErrorWarning]);
        assert_eq!(f.counters(), Some((255, 12)));
        assert_eq!(err(ERR_BUSOFF, [0; 8]).counters(), None);
        let both = err(ERR_CRTL, [0, CRTL_RX_OVERFLOW | CRTL_TX_OVERFLOW, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            both.conditions().collect::<Vec<_>>(),
            [
                BusError::ControllerProblem(ControllerProblem::RxOverflow),
                BusError::ControllerProblem(ControllerProblem::TxOverflow)
            ]
        );
        // Counters alone say nothing is wrong.
        assert_eq!(err(ERR_CNT, [0; 8]).conditions().count(), 0);
        assert_eq!(err(ERR_CNT, [0; 8]).most_severe(), BusError::Unknown { class: ERR_CNT });
    }

    proptest! {
        #[test]
        fn decoding_never_panics_and_frames_round_trip(can_id in any::<u32>(), len in any::<u8>(), data in any::<[u8; 8]>()) {
            match decode_raw(can_id, len, &data) {
                Ok(Decoded::Frame(f)) => {
                    let raw = to_raw(&f);
                    prop_assert_eq!(decode_raw(raw.can_id, raw.can_dlc, &raw.data), Ok(Decoded::Frame(f)));
                }
                Ok(Decoded::Error(e)) => {
                    let _ = e.most_severe();
                    prop_assert!(e.conditions().count() <= 14);
                }
                Err(DecodeError::BadLength { len, .. }) => prop_assert!(len > 8),
            }
        }
    }
}
