//! `locod bench e2e`: the daemon's reaction time end to end, in real time. A `locod run` process
//! with the given configuration has its CAN bus on a pseudo-terminal that this benchmark answers
//! as the motors (an slcan adapter, exactly as the simulator does). Each reply of the first motor
//! carries a sequence number in its position; in Passive the daemon's damping command echoes the
//! measured position as its target, so the first command carrying a sequence number closes the loop:
//! sensor frame written → read by the daemon's receive thread → used by a control tick → command
//! encoded and written back. The reference, in the same run, is a bare round trip through a pty pair.

use super::Percentiles;
use crate::config::{BusKind, Config};
use crate::io::device::motors::Motor;
use crate::io::protocol::mit::{self, MotorReply, MotorRequest};
use crate::io::protocol::slcan::{self, SlcanDecoder, SlcanEvent};
use crate::io::transport::serial::Port;
use crate::rt::clock::monotonic_ns;
use crate::rt::hist::Histogram;
use serde::Serialize;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub bench: &'static str,
    pub control_hz: u32,
    /// Sensor frame written → the daemon's command using it arrives back.
    pub locod_us: Percentiles,
    /// MIT-mode motors reply to commands, so the reply a tick reads answers the previous tick's
    /// command: one control period of the figure above is the protocol's, not the daemon's.
    pub control_period_us: f64,
    pub reference: &'static str,
    pub reference_us: Percentiles,
    /// locod's p50 over the reference's p50.
    pub ratio: f64,
}

/// Motor-side position that encodes `seq` (within the first joint's limits, on the wire's grid).
fn seq_q(seq: u32) -> f32 {
    -0.4 + (seq % 1800) as f32 * 0.001
}

fn q_seq(q: f32) -> u32 {
    ((q + 0.4) / 0.001).round().max(0.0) as u32
}

fn pty_round_trip(samples: usize) -> Result<Histogram, String> {
    let (a, b) = serialport::TTYPort::pair().map_err(|e| e.to_string())?;
    let (mut a, mut b) = (Port::from_tty(a).map_err(|e| e.to_string())?, Port::from_tty(b).map_err(|e| e.to_string())?);
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..samples {
            match b.read(&mut buf, Duration::from_secs(1)) {
                Ok(n) if n > 0 => {
                    let _ = b.write_nonblocking(&buf[..n]);
                }
                _ => break,
            }
        }
    });
    let mut h = Histogram::new();
    let mut buf = [0u8; 64];
    for _ in 0..samples {
        let t0 = monotonic_ns();
        a.write_all(b"t0016000000000000\r", Duration::from_millis(10)).map_err(|e| e.to_string())?;
        let mut got = 0;
        while got < 18 {
            match a.read(&mut buf, Duration::from_secs(1)) {
                Ok(n) if n > 0 => got += n,
                _ => return Err("the pty echo stopped".into()),
            }
        }
        h.record(monotonic_ns() - t0);
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = echo.join();
    Ok(h)
}

