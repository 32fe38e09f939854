//! `bridge-emu`: the emulated sensor board on a pseudo-terminal, so locod (or anything else) can open it
//! like the real board's serial port.
//!
//! For: running [`firmware_bridge::emulator::Emulator`] against wall-clock time and a pty. Not for: the
//! stream's content or faults (the library module owns those).

mod pty;

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use firmware_bridge::emulator::{Emulator, EmulatorConfig};

const USAGE: &str = "\
usage: bridge-emu [OPTIONS]

Creates a pseudo-terminal, prints `PTY <slave path>` on stdout and streams the firmware-bridge
protocol on it as an emulated sensor board (robot standing still on a flat floor).

  --link PATH              also create a symlink PATH -> slave (replaced if it is a symlink)
  --duration SECS          exit after SECS (default: until SIGINT/SIGTERM)
  --seed N                 noise seed (default 1)
  --imu-hz N               IMU rate (default 200)
  --depth-hz N             rate per ToF sensor (default 30)
  --depth-sensors N        ToF sensors (default 2)
  --depth-res 4|8          zones per side (default 8)
  --encoders N             encoder channels (default 0)
  --encoder-hz N           encoder rate (default 100)
  --heartbeat-hz N         heartbeat rate (default 10)
faults:
  --garbage-every N        write 1-24 random bytes after every N-th frame
  --drop-every N           skip every N-th frame (sequence gap)
  --stall-after SECS       go silent SECS after start ...
  --stall-for SECS         ... for SECS (default 1)
  --wrong-version          announce PROTOCOL_VERSION + 1 in Hello
  --clock-drift-ppm X      MCU clock runs X ppm fast (negative: slow)
  --clock-offset-us Y      MCU clock reads Y µs at start
  -h, --help               this text
";

/// Bytes waiting for the host beyond this are discarded (nobody is reading the slave).
const MAX_PENDING: usize = 64 * 1024;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Debug, Default, PartialEq)]
struct Cli {
    config: EmulatorConfig,
    link: Option<PathBuf>,
    duration_s: Option<f64>,
    help: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
    let mut cli = Cli::default();
    cli.config.faults.stall_for_s = 1.0;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs {what}"))
        };
        fn num<T: std::str::FromStr>(flag: &str, s: String) -> Result<T, String> {
            s.parse().map_err(|_| format!("{flag}: cannot parse {s:?}"))
        }
        let c = &mut cli.config;
        match flag.as_str() {
            "-h" | "--help" => cli.help = true,
            "--link" => cli.link = Some(PathBuf::from(value("a path")?)),
            "--duration" => cli.duration_s = Some(num(&flag, value("seconds")?)?),
            "--seed" => c.seed = num(&flag, value("a number")?)?,
            "--imu-hz" => c.imu_rate_hz = num(&flag, value("a rate")?)?,
            "--depth-hz" => c.depth_rate_hz = num(&flag, value("a rate")?)?,
            "--depth-sensors" => c.depth_sensors = num(&flag, value("a count")?)?,
            "--depth-res" => {
                c.depth_resolution = num(&flag, value("4 or 8")?)?;
                if c.depth_resolution != 4 && c.depth_resolution != 8 {
                    return Err("--depth-res must be 4 or 8".into());
                }
            }
            "--encoders" => c.encoders = num(&flag, value("a count")?)?,
            "--encoder-hz" => c.encoder_rate_hz = num(&flag, value("a rate")?)?,
            "--heartbeat-hz" => c.heartbeat_rate_hz = num(&flag, value("a rate")?)?,
            "--garbage-every" => c.faults.garbage_every = Some(num(&flag, value("a frame count")?)?),
            "--drop-every" => c.faults.drop_every = Some(num(&flag, value("a frame count")?)?),
            "--stall-after" => c.faults.stall_after_s = Some(num(&flag, value("seconds")?)?),
            "--stall-for" => c.faults.stall_for_s = num(&flag, value("seconds")?)?,
            "--wrong-version" => c.faults.wrong_version = true,
            "--clock-drift-ppm" => c.faults.clock_drift_ppm = num(&flag, value("ppm")?)?,
            "--clock-offset-us" => c.faults.clock_offset_us = num(&flag, value("µs")?)?,
            _ => return Err(format!("unknown argument {flag:?} (try --help)")),
        }
    }
    Ok(cli)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("bridge-emu: {e}");
            std::process::exit(2);
        }
    };
    if cli.help {
        print!("{USAGE}");
        return;
    }
    if let Err(e) = run(cli) {
        eprintln!("bridge-emu: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> io::Result<()> {
    let pty = pty::Pty::open()?;
    if let Some(link) = &cli.link {
        if link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(link)?;
        }
        std::os::unix::fs::symlink(&pty.slave_path, link)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create link {}: {e}", link.display())))?;
    }
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "PTY {}", pty.slave_path)?;
        stdout.flush()?;
    }

    let start_ns = monotonic_ns();
    let deadline_ns = cli.duration_s.map(|s| start_ns + (s.max(0.0) * 1e9) as u64);
    let mut emu = Emulator::new(cli.config, start_ns);
    let fd = pty.master.as_raw_fd();
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_PENDING);
    let mut discarded_bytes = 0u64;
    let mut rx = [0u8; 4096];

    while !STOP.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        if deadline_ns.is_some_and(|d| now >= d) {
            break;
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, 1 ms timeout.
        unsafe { libc::poll(&mut pfd, 1, 1) };
        loop {
            // SAFETY: `rx` is writable for its full length; fd is our non-blocking master.
            let n = unsafe { libc::read(fd, rx.as_mut_ptr().cast(), rx.len()) };
            if n <= 0 {
                break;
            }
            emu.receive(&rx[..n as usize], monotonic_ns());
        }
        emu.poll(monotonic_ns(), &mut pending);
        while !pending.is_empty() {
            // SAFETY: `pending` is readable for its full length; fd is our non-blocking master.
            let n = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
            if n <= 0 {
                break;
            }
            pending.drain(..n as usize);
        }
        if pending.len() > MAX_PENDING {
            discarded_bytes += pending.len() as u64;
            pending.clear();
        }
    }

    if let Some(link) = &cli.link {
        let _ = std::fs::remove_file(link);
    }
    let s = emu.stats();
    eprintln!(
        "bridge-emu: sent {} frames, dropped {}, garbage bursts {}, pongs {}, resets {}, bytes discarded unread {}",
        s.frames_sent, s.frames_dropped, s.garbage_bursts, s.pings_answered, s.resets, discarded_bytes
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_faults_and_defaults() {
        let cli =
            parse(&["--drop-every", "10", "--clock-drift-ppm=-50", "--wrong-version", "--link", "/tmp/x"]).unwrap();
        assert_eq!(cli.config.faults.drop_every, Some(10));
        assert_eq!(cli.config.faults.clock_drift_ppm, -50.0);
        assert!(cli.config.faults.wrong_version);
        assert_eq!(cli.link, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cli.config.imu_rate_hz, 200);
        assert_eq!(cli.config.faults.stall_for_s, 1.0);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--seed"]).is_err());
        assert!(parse(&["--seed", "x"]).is_err());
        assert!(parse(&["--depth-res", "6"]).is_err());
    }
}
