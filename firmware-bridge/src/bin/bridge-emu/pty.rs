//! A raw pseudo-terminal pair: the emulator writes the master, the host under test opens the slave path as
//! if it were the board's USB serial port.
//!
//! For: `bridge-emu` only. Not for: real serial ports (no baud rate; a pty has none).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Pty {
    pub master: OwnedFd,
    /// Held open so that the slave keeps its raw settings and the master never sees a hang-up while the
    /// host closes and reopens the port.
    _slave: OwnedFd,
    pub slave_path: String,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Pty {
    /// Opens a new pair, puts the slave in raw mode and makes the master non-blocking.
    pub fn open() -> io::Result<Pty> {
        // SAFETY: posix_openpt takes flags only and returns a new descriptor or -1.
        let master_fd = check(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) })?;
        // SAFETY: master_fd was just returned by posix_openpt and is owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(master_fd) };
        // SAFETY: grantpt/unlockpt only take a descriptor, which is a valid pty master.
        check(unsafe { libc::grantpt(master.as_raw_fd()) })?;
        // SAFETY: as above.
        check(unsafe { libc::unlockpt(master.as_raw_fd()) })?;

        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `name` is a writable buffer of the length passed; ptsname_r NUL-terminates on success.
        let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string within its bounds.
        let slave_path = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();

        // SAFETY: `name` is NUL-terminated (above); open returns a new descriptor or -1.
        let slave_fd = check(unsafe { libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) })?;
        // SAFETY: slave_fd was just returned by open and is owned by nothing else.
        let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
        set_raw(slave.as_raw_fd())?;

        // SAFETY: fcntl on a valid descriptor with integer arguments.
        let flags = check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        Ok(Pty { master, _slave: slave, slave_path })
    }
}

/// Raw mode: no echo, no line editing, no CR/LF translation, 8-bit clean.
pub fn set_raw(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: termios is plain old data; all-zero is a valid value that tcgetattr overwrites.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a valid terminal descriptor and `tio` a valid, writable termios.
    check(unsafe { libc::tcgetattr(fd, &mut tio) })?;
    // SAFETY: `tio` is a valid termios obtained from tcgetattr.
    unsafe { libc::cfmakeraw(&mut tio) };
    tio.c_cc[libc::VMIN] = 1;
    tio.c_cc[libc::VTIME] = 0;
    // SAFETY: fd is a valid terminal descriptor and `tio` a valid termios.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &tio) })?;
    Ok(())
}
