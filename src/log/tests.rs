//! Logging against real files in temporary directories: encoding, episodes, errors, recovery.

use super::read::{self, ReadError};
use super::schema::{self, Tick};
use super::writer::Logger;
use super::*;
use crate::config::LogConfig;
use crate::control::messages::{PlannerStats, PolicyAction};
use crate::control::record::*;
use crate::estimate::RobotState;
use crate::types::{MotorCommands, SensorFrame};
use std::collections::BTreeMap;
use std::path::Path;

const MS: u64 = 1_000_000;

pub fn record(tick: u64, mode: Mode) -> TickRecord {
    let mut r = TickRecord {
        tick,
        t_ns: 1_000 * MS + tick * 2 * MS,
        deadline_ns: 1_000 * MS + tick * 2 * MS - 20_000,
        compute_ns: 3_000,
        skipped_cycles: 0,
        records_dropped: 0,
        n_joints: 3,
        sensors: SensorFrame::default(),
        estimate: (&RobotState::default()).into(),
        policy: PolicyAction::default(),
        commands: MotorCommands::default(),
        command_vel: [0.5, 0.0, -0.25],
        source: CommandSource::Teleop,
        mode,
        level: ControllerLevel::Primary,
        fault: None,
        flags: flags::TELEOP,
    };
    for j in 0..3 {
        r.sensors.joints[j].q_rad = tick as f64 * 0.001 + j as f64;
        r.sensors.joints[j].tau_nm = -(j as f64);
        r.sensors.joints[j].t_ns = r.t_ns - 100_000;
        r.commands.joints[j].kp = 40.0;
    }
    r.policy.obs_len = 5;
    r.policy.obs[..5].copy_from_slice(&[1.0, 2.0, 3.0, 4.0, tick as f32]);
    r.policy.action_len = 3;
    r.policy.planner =
        PlannerStats { iterations: 4, samples: 256, best_return: 1.5, mean_elite_return: 1.25, compute_us: 800.0 };
    r
}

fn config(dir: &Path) -> LogConfig {
    LogConfig { enabled: true, dir: dir.to_path_buf(), fsync_interval_ms: 100.0, ..LogConfig::default() }
}

fn meta() -> BTreeMap<String, String> {
    BTreeMap::from([("robot".to_string(), "test".to_string()), ("joint_names".to_string(), "a,b,c".to_string())])
}

fn write(dir: &Path, records: &[TickRecord]) -> writer::LogStats {
    let mut logger = Logger::new(&config(dir), meta());
    for r in records {
        logger.record(r, r.t_ns);
        logger.poll(r.t_ns);
    }
    logger.close()
}

