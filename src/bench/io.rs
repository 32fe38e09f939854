//! `locod bench io`: how fast the protocol codecs run, and how long a motor's reply takes from
//! being sent until the control thread can see it in the joint's slot, through the in-memory cable
//! and through an slcan adapter on a pseudo-terminal. Each latency comes with its floor measured in
//! the same run: a bare thread blocked on the same kind of descriptor (eventfd, pty) waking up.

use super::Percentiles;
use crate::config::Config;
use crate::io::device::can_motors::CanMotors;
use crate::io::device::motors::Motor;
use crate::io::protocol::mit::{self, MitCommand, MotorReply, ReplyFormat};
use crate::io::protocol::slcan::{self, SlcanDecoder};
use crate::io::protocol::witmotion::{self, WitParser};
use crate::io::transport::bus::{BusPair, BusTx};
use crate::io::transport::can::CanFrame;
use crate::io::transport::membus::cable;
use crate::io::transport::serial::Port;
use crate::rt::clock::monotonic_ns;
use crate::rt::hist::Histogram;
use crate::types::SensorFrame;
use serde::Serialize;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct IoReport {
    pub bench: &'static str,
    /// Nanoseconds per operation, single thread.
    pub(crate) codecs_ns_per_op: Codecs,
    pub latency: Latencies,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Codecs {
    pub(crate) mit_pack_command: f64,
    pub(crate) mit_decode_reply: f64,
    pub(crate) slcan_encode_frame: f64,
    pub(crate) slcan_decode_line: f64,
    pub(crate) witmotion_decode_frame: f64,
}

#[derive(Debug, Serialize)]
pub struct Latencies {
    pub membus: PathLatency,
    pub(crate) slcan_pty: PathLatency,
}

/// Send → visible in the joint slot, and the transport's own wake-up floor.
#[derive(Debug, Serialize)]
pub struct PathLatency {
    pub locod_us: Percentiles,
    pub reference: String,
    pub reference_us: Percentiles,
    /// locod's p50 over the reference's p50.
    pub ratio: f64,
}

fn ns_per_op(iterations: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..iterations / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn codecs(config: &Config, iterations: u64) -> Result<Codecs, String> {
    let motor = Motor::all(config)?[0];
    let cmd = MitCommand { q_rad: 0.5, qd_radps: 0.1, kp: 40.0, kd: 1.0, tau_ff_nm: 0.2 };
    let reply = MotorReply {
        motor_id: motor.can_id as u8,
        q_rad: 0.5,
        qd_radps: 0.1,
        tau_nm: 1.0,
        temp_mosfet_c: None,
        temp_rotor_c: None,
        enabled: None,
        error: None,
    };
    let reply_frame =
        mit::encode_reply(0, &reply, ReplyFormat::MiniCheetah, &motor.ranges).map_err(|e| e.to_string())?;
    let frame = CanFrame::standard(0x001, &[1, 2, 3, 4, 5, 6, 7, 8]).ok_or("frame")?;
    let mut line = [0u8; slcan::MAX_ENCODED_LEN];
    let line_len = slcan::encode_frame(&frame, &mut line).map_err(|e| e.to_string())?;
    let mut decoder = SlcanDecoder::new();
    let wit = witmotion::encode_words(witmotion::TYPE_ACCEL, [100, -200, 16384, 2500]);
    let mut parser = WitParser::new();
    Ok(Codecs {
        mit_pack_command: ns_per_op(iterations, |i| {
            let mut c = cmd;
            c.q_rad += (i & 7) as f32 * 0.01;
            black_box(mit::pack_command(motor.can_id, black_box(&c), &motor.ranges).ok());
        }),
        mit_decode_reply: ns_per_op(iterations, |_| {
            black_box(
                mit::decode_reply(black_box(&reply_frame), ReplyFormat::MiniCheetah, |_| Some(motor.ranges)).ok(),
            );
        }),
        slcan_encode_frame: ns_per_op(iterations, |_| {
            let mut out = [0u8; slcan::MAX_ENCODED_LEN];
            black_box(slcan::encode_frame(black_box(&frame), &mut out).ok());
        }),
        slcan_decode_line: ns_per_op(iterations, |_| {
            for e in decoder.decode(black_box(&line[..line_len])) {
                black_box(e.ok());
            }
        }),
        witmotion_decode_frame: ns_per_op(iterations, |_| {
            for m in parser.parse(black_box(&wit)) {
                black_box(m);
            }
        }),
    })
}

/// Joint 0's reply encodes its sequence number in the position: q = -10 + seq * 0.005 rad.
fn seq_to_q(seq: usize) -> f32 {
    -10.0 + seq as f32 * 0.005
}

fn q_to_seq(q: f64) -> usize {
    ((q + 10.0) / 0.005).round().max(0.0) as usize
}

/// Sends `samples` replies of joint 0 through `send`, one per millisecond, while the calling
/// thread polls the robot's slot like the control thread would; returns send → visible latency.
fn measure_path(
    config: &Config,
    robot_buses: Vec<BusPair>,
    samples: usize,
    mut send: impl FnMut(&CanFrame) + Send + 'static,
) -> Result<Histogram, String> {
    let mut robot = CanMotors::with_buses(config, robot_buses).map_err(|e| crate::report::chain(&e))?;
    let motor = Motor::all(config)?[0];
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..samples).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent_ns, done) = (sent_ns.clone(), done.clone());
        std::thread::spawn(move || {
            for seq in 0..samples {
                let reply = MotorReply {
                    motor_id: motor.can_id as u8,
                    q_rad: motor
                        .map
                        .state_to_motor(&mit::JointState { q_rad: seq_to_q(seq), qd_radps: 0.0, tau_nm: 0.0 })
                        .q_rad,
                    qd_radps: 0.0,
                    tau_nm: 0.0,
                    temp_mosfet_c: None,
                    temp_rotor_c: None,
                    enabled: None,
                    error: None,
                };
                if let Ok(f) =
                    mit::encode_reply(motor.master_id.unwrap_or(0), &reply, ReplyFormat::MiniCheetah, &motor.ranges)
                {
                    sent_ns[seq].store(monotonic_ns(), Ordering::Release);
                    send(&f);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(50));
            done.store(true, Ordering::Release);
        })
    };
    let mut hist = Histogram::new();
    let mut frame = SensorFrame::default();
    let mut last_t = 0;
    while !done.load(Ordering::Acquire) {
        robot.read_joints(&mut frame);
        let s = frame.joints[0];
        if s.t_ns != last_t {
            let seen = monotonic_ns();
            last_t = s.t_ns;
            let seq = q_to_seq(s.q_rad);
            if let Some(sent) = sent_ns.get(seq).map(|a| a.load(Ordering::Acquire)).filter(|&t| t != 0) {
                hist.record(seen.saturating_sub(sent));
            }
        } else {
            std::hint::spin_loop();
        }
    }
    let _ = sender.join();
    robot.stop();
    Ok(hist)
}