pub fn run(config: &Config, config_path: &std::path::Path, seconds: f64) -> Result<E2eReport, String> {
    let bus = config.buses.first().filter(|b| b.kind == BusKind::Slcan).ok_or(
        "bench e2e drives the daemon's first bus as an slcan adapter: use a configuration whose first [[bus]] has kind = \"slcan\" (config/sim.toml)",
    )?;
    let motors: Vec<Motor> = Motor::all(config)?.into_iter().filter(|m| m.bus == 0).collect();
    let first = *motors.first().ok_or("no motor on the first bus")?;

    // The daemon's adapter: a pty whose slave stands where the configuration expects the device.
    let dir = std::env::temp_dir().join(format!("locod-bench-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let link = dir.join("can0");
    let (master, slave) = serialport::TTYPort::pair().map_err(|e| e.to_string())?;
    let slave_name = serialport::SerialPort::name(&slave).ok_or("pty without a name")?;
    drop(slave);
    let _keep = std::fs::File::open(&slave_name).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&slave_name, &link).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(config_path).map_err(|e| e.to_string())?;
    let device = bus.device.as_deref().unwrap_or_default();
    let cfg = dir.join("e2e.toml");
    std::fs::write(&cfg, text.replace(device, link.to_str().unwrap_or_default())).map_err(|e| e.to_string())?;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut daemon = Command::new(exe)
        .args(["run", "--duration", &format!("{}", seconds + 1.0), "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("LOCOD_BENCH_VERBOSE").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;

    let mut port = Port::from_tty(master).map_err(|e| e.to_string())?;
    let mut decoder = SlcanDecoder::new();
    let mut sent_ns = vec![0u64; 1800];
    let mut seq: u32 = 0;
    let mut last_seen = u32::MAX;
    let mut hist = Histogram::new();
    let mut buf = [0u8; 1024];
    let mut line = [0u8; slcan::MAX_ENCODED_LEN];
    let warmup_until = Instant::now() + Duration::from_millis(1500);
    let end = Instant::now() + Duration::from_secs_f64(seconds + 1.5);
    while Instant::now() < end {
        let n = match port.read(&mut buf, Duration::from_millis(50)) {
            Ok(n) => n,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let now = monotonic_ns();
        let mut replies: Vec<crate::io::transport::can::CanFrame> = Vec::new();
        for event in decoder.decode(&buf[..n]) {
            let Ok(SlcanEvent::Frame(f)) = event else { continue };
            let Some(m) = motors.iter().find(|m| m.can_id == f.id()) else { continue };
            let Ok(request) = mit::decode_request(&f, &m.ranges) else { continue };
            let mut q = 0.0;
            if m.joint == first.joint {
                if let MotorRequest::Command(c) = request {
                    let s = q_seq(c.q_rad);
                    if s != last_seen && (s as usize) < sent_ns.len() && sent_ns[s as usize] != 0 {
                        last_seen = s;
                        if Instant::now() > warmup_until {
                            hist.record(now.saturating_sub(sent_ns[s as usize]));
                        }
                    }
                }
                seq = (seq + 1) % 1800;
                q = seq_q(seq);
            }
            let reply = MotorReply {
                motor_id: m.can_id as u8,
                q_rad: q,
                qd_radps: 0.0,
                tau_nm: 0.0,
                temp_mosfet_c: Some(30.0),
                temp_rotor_c: Some(30.0),
                enabled: Some(true),
                error: None,
            };
            if let Ok(r) = mit::encode_reply(m.master_id.unwrap_or(0), &reply, m.model.reply_format(), &m.ranges) {
                replies.push(r);
            }
        }
        for r in &replies {
            if let Ok(len) = slcan::encode_frame(r, &mut line) {
                if r.id() == first.master_id.unwrap_or(0) && r.data().first() == Some(&(first.can_id as u8)) {
                    sent_ns[seq as usize] = monotonic_ns();
                }
                let _ = port.write_all(&line[..len], Duration::from_millis(10));
            }
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if hist.count() == 0 {
        return Err("the daemon sent no command that used a reply: did it start? run `locod run` with this configuration to see why".into());
    }
    let reference = pty_round_trip(2000)?;
    let l: Percentiles = hist.summary().into();
    let r: Percentiles = reference.summary().into();
    Ok(E2eReport {
        bench: "e2e",
        control_hz: config.rate.control_hz,
        locod_us: l,
        control_period_us: 1e6 / config.rate.control_hz as f64,
        reference: "pty round trip (write, echo, read)",
        reference_us: r,
        ratio: l.p50 / r.p50.max(1e-3),
    })
}

impl std::fmt::Display for E2eReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (l, r) = (&self.locod_us, &self.reference_us);
        writeln!(f, "sensor frame -> command back at {} Hz: p50 {:.0} us p99 {:.0} us max {:.0} us (a reply answers the previous tick: one period is {:.0} us)", self.control_hz, l.p50, l.p99, l.max, self.control_period_us)?;
        writeln!(f, "{}: p50 {:.0} us p99 {:.0} us; ratio {:.1}", self.reference, r.p50, r.p99, self.ratio)
    }
}
