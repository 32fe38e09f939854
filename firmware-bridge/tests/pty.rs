//! The `bridge-emu` binary on a real pseudo-terminal: open the printed slave path like a serial port,
//! decode its stream, talk back.
#![cfg(feature = "std")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware_bridge::*;

struct Emu {
    child: Child,
    path: String,
}

impl Emu {
    fn spawn(args: &[&str]) -> Emu {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-emu"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bridge-emu");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let path =
            line.trim_end().strip_prefix("PTY ").unwrap_or_else(|| panic!("bad first line {line:?}")).to_string();
        Emu { child, path }
    }

    fn open(&self) -> File {
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&self.path).unwrap()
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads and decodes until `want` returns true for a frame or `timeout` passes; returns all frames read.
fn read_until(port: &mut File, timeout: Duration, mut want: impl FnMut(&McuFrame) -> bool) -> Vec<McuFrame> {
    let deadline = Instant::now() + timeout;
    let mut decoder = FrameDecoder::<McuMessage>::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd { fd: port.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, bounded timeout.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let n = port.read(&mut buf).unwrap();
        for frame in decoder.feed(&buf[..n]).filter_map(Result::ok) {
            let done = want(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
    panic!(
        "timed out; got {} frames: {:?}",
        frames.len(),
        frames.iter().map(|f| f.message).take(5).collect::<Vec<_>>()
    );
}

#[test]
fn hello_and_imu_frames_over_a_real_pty() {
    let link = std::env::temp_dir().join(format!("bridge-emu-test-{}", std::process::id()));
    let emu = Emu::spawn(&["--duration", "20", "--link", link.to_str().unwrap()]);
    assert!(emu.path.starts_with("/dev/"), "{}", emu.path);
    assert_eq!(std::fs::read_link(&link).unwrap().to_str(), Some(emu.path.as_str()));

    let mut port = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&link).unwrap();
    let mut imu = 0;
    let frames = read_until(&mut port, Duration::from_secs(10), |f| {
        imu += matches!(f.message, McuMessage::Imu(_)) as usize;
        imu >= 5
    });
    let McuMessage::Hello(hello) = frames[0].message else { panic!("first frame {:?}", frames[0]) };
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);

    // Host → board: a ping comes back as a pong carrying our timestamp.
    let ping = HostFrame { header: Header { seq: 0, time_us: 0 }, message: HostMessage::Ping { host_time_ns: 0xABCD } };
    port.write_all(&common::encode(&ping)).unwrap();
    read_until(
        &mut port,
        Duration::from_secs(10),
        |f| matches!(f.message, McuMessage::Pong(p) if p.host_time_ns == 0xABCD),
    );

    drop(port);
    drop(emu);
    // Killed, so the link stays; a clean exit (below) removes it.
    let _ = std::fs::remove_file(&link);
}

#[test]
fn wrong_version_flag_changes_the_hello() {
    let emu = Emu::spawn(&["--duration", "20", "--wrong-version"]);
    let mut port = emu.open();
    let frames = read_until(&mut port, Duration::from_secs(10), |f| matches!(f.message, McuMessage::Hello(_)));
    let McuMessage::Hello(hello) = frames.last().unwrap().message else { unreachable!() };
    assert_ne!(hello.protocol_version, PROTOCOL_VERSION);
}

#[test]
fn duration_ends_the_emulator_cleanly_and_removes_the_link() {
    let link = std::env::temp_dir().join(format!("bridge-emu-test-exit-{}", std::process::id()));
    let mut emu = Emu::spawn(&["--duration", "0.3", "--link", link.to_str().unwrap()]);
    let status = emu.child.wait().unwrap();
    assert!(status.success());
    let mut summary = String::new();
    emu.child.stderr.take().unwrap().read_to_string(&mut summary).unwrap();
    assert!(summary.contains("sent"), "{summary}");
    assert!(link.symlink_metadata().is_err(), "link left behind");
}