#[test]
fn a_record_encodes_and_decodes_to_the_same_values() {
    let mut r = record(7, Mode::Walk);
    r.fault = Some(Fault::Tilt { tilt_deg: 50.0 });
    let mut buf = Vec::new();
    schema::encode(&r, 3, &mut buf);
    let t = Tick::decode(&buf).unwrap();
    assert_eq!((t.episode, t.tick, t.t_ns, t.mode, t.fault_kind), (3, 7, r.t_ns, MODE_WALK, 5));
    assert_eq!(t.fault, "tilt 50.0 deg beyond the limit");
    assert_eq!(t.joint_q_rad, vec![0.007, 1.007, 2.007]);
    assert_eq!(t.joint_tau_nm, vec![0.0, -1.0, -2.0]);
    assert_eq!(t.cmd_kp, vec![40.0; 3]);
    assert_eq!(t.policy_obs, vec![1.0, 2.0, 3.0, 4.0, 7.0]);
    assert_eq!(t.policy_action.len(), 3);
    assert_eq!((t.planner_iterations, t.planner_samples, t.planner_compute_us), (4, 256, 800.0));
    assert_eq!(t.command_vel, [0.5, 0.0, -0.25]);
    assert_eq!(t.est_projected_gravity_body, [0.0, 0.0, -1.0]);
    // Every prefix is an error, never a panic.
    for n in 0..buf.len() {
        assert!(Tick::decode(&buf[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn the_schema_lists_the_fields_in_the_order_they_decode() {
    let schema_fields: Vec<&str> = schema::MSG
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('='))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    // `Tick::decode` fills the struct in wire order, and the struct declares them in that order.
    let debug = format!("{:?}", Tick::default());
    let struct_fields: Vec<&str> =
        debug.trim_start_matches("Tick { ").split(", ").filter_map(|kv| kv.split_once(": ").map(|(k, _)| k)).collect();
    assert_eq!(schema_fields, struct_fields);
}

#[test]
fn the_tap_counts_what_the_full_ring_refuses_and_flags_the_gap() {
    let (mut tap, mut ring) = ring(4, 3);
    for t in 1..=6 {
        tap.push(record(t, Mode::Passive));
    }
    assert_eq!(tap.dropped(), 2);
    let got: Vec<u64> = std::iter::from_fn(|| ring.pop()).map(|r| r.tick).collect();
    assert_eq!(got, vec![1, 2, 3, 4]);
    tap.push(record(7, Mode::Passive));
    let r = ring.pop().unwrap();
    assert_eq!((r.tick, r.records_dropped), (7, 2));
    assert!(r.flags & flags::RECORDS_DROPPED != 0);
    tap.push(record(8, Mode::Passive));
    assert_eq!(ring.pop().unwrap().flags & flags::RECORDS_DROPPED, 0);
}

#[test]
fn episodes_end_on_walk_changes_faults_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<TickRecord> = (1..=10).map(|t| record(t, Mode::StandUp)).collect();
    records.extend((11..=20).map(|t| record(t, Mode::Walk)));
    records.extend((21..=25).map(|t| record(t, Mode::SitDown)));
    records.extend((26..=30).map(|t| {
        let mut r = record(t, Mode::Passive);
        r.fault = Some(Fault::ImuStale { age_ms: 30.0 });
        r
    }));
    let mut cfg = config(dir.path());
    cfg.episode_s = 0.1; // 50 ticks of 2 ms
    let mut logger = Logger::new(&cfg, meta());
    records.extend((31..=130).map(|t| record(t, Mode::Passive)));
    for r in &records {
        logger.record(r, r.t_ns);
    }
    let stats = logger.close();
    assert_eq!(stats.records_written, 130);
    let files = read::log_files(dir.path()).unwrap();
    let logs: Vec<_> = files.iter().map(|f| read::read_file(f).unwrap()).collect();
    let spans: Vec<(u64, u64, &str)> = logs
        .iter()
        .map(|l| (l.ticks[0].tick, l.ticks.last().unwrap().tick, l.metadata["start_reason"].as_str()))
        .collect();
    assert_eq!(
        spans,
        vec![
            (1, 10, "start"),
            (11, 20, "walk started"),
            (21, 25, "walk ended"),
            (26, 75, "fault"),
            (76, 125, "length"),
            (126, 130, "length")
        ]
    );
    assert_eq!(logs[0].end.as_ref().unwrap()["reason"], "walk started");
    assert_eq!(logs[5].end.as_ref().unwrap()["reason"], "stop");
    assert!(logs.iter().enumerate().all(|(i, l)| l.ticks.iter().all(|t| t.episode == i as u64)));
    assert_eq!(logs[0].joint_names(), vec!["a", "b", "c"]);
    assert!(!files.iter().any(|f| f.to_string_lossy().ends_with(".part")));
}

#[test]
fn an_unwritable_directory_stops_logging_and_it_resumes_when_writable() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("logs");
    std::fs::write(&dir, b"a file where the directory should be").unwrap();
    let mut logger = Logger::new(&config(&dir), meta());
    for t in 1..=100 {
        let r = record(t, Mode::Passive);
        logger.record(&r, r.t_ns);
    }
    assert_eq!(logger.stats().records_written, 0);
    assert_eq!(logger.stats().records_lost, 100);
    assert_eq!(logger.stats().failures, 1);
    std::fs::remove_file(&dir).unwrap();
    // Retries once a second of (logger) time has passed.
    for t in 101..=800 {
        let r = record(t, Mode::Passive);
        logger.record(&r, r.t_ns);
    }
    let stats = logger.close();
    assert_eq!(stats.records_lost + stats.records_written, 800);
    assert!(stats.records_written > 0 && stats.records_written < 800 - 100, "{stats:?}");
    let log = read::read_file(&read::log_files(&dir).unwrap()[0]).unwrap();
    assert_eq!(log.ticks.len() as u64, stats.records_written);
}

#[test]
fn the_quota_removes_the_oldest_closed_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.episode_s = 0.2;
    cfg.quota_mb = 0.05;
    cfg.compression = crate::config::LogCompression::None;
    let mut logger = Logger::new(&cfg, meta());
    for t in 1..=1000 {
        let r = record(t, Mode::Passive);
        logger.record(&r, r.t_ns);
        logger.poll(r.t_ns);
    }
    let stats = logger.close();
    assert!(stats.files_removed_by_quota > 0, "{stats:?}");
    let files = read::log_files(dir.path()).unwrap();
    // The newest survive; file names sort oldest first.
    let last = read::read_file(files.last().unwrap()).unwrap();
    assert_eq!(last.ticks.last().unwrap().tick, 1000);
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let largest = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).max().unwrap();
    assert!(total <= (0.05 * 1024.0 * 1024.0) as u64 + largest, "{total}");
}

