//! The logger: drains tick records into MCAP files, one per episode, on an ordinary thread.
//!
//! An episode ends when the mode enters or leaves Walk, when a fault appears, or after
//! `[log] episode_s`; the next record opens the next file. Files are written as `NAME.mcap.part`
//! and renamed to `NAME.mcap` once closed (summary written, synced). Every
//! `fsync_interval_ms` the open file's chunk is closed and the file synced, so a crash or a
//! power cut loses at most that much (`read::recover` finishes a `.part` file; the logger does
//! it for leftovers when it starts). When the directory cannot be written (disk full, gone,
//! read-only) logging stops, the records are counted as lost, the journal says so once with the
//! operating system's reason (`No space left on device`), and every second the logger tries
//! again. A record counts as written only once the chunk holding it is synced (or its file
//! closed): what a failure leaves unsynced is counted as lost, and a `.part` file that holds no
//! synced record is removed rather than left empty. The oldest closed files are deleted to stay
//! under `quota_mb`.
//!
//! Not for: the real-time side (`LogTap`) or reading logs back (`read`).

use super::schema::{self, EPISODE_END_NAME, METADATA_NAME};
use super::{fault_code, mode_code, MODE_NAMES, MODE_WALK};
use crate::config::{Config, LogCompression, LogConfig};
use crate::control::messages::ShadowStep;
use crate::control::record::TickRecord;
use crate::report;
use crate::rt::clock::{monotonic_ns, NS_PER_MS, NS_PER_S};
use crate::rt::spsc::Consumer;
use crate::rt::thread::{self, Setup, SpawnError};
use crate::types::provenance::{sha256_hex, ModelProvenance};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// How long the logger waits before trying a directory that failed again.
const RETRY_NS: u64 = NS_PER_S;
const WRITE_BUFFER_BYTES: usize = 256 << 10;
/// Chunks end at this size or at the next sync, whichever comes first.
const CHUNK_BYTES: u64 = 1 << 20;

/// What the logger did, for the run summary and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LogStats {
    /// Records on disk: in a chunk that was synced, or in a file that was closed. A `.part` file
    /// left by a failure holds exactly these (`locod log recover` finishes it).
    pub records_written: u64,
    /// Records discarded while logging was stopped by an error, and records that were not yet
    /// synced when the error came.
    pub records_lost: u64,
    pub(crate) files_closed: u64,
    /// Size of the closed files.
    pub(crate) bytes_closed: u64,
    /// Times logging stopped because of an error.
    pub(crate) failures: u64,
    pub(crate) files_removed_by_quota: u64,
    /// Shadow model steps written (`[controller] shadow`), and those that arrived while no file
    /// was open or logging was stopped.
    pub shadow_written: u64,
    pub(crate) shadow_unlogged: u64,
}

/// Why the logger could not write: the step, the file, and the operating system's error (its
/// `kind()` is kept: `StorageFull` for a full disk).
#[derive(Debug)]
pub(crate) struct DiskError {
    pub step: &'static str,
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl DiskError {
    fn new(step: &'static str, path: &Path, error: std::io::Error) -> Self {
        Self { step, path: path.to_path_buf(), error }
    }

    fn mcap(step: &'static str, path: &Path, error: mcap::McapError) -> Self {
        Self::new(step, path, io_error(error))
    }
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The OS error is the source: `report::chain` shows "writing X: No space left on device".
        write!(f, "{} {}", self.step, self.path.display())
    }
}