/// The floor: one thread writes, another blocked in poll on the other end wakes and stamps.
fn wake_floor(
    samples: usize,
    mut write: impl FnMut() + Send + 'static,
    mut wait: impl FnMut() -> bool + Send + 'static,
) -> Histogram {
    let sent = Arc::new(AtomicU64::new(0));
    let reader = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut h = Histogram::new();
            for _ in 0..samples {
                if !wait() {
                    break;
                }
                h.record(monotonic_ns().saturating_sub(sent.load(Ordering::Acquire)));
            }
            h
        })
    };
    for _ in 0..samples {
        std::thread::sleep(Duration::from_millis(1));
        sent.store(monotonic_ns(), Ordering::Release);
        write();
    }
    reader.join().unwrap_or_default()
}

fn path(locod: &Histogram, reference: &str, floor: &Histogram) -> PathLatency {
    let l: Percentiles = locod.summary().into();
    let r: Percentiles = floor.summary().into();
    PathLatency { locod_us: l, reference: reference.into(), reference_us: r, ratio: l.p50 / r.p50.max(1e-3) }
}

pub fn run(config: &Config, samples: usize) -> Result<IoReport, String> {
    let mut config = config.clone();
    config.rate.priority = 0; // measure the transports, not the scheduler
    let codecs = codecs(&config, 2_000_000)?;

    // In-memory cable.
    let (ours, theirs) = cable();
    let mut their_tx = theirs.tx;
    let membus = measure_path(&config, vec![(Box::new(ours.tx), Box::new(ours.rx))], samples, move |f| {
        let _ = their_tx.send(f);
    })?;
    let efd = {
        // SAFETY: eventfd with valid flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err("eventfd failed".into());
        }
        fd
    };
    let membus_floor = wake_floor(
        samples,
        move || {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
            unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
        },
        move || {
            let mut pfd = libc::pollfd { fd: efd, events: libc::POLLIN, revents: 0 };
            let mut v = 0u64;
            // SAFETY: one valid pollfd; then 8 bytes into a valid u64 from our eventfd, which poll
            // said is readable (writes coalesce, so a timeout ends the measurement instead).
            unsafe { libc::poll(&mut pfd, 1, 1000) == 1 && libc::read(efd, (&mut v as *mut u64).cast(), 8) == 8 }
        },
    );

    // slcan adapter on a pty: the robot opens the slave through a symlink, we write lines into
    // the master as the adapter would.
    let dir = std::env::temp_dir().join(format!("locod-bench-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let link = dir.join("canable");
    let (master, slave) = serialport::TTYPort::pair().map_err(|e| e.to_string())?;
    let slave_name = serialport::SerialPort::name(&slave).ok_or("pty without a name")?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&slave_name, &link).map_err(|e| e.to_string())?;
    let master = Port::from_tty(master).map_err(|e| e.to_string())?;
    let (tx, rx) =
        crate::io::transport::slcan_bus::open(link.to_str().unwrap_or_default(), 1_000_000, Duration::from_millis(1))?;
    let slcan_pty = measure_path(&config, vec![(Box::new(tx), Box::new(rx))], samples, move |f| {
        let mut line = [0u8; slcan::MAX_ENCODED_LEN];
        if let Ok(n) = slcan::encode_frame(f, &mut line) {
            let _ = master.write_all(&line[..n], Duration::from_millis(10));
        }
    })?;
    drop(slave);
    let (m2, s2) = serialport::TTYPort::pair().map_err(|e| e.to_string())?;
    let (m2, mut s2) = (Port::from_tty(m2).map_err(|e| e.to_string())?, Port::from_tty(s2).map_err(|e| e.to_string())?);
    let pty_floor = wake_floor(
        samples,
        move || {
            let _ = m2.write_nonblocking(b"t0016000000000000\r");
        },
        move || {
            let mut buf = [0u8; 64];
            matches!(s2.read(&mut buf, Duration::from_secs(1)), Ok(n) if n > 0)
        },
    );
    let _ = std::fs::remove_dir_all(&dir);

    Ok(IoReport {
        bench: "io",
        codecs_ns_per_op: codecs,
        latency: Latencies {
            membus: path(&membus, "eventfd wake-up", &membus_floor),
            slcan_pty: path(&slcan_pty, "pty read wake-up", &pty_floor),
        },
    })
}

impl std::fmt::Display for IoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.codecs_ns_per_op;
        writeln!(
            f,
            "codecs (ns/op): MIT pack {:.1}, MIT decode {:.1}, slcan encode {:.1}, slcan decode {:.1}, WitMotion {:.1}",
            k.mit_pack_command, k.mit_decode_reply, k.slcan_encode_frame, k.slcan_decode_line, k.witmotion_decode_frame
        )?;
        for (name, p) in [("in-memory cable", &self.latency.membus), ("slcan on a pty", &self.latency.slcan_pty)] {
            writeln!(
                f,
                "{name}: reply -> slot p50 {:.1} us p99 {:.1} us; {} p50 {:.1} us p99 {:.1} us; ratio {:.2}",
                p.locod_us.p50, p.locod_us.p99, p.reference, p.reference_us.p50, p.reference_us.p99, p.ratio
            )?;
        }
        Ok(())
    }
}