#[test]
fn recovery_keeps_every_complete_chunk_of_a_cut_short_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = Logger::new(&config(dir.path()), meta());
    for t in 1..=300 {
        let r = record(t, Mode::Passive);
        logger.record(&r, r.t_ns);
        if t == 200 {
            logger.poll(u64::MAX); // a sync: the chunk with ticks 1..=200 is on disk
        }
    }
    let part = logger.current_file().unwrap().to_path_buf();
    // A crash: the logger's buffers are lost, the file stays as it is on disk.
    std::mem::forget(logger);
    let on_disk = std::fs::read(&part).unwrap();
    // A half-written record at the end, as a power cut would leave it.
    std::fs::write(&part, [&on_disk[..], &[0x06, 0x10, 0x00]].concat()).unwrap();
    assert!(matches!(read::read_file(&part), Err(ReadError::Corrupt { .. })));
    let r = read::recover(&part).unwrap();
    assert_eq!(r.messages, 200);
    assert!(!part.exists());
    let log = read::read_file(r.output.as_ref().unwrap()).unwrap();
    assert_eq!(log.ticks.iter().map(|t| t.tick).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    assert!(log.metadata.contains_key("recovered_from"));
}

#[test]
fn a_chunk_claiming_an_absurd_size_is_damage_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &(1..=50).map(|t| record(t, Mode::Passive)).collect::<Vec<_>>());
    let good = read::log_files(dir.path()).unwrap().remove(0);
    let mut b = std::fs::read(&good).unwrap();
    // The first chunk record (opcode 0x06): its body starts with two u64 times, then the size.
    let mut at = 8;
    while b[at] != 0x06 {
        at += 9 + u64::from_le_bytes(b[at + 1..at + 9].try_into().unwrap()) as usize;
    }
    b[at + 25..at + 33].copy_from_slice(&(1u64 << 42).to_le_bytes());
    let s = read::scan(&b);
    assert!(!s.complete);
    let why = s.stopped.unwrap();
    assert!(why.contains(&format!("damaged chunk at byte {at}: it claims 4398046511104 bytes")), "{why}");
    let bad = dir.path().join("bad.mcap");
    std::fs::write(&bad, &b).unwrap();
    let _ = read::read_file(&bad); // an error or what precedes the chunk, not an abort
}

#[test]
fn damaged_files_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &(1..=400).map(|t| record(t, Mode::Passive)).collect::<Vec<_>>());
    let good = read::log_files(dir.path()).unwrap().remove(0);
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.mcap");
    let mut seed = 0x2545f491u64;
    for i in 0..64 {
        let mut b = bytes.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed as usize) % b.len();
        if i % 2 == 0 {
            b.truncate(at);
        } else {
            b[at] ^= 0x5a;
        }
        std::fs::write(&bad, &b).unwrap();
        let _ = read::read_file(&bad);
        let _ = read::recover(&bad);
    }
    std::fs::write(&bad, b"not an mcap file at all").unwrap();
    assert!(matches!(read::read_file(&bad), Err(ReadError::NotMcap { .. })));
    assert!(read::read_file(&bad).unwrap_err().to_string().contains("not an MCAP file"));
}

#[test]
fn a_part_file_that_cannot_be_recovered_is_an_error_naming_it_and_an_empty_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &(1..=50).map(|t| record(t, Mode::Passive)).collect::<Vec<_>>());
    let junk = dir.path().join("20260101T000000Z-test-e0007.mcap.part");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(&junk, &random).unwrap();
    let empty = dir.path().join("20260101T000000Z-test-e0008.mcap.part");
    std::fs::write(&empty, b"").unwrap();

    let done = read::recover_dir(dir.path()).unwrap();
    assert_eq!(done.failed.len(), 1, "{done:?}");
    let e = done.failed[0].to_string();
    assert!(e.starts_with(&junk.display().to_string()), "names the .part file: {e}");
    assert!(junk.exists(), "a file that could not be recovered is kept");
    assert_eq!(done.recovered.len(), 1, "{done:?}");
    assert!(done.recovered[0].output.is_none() && !empty.exists(), "an empty .part is removed: {done:?}");
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".recovering")), "{names:?}");
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        assert!(e.metadata().unwrap().len() > 0, "{:?} is empty", e.file_name());
    }
}

#[test]
fn records_count_as_written_only_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = Logger::new(&config(dir.path()), meta());
    for t in 1..=30 {
        let r = record(t, Mode::Passive);
        logger.record(&r, r.t_ns);
    }
    assert_eq!(logger.stats().records_written, 0, "30 records in memory, none synced");
    logger.poll(u64::MAX);
    assert_eq!(logger.stats().records_written, 30);
    let r = record(31, Mode::Passive);
    logger.record(&r, r.t_ns);
    assert_eq!(logger.close().records_written, 31, "closing the file makes the rest durable");
}