impl std::error::Error for DiskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The operating system's error inside an MCAP error (whose own text, "I/O error from writing, or
/// reading a compression stream", hides it); other MCAP errors as an `Other` error.
pub(crate) fn io_error(e: mcap::McapError) -> std::io::Error {
    match e {
        mcap::McapError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The `locod` metadata record every file starts with: the robot, rates and joints, the
/// configuration (its text and SHA-256), locod's version, and each model's file, SHA-256 and
/// contract (`model.<role>.*`).
pub fn metadata(config: &Config, models: &[ModelProvenance]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("robot".into(), config.robot.name.clone());
    m.insert("software".into(), format!("locod {}", env!("CARGO_PKG_VERSION")));
    m.insert("control_hz".into(), config.rate.control_hz.to_string());
    m.insert("policy_hz".into(), config.rate.policy_hz.to_string());
    let joints: Vec<&str> = config.joints.iter().map(|j| j.name.as_str()).collect();
    m.insert("joint_names".into(), joints.join(","));
    m.insert("config_file".into(), config.source.display().to_string());
    let text = config.to_toml();
    m.insert("config_sha256".into(), sha256_hex(text.as_bytes()));
    m.insert("config".into(), text);
    let files: Vec<String> = models.iter().map(|p| format!("{} sha256:{}", p.path.display(), p.sha256)).collect();
    m.insert("model_files".into(), files.join("\n"));
    for p in models {
        m.insert(format!("model.{}.path", p.role), p.path.display().to_string());
        m.insert(format!("model.{}.sha256", p.role), p.sha256.clone());
        m.insert(format!("model.{}.contract", p.role), p.contract.clone());
    }
    m
}

/// UTC wall-clock time as `YYYYMMDDTHHMMSSZ`, for file names only.
pub(crate) fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// An episode file's writer, its sync handle, its tick channel and its shadow channel.
type Header = (mcap::Writer<BufWriter<File>>, File, u16, Option<u16>);

struct Episode {
    writer: mcap::Writer<BufWriter<File>>,
    /// The same open file, for fsync while the writer owns it.
    sync: File,
    part: PathBuf,
    path: PathBuf,
    channel: u16,
    sequence: u32,
    /// The shadow channel and its sequence, when a shadow runs.
    shadow: Option<(u16, u32)>,
    start_t_ns: u64,
    records: u64,
    /// Records handed to the writer since the last successful sync (in memory, not yet durable).
    unsynced: u64,
    last_sync_ns: u64,
}

struct Down {
    reason: DiskError,
    retry_at_ns: u64,
    lost_at_start: u64,
}

pub struct Logger {
    cfg: LogConfig,
    meta: BTreeMap<String, String>,
    /// Metadata naming a reloaded model, and the record time from which it holds.
    next_meta: Option<(u64, BTreeMap<String, String>)>,
    /// Files carry a shadow channel (`with_shadow`).
    shadow: bool,
    session: String,
    next_episode: u64,
    file: Option<Episode>,
    /// Mode code and fault presence of the previous record.
    prev: Option<(u8, bool)>,
    /// Why the next file starts.
    start_reason: &'static str,
    down: Option<Down>,
    buf: Vec<u8>,
    stats: LogStats,
    episode_ns: u64,
    fsync_ns: u64,
}

impl Logger {
    pub fn new(cfg: &LogConfig, meta: BTreeMap<String, String>) -> Self {
        Self {
            cfg: cfg.clone(),
            meta,
            next_meta: None,
            shadow: false,
            session: utc_stamp(),
            next_episode: 0,
            file: None,
            prev: None,
            start_reason: "start",
            down: None,
            buf: Vec::with_capacity(16 << 10),
            stats: LogStats::default(),
            episode_ns: (cfg.episode_s * NS_PER_S as f64) as u64,
            fsync_ns: (cfg.fsync_interval_ms * NS_PER_MS as f64) as u64,
        }
    }

    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// The file being written, if any.
    pub(crate) fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.part.as_path())
    }

    /// Finishes `.part` files left by a crash in the log directory.
    pub(crate) fn recover_leftovers(&self) {
        if !self.cfg.dir.is_dir() {
            return;
        }
        match super::read::recover_dir(&self.cfg.dir) {
            Ok(done) => {
                for r in done.recovered {
                    report::info(format!("log: recovered {}", r));
                }
                for e in done.failed {
                    report::warn(format!("log: cannot recover {e}"));
                }
            }
            Err(e) => report::warn(format!("log: cannot recover earlier files: {e}")),
        }
    }

    /// Why this record starts a new episode, if it does.
    fn boundary(&self, r: &TickRecord) -> Option<&'static str> {
        let (mode, fault) = (mode_code(r.mode), fault_code(&r.fault) != 0);
        match self.prev {
            Some((prev, _)) if prev != mode && prev == MODE_WALK => Some("walk ended"),
            Some((prev, _)) if prev != mode && mode == MODE_WALK => Some("walk started"),
            Some((_, false)) if fault => Some("fault"),
            _ => match &self.file {
                Some(f) if r.t_ns.saturating_sub(f.start_t_ns) >= self.episode_ns => Some("length"),
                _ => None,
            },
        }
    }

    /// Files also carry the shadow model's steps (`shadow`), on their own channel.
    pub fn with_shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Writes a shadow model's step into the open file (none open: counted as unlogged).
    pub fn shadow(&mut self, step: &ShadowStep, now_ns: u64) {
        let episode = self.next_episode.saturating_sub(1);
        let Some((f, (channel, sequence))) = self.file.as_mut().and_then(|f| f.shadow.map(|c| (f, c))) else {
            self.stats.shadow_unlogged += 1;
            return;
        };
        schema::encode_shadow(step, episode, &mut self.buf);
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence,
            log_time: step.t_ns,
            publish_time: step.t_ns,
        };
        match f.writer.write_to_known_channel(&header, &self.buf) {
            Ok(()) => {
                f.shadow = Some((channel, sequence.wrapping_add(1)));
                self.stats.shadow_written += 1;
            }
            Err(e) => {
                let e = DiskError::mcap("writing", &f.part, e);
                self.stats.shadow_unlogged += 1;
                self.go_down(e, now_ns)
            }
        }
    }

    /// From the first record at or after `from_t_ns`, files carry `meta` (a reloaded model's
    /// provenance): the file open then ends there, so that each file names the model that acted.
    pub fn switch_metadata(&mut self, from_t_ns: u64, meta: BTreeMap<String, String>) {
        self.next_meta = Some((from_t_ns, meta));
    }

    /// Writes one record, opening and closing episode files as needed. Errors stop logging.
    pub fn record(&mut self, r: &TickRecord, now_ns: u64) {
        if self.next_meta.as_ref().is_some_and(|(from, _)| r.t_ns >= *from) {
            if let Some((_, meta)) = self.next_meta.take() {
                self.meta = meta;
                self.split("model reloaded");
            }
        }
        if let Some(reason) = self.boundary(r) {
            self.start_reason = reason;
            if self.file.is_some() {
                self.close_episode(reason);
            }
        }
        self.prev = Some((mode_code(r.mode), fault_code(&r.fault) != 0));
        if self.file.is_none() {
            if let Some(d) = &self.down {
                if now_ns < d.retry_at_ns {
                    self.stats.records_lost += 1;
                    return;
                }
            }
            if let Err(e) = self.open_episode(r.t_ns, now_ns) {
                self.go_down(e, now_ns);
                self.stats.records_lost += 1;
                return;
            }
            if let Some(d) = self.down.take() {
                let path = self.current_file().map(|p| p.display().to_string()).unwrap_or_default();
                report::info(format!(
                    "log: resumed in {path}; {} records were lost while it was stopped ({})",
                    self.stats.records_lost - d.lost_at_start,
                    report::chain(&d.reason)
                ));
            }
        }
        let episode = self.next_episode - 1;
        let Some(f) = self.file.as_mut() else { return };
        schema::encode(r, episode, &mut self.buf);
        let header = mcap::records::MessageHeader {
            channel_id: f.channel,
            sequence: f.sequence,
            log_time: r.t_ns,
            publish_time: r.t_ns,
        };
        match f.writer.write_to_known_channel(&header, &self.buf) {
            Ok(()) => {
                f.sequence = f.sequence.wrapping_add(1);
                f.records += 1;
                f.unsynced += 1;
            }
            Err(e) => {
                let e = DiskError::mcap("writing", &f.part, e);
                self.stats.records_lost += 1;
                self.go_down(e, now_ns)
            }
        }
    }

    /// Periodic work: close the chunk and fsync every `fsync_interval_ms`.
    pub(crate) fn poll(&mut self, now_ns: u64) {
        let Some(f) = self.file.as_mut() else { return };
        if now_ns.saturating_sub(f.last_sync_ns) < self.fsync_ns {
            return;
        }
        f.last_sync_ns = now_ns;
        let res = f.writer.flush().map_err(io_error).and_then(|()| f.sync.sync_data());
        if let Err(e) = res {
            let e = DiskError::new("syncing", &f.part, e);
            self.go_down(e, now_ns);
            return;
        }
        self.stats.records_written += f.unsynced;
        f.unsynced = 0;
        self.enforce_quota();
    }

    /// Closes the open file now (`reason` in its end record), so that the next record starts a
    /// new one: for a writer whose records restart their clock, like `locod eval`'s episodes.
    pub fn split(&mut self, reason: &'static str) {
        if self.file.is_some() {
            self.close_episode(reason);
        }
        self.prev = None;
        self.start_reason = reason;
    }

    /// Closes the open episode; returns the totals.
    pub fn close(mut self) -> LogStats {
        if self.file.is_some() {
            self.close_episode("stop");
        }
        self.stats
    }

    fn go_down(&mut self, reason: DiskError, now_ns: u64) {
        // Whatever reached the disk stays as a `.part` file; `recover` finishes it later.
        // `into_inner` drops the writer without trying to write a summary to a failing disk.
        if let Some(f) = self.file.take() {
            drop(f.writer.into_inner());
            self.abandon(&f.part, f.records, f.unsynced);
        }
        self.stats.failures += 1;
        if self.down.is_none() {
            report::warn(format!(
                "log: recording stopped: {}. The robot keeps running; records are discarded until {} can be written again (retrying every second)",
                report::chain(&reason),
                self.cfg.dir.display()
            ));
            self.down = Some(Down { reason, retry_at_ns: now_ns + RETRY_NS, lost_at_start: self.stats.records_lost });
        } else if let Some(d) = self.down.as_mut() {
            d.retry_at_ns = now_ns + RETRY_NS;
        }
    }

    /// The records of a file that failed: those not synced are lost, and a file with no synced
    /// record holds nothing to recover, so it does not stay behind (empty or a bare header).
    fn abandon(&mut self, part: &Path, records: u64, unsynced: u64) {
        self.stats.records_lost += unsynced;
        if records == unsynced {
            let _ = std::fs::remove_file(part);
        }
    }

    fn open_episode(&mut self, t_ns: u64, now_ns: u64) -> Result<(), DiskError> {
        let dir = self.cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| DiskError::new("creating", &dir, e))?;
        self.enforce_quota();
        let episode = self.next_episode;
        let robot = self.meta.get("robot").map_or("robot", String::as_str);
        let name = format!("{}-{}-e{episode:04}.mcap", self.session, robot);
        let path = dir.join(&name);
        let part = dir.join(format!("{name}.part"));
        let file = File::create(&part).map_err(|e| DiskError::new("creating", &part, e))?;
        let header = self.write_header(file, &part, episode);
        let (writer, sync, channel, shadow) = match header {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        self.next_episode += 1;
        self.file = Some(Episode {
            writer,
            sync,
            part,
            path,
            channel,
            sequence: 0,
            shadow: shadow.map(|c| (c, 0)),
            start_t_ns: t_ns,
            records: 0,
            unsynced: 0,
            last_sync_ns: now_ns,
        });
        Ok(())
    }

    /// The file's header: the MCAP writer on `file`, a second handle for syncing, the tick
    /// channel and the shadow channel (with a shadow).
    fn write_header(&self, file: File, part: &Path, episode: u64) -> Result<Header, DiskError> {
        let sync = file.try_clone().map_err(|e| DiskError::new("opening", part, e))?;
        let compression = match self.cfg.compression {
            LogCompression::Zstd => Some(mcap::Compression::Zstd),
            LogCompression::Lz4 => Some(mcap::Compression::Lz4),
            LogCompression::None => None,
        };
        let err = |e: mcap::McapError| DiskError::mcap("writing", part, e);
        let mut writer = mcap::WriteOptions::new()
            .compression(compression)
            .chunk_size(Some(CHUNK_BYTES))
            .profile("ros2")
            .library(format!("locod {}", env!("CARGO_PKG_VERSION")))
            .create(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file))
            .map_err(err)?;
        let schema_id =
            writer.add_schema(schema::SCHEMA_NAME, schema::SCHEMA_ENCODING, schema::MSG.as_bytes()).map_err(err)?;
        let channel =
            writer.add_channel(schema_id, schema::TOPIC, schema::MESSAGE_ENCODING, &BTreeMap::new()).map_err(err)?;
        let shadow = if self.shadow {
            let id = writer
                .add_schema(schema::SHADOW_SCHEMA_NAME, schema::SCHEMA_ENCODING, schema::SHADOW_MSG.as_bytes())
                .map_err(err)?;
            Some(
                writer
                    .add_channel(id, schema::SHADOW_TOPIC, schema::MESSAGE_ENCODING, &BTreeMap::new())
                    .map_err(err)?,
            )
        } else {
            None
        };
        let mut meta = self.meta.clone();
        meta.insert("session".into(), self.session.clone());
        meta.insert("episode".into(), episode.to_string());
        meta.insert("start_reason".into(), self.start_reason.into());
        meta.insert("start_utc".into(), utc_stamp());
        writer.write_metadata(&mcap::records::Metadata { name: METADATA_NAME.into(), metadata: meta }).map_err(err)?;
        Ok((writer, sync, channel, shadow))
    }

    fn close_episode(&mut self, reason: &str) {
        let Some(mut f) = self.file.take() else { return };
        let part = f.part.clone();
        let mut durable = false;
        let result = (|| -> Result<u64, std::io::Error> {
            let end = BTreeMap::from([
                ("reason".to_string(), reason.to_string()),
                ("records".to_string(), f.records.to_string()),
            ]);
            f.writer
                .write_metadata(&mcap::records::Metadata { name: EPISODE_END_NAME.into(), metadata: end })
                .map_err(io_error)?;
            f.writer.finish().map_err(io_error)?;
            let file = f.writer.into_inner().into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            durable = true;
            let bytes = file.metadata()?.len();
            std::fs::rename(&f.part, &f.path)?;
            // The rename itself must survive a power cut.
            if let Some(dir) = f.path.parent() {
                File::open(dir).and_then(|d| d.sync_all())?;
            }
            Ok(bytes)
        })();
        match result {
            Ok(bytes) => {
                self.stats.records_written += f.unsynced;
                self.stats.files_closed += 1;
                self.stats.bytes_closed += bytes;
            }
            Err(e) if durable => {
                // Complete and synced, only not renamed: `locod log recover` finishes it.
                self.stats.records_written += f.unsynced;
                self.go_down(DiskError::new("closing", &part, e), monotonic_ns())
            }
            Err(e) => {
                // The failed writer is gone: account for its file here, then stop.
                self.abandon(&part, f.records, f.unsynced);
                self.go_down(DiskError::new("closing", &part, e), monotonic_ns())
            }
        }
    }

    /// Deletes the oldest closed files while the directory is over its quota.
    fn enforce_quota(&mut self) {
        let quota = (self.cfg.quota_mb * 1024.0 * 1024.0) as u64;
        let Ok(entries) = std::fs::read_dir(&self.cfg.dir) else { return };
        let mut closed: Vec<(PathBuf, u64)> = Vec::new();
        let mut total = 0u64;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let size = e.metadata().map_or(0, |m| m.len());
            if name.ends_with(".mcap") {
                closed.push((e.path(), size));
                total += size;
            } else if name.ends_with(".mcap.part") {
                total += size;
            }
        }
        // Names start with a UTC stamp and an episode number: sorted by name is oldest first.
        closed.sort();
        for (path, size) in closed {
            if total <= quota {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
                self.stats.files_removed_by_quota += 1;
                report::info(format!("log: quota {} MB: removed {}", self.cfg.quota_mb, path.display()));
            }
        }
    }
}

/// A new metadata record for the files from a record time on (`Logger::switch_metadata`).
pub type MetadataSwitch = (u64, BTreeMap<String, String>);

/// What the logger thread reads besides the tick ring: metadata switches (a reloaded model) and
/// the shadow model's steps (from the policy thread).
#[derive(Default)]
pub struct LoggerInputs {
    pub switches: Option<Receiver<MetadataSwitch>>,
    pub shadow: Option<Consumer<ShadowStep>>,
}

/// Runs `logger` on the calling thread until `stop` is set and the ring is empty.
pub fn run(
    mut logger: Logger,
    mut ring: Consumer<TickRecord>,
    mut inputs: LoggerInputs,
    stop: &AtomicBool,
) -> LogStats {
    logger.recover_leftovers();
    loop {
        for (from_t_ns, meta) in inputs.switches.iter().flat_map(|r| r.try_iter()) {
            logger.switch_metadata(from_t_ns, meta);
        }
        let mut n = 0u32;
        while let Some(r) = ring.pop() {
            logger.record(&r, monotonic_ns());
            n += 1;
            if n % 64 == 0 {
                logger.poll(monotonic_ns());
            }
        }
        // After the ticks they were computed beside, so that they land in the same file.
        while let Some(s) = inputs.shadow.as_mut().and_then(|c| c.pop()) {
            logger.shadow(&s, monotonic_ns());
        }
        logger.poll(monotonic_ns());
        if n == 0 {
            if stop.load(Ordering::Acquire) && ring.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    logger.close()
}

/// Starts the logger thread (ordinary priority).
pub fn spawn(
    logger: Logger,
    ring: Consumer<TickRecord>,
    inputs: LoggerInputs,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<LogStats>, SpawnError> {
    thread::spawn("locod-logger", "logger", Setup::Plain, move |_| run(logger, ring, inputs, &stop))
}

/// The names of the mode codes, for messages.
pub fn mode_name(code: u8) -> &'static str {
    MODE_NAMES.get(code as usize).copied().unwrap_or("unknown")
}
