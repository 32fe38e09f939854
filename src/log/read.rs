//! Reading logs back: whole files for the tools, and recovery of files a crash left unfinished.
//!
//! A closed file ends with a summary and the MCAP magic. A `.part` file (the daemon was killed,
//! or the disk failed) ends wherever the last write stopped: `recover` keeps every record up to
//! the last complete chunk and writes a closed file. Bad input (not MCAP, a damaged chunk, a
//! message that does not decode) is a `ReadError` naming the file, never a panic; so is a
//! recovered copy that cannot be written (a full disk): it names the `.part` file, keeps the
//! operating system's error, and leaves no partial copy behind. An empty `.part` file (nothing
//! ever reached the disk) is removed.
//!
//! Not for: writing logs during a run (`writer`).

use super::schema::{self, Shadow, Tick, EPISODE_END_NAME, METADATA_NAME};
use mcap::records::Record;
use mcap::sans_io::{LinearReadEvent, LinearReader, LinearReaderOptions};
use std::collections::BTreeMap;
use std::fmt;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"\x89MCAP0\r\n";

#[derive(Debug)]
pub enum ReadError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    NotMcap {
        path: PathBuf,
    },
    /// The file is damaged or cut short after `messages` good messages.
    Corrupt {
        path: PathBuf,
        messages: usize,
        detail: String,
    },
    /// The file has no `/locod/tick` channel with the `locod_msgs/msg/Tick` schema.
    NotLocod {
        path: PathBuf,
    },
    /// Nothing in the directory to read.
    Empty {
        path: PathBuf,
    },
    /// The recovered copy of `input` could not be written (no partial copy is left behind).
    Write {
        input: PathBuf,
        output: PathBuf,
        error: std::io::Error,
    },
}

impl ReadError {
    /// The operating system's error, if this is one (`kind()` says `StorageFull` for a full disk).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            ReadError::Io { error, .. } | ReadError::Write { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ReadError::NotMcap { path } => write!(f, "{}: not an MCAP file (no MCAP magic at the start)", path.display()),
            ReadError::Corrupt { path, messages, detail } => write!(
                f,
                "{}: damaged or incomplete after {messages} messages ({detail}); `locod log recover` keeps what is intact",
                path.display()
            ),
            ReadError::NotLocod { path } => {
                write!(f, "{}: not a locod log (no {} channel of {})", path.display(), schema::TOPIC, schema::SCHEMA_NAME)
            }
            ReadError::Empty { path } => write!(f, "{}: no .mcap logs here", path.display()),
            ReadError::Write { input, output, error } => {
                write!(f, "{}: cannot write the recovered copy {}: {error}", input.display(), output.display())
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// The raw content of a file, as far as it could be read.
pub struct Scan {
    pub metadata: Vec<(String, BTreeMap<String, String>)>,
    /// Log time and CDR bytes of every tick message.
    pub messages: Vec<(u64, Vec<u8>)>,
    /// Log time and CDR bytes of every shadow step (`[controller] shadow`).
    pub shadow: Vec<(u64, Vec<u8>)>,
    /// The file has its summary and closing magic.
    pub complete: bool,
    /// Why reading stopped early, if it did.
    pub stopped: Option<String>,
    pub(crate) has_tick_channel: bool,
}

/// A chunk claiming more than this uncompressed is damage, not data (the writer's chunks are a
/// few megabytes): the MCAP reader would try to allocate whatever a damaged header claims.
const MAX_CHUNK_BYTES: u64 = 1 << 30;

/// The longest prefix of `data` whose chunks claim a plausible uncompressed size, and why it ends
/// early if it does. Walks the top-level records (opcode, little-endian u64 length, body); a chunk
/// (opcode 0x06) starts with two u64 times and its u64 uncompressed size.
fn plausible_prefix(data: &[u8]) -> (usize, Option<String>) {
    let u64_at = |i: usize| data.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let mut at = MAGIC.len();
    while let (Some(&op), Some(len)) = (data.get(at), u64_at(at + 1)) {
        let body = at + 9;
        if op == 0x06 {
            if let Some(size) = u64_at(body + 16) {
                if size > MAX_CHUNK_BYTES {
                    return (at, Some(format!("damaged chunk at byte {at}: it claims {size} bytes uncompressed")));
                }
            }
        }
        match usize::try_from(len).ok().and_then(|l| body.checked_add(l)) {
            Some(next) if next <= data.len() => at = next,
            _ => break,
        }
    }
    (data.len(), None)
}

/// Every record of `data`, chunks unpacked, as `mcap::read::ChunkFlattener` gives them, but with
/// a record length limit: inside a damaged chunk a record may claim any length, and the
/// flattener would try to allocate it.
struct Records<'a> {
    buf: &'a [u8],
    reader: LinearReader,
}

impl<'a> Records<'a> {
    fn new(buf: &'a [u8]) -> Self {
        let options = LinearReaderOptions::default()
            .with_skip_end_magic(true)
            .with_validate_chunk_crcs(true)
            .with_record_length_limit(MAX_CHUNK_BYTES as usize);
        Records { buf, reader: LinearReader::new_with_options(options) }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = mcap::McapResult<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(event) = self.reader.next_event() {
            match event {
                Ok(LinearReadEvent::ReadRequest(need)) => {
                    let len = need.min(self.buf.len());
                    self.reader.insert(len).copy_from_slice(&self.buf[..len]);
                    self.reader.notify_read(len);
                    self.buf = &self.buf[len..];
                }
                Ok(LinearReadEvent::Record { data, opcode }) => {
                    return Some(mcap::parse_record(opcode, data).map(|r| r.into_owned()));
                }
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

/// Reads `data` record by record; stops at the first record that is damaged or cut short.
pub fn scan(data: &[u8]) -> Scan {
    let (end, damaged) = plausible_prefix(data);
    let complete = damaged.is_none() && data.len() >= 2 * MAGIC.len() && data.ends_with(MAGIC);
    let data = &data[..end];
    let mut s = Scan {
        metadata: Vec::new(),
        messages: Vec::new(),
        shadow: Vec::new(),
        complete,
        stopped: None,
        has_tick_channel: false,
    };
    let records = Records::new(data);
    let (mut tick_schemas, mut shadow_schemas) = (Vec::new(), Vec::new());
    let (mut tick_channel, mut shadow_channel) = (None, None);
    for record in records {
        match record {
            Ok(Record::Schema { header, .. }) if header.name == schema::SCHEMA_NAME => tick_schemas.push(header.id),
            Ok(Record::Schema { header, .. }) if header.name == schema::SHADOW_SCHEMA_NAME => {
                shadow_schemas.push(header.id)
            }
            Ok(Record::Channel(c)) if c.topic == schema::SHADOW_TOPIC && shadow_schemas.contains(&c.schema_id) => {
                shadow_channel = Some(c.id)
            }
            Ok(Record::Channel(c)) if c.topic == schema::TOPIC && tick_schemas.contains(&c.schema_id) => {
                tick_channel = Some(c.id);
                s.has_tick_channel = true;
            }
            Ok(Record::Message { header, data }) if Some(header.channel_id) == tick_channel => {
                s.messages.push((header.log_time, data.into_owned()))
            }
            Ok(Record::Message { header, data }) if Some(header.channel_id) == shadow_channel => {
                s.shadow.push((header.log_time, data.into_owned()))
            }
            Ok(Record::Metadata(m)) => s.metadata.push((m.name, m.metadata)),
            Ok(Record::Footer(_)) | Ok(Record::DataEnd(_)) if s.complete => break,
            Ok(_) => {}
            Err(e) => {
                s.stopped = Some(e.to_string());
                s.complete = false;
                break;
            }
        }
    }
    if s.stopped.is_none() {
        s.stopped = damaged;
    }
    s
}

/// A log file decoded.
#[derive(Debug)]
pub struct LogFile {
    pub path: PathBuf,
    /// The `locod` metadata record (robot, configuration, joints, episode).
    pub metadata: BTreeMap<String, String>,
    /// The episode-end record (reason, records), absent in a recovered file.
    pub end: Option<BTreeMap<String, String>>,
    pub ticks: Vec<Tick>,
    /// The shadow model's steps, in the order written (empty without a shadow).
    pub shadow: Vec<Shadow>,
}

impl LogFile {
    pub fn joint_names(&self) -> Vec<String> {
        self.metadata.get("joint_names").map_or_else(Vec::new, |s| s.split(',').map(str::to_string).collect())
    }

    pub fn control_hz(&self) -> Option<u32> {
        self.metadata.get("control_hz").and_then(|s| s.parse().ok())
    }

    pub fn policy_hz(&self) -> Option<u32> {
        self.metadata.get("policy_hz").and_then(|s| s.parse().ok())
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    let data = std::fs::read(path).map_err(|error| ReadError::Io { path: path.into(), error })?;
    if !data.starts_with(MAGIC) {
        return Err(ReadError::NotMcap { path: path.into() });
    }
    Ok(data)
}

/// Reads a closed log; a file that is damaged or cut short is an error.
pub fn read_file(path: &Path) -> Result<LogFile, ReadError> {
    let data = read_bytes(path)?;
    let s = scan(&data);
    let corrupt = |messages, detail: String| ReadError::Corrupt { path: path.into(), messages, detail };
    if let Some(why) = s.stopped {
        return Err(corrupt(s.messages.len(), why));
    }
    if !s.complete {
        return Err(corrupt(s.messages.len(), "no summary: the file was not closed".into()));
    }
    if !s.has_tick_channel {
        return Err(ReadError::NotLocod { path: path.into() });
    }
    let mut ticks = Vec::with_capacity(s.messages.len());
    for (i, (_, m)) in s.messages.iter().enumerate() {
        ticks.push(Tick::decode(m).map_err(|e| corrupt(i, format!("message {i}: {e}")))?);
    }
    let mut shadow = Vec::with_capacity(s.shadow.len());
    for (i, (_, m)) in s.shadow.iter().enumerate() {
        shadow.push(Shadow::decode(m).map_err(|e| corrupt(i, format!("shadow step {i}: {e}")))?);
    }
    let find = |name: &str| s.metadata.iter().find(|(n, _)| n == name).map(|(_, m)| m.clone());
    Ok(LogFile {
        path: path.into(),
        metadata: find(METADATA_NAME).unwrap_or_default(),
        end: find(EPISODE_END_NAME),
        ticks,
        shadow,
    })
}

/// The closed logs at `path`: the file itself, or every `*.mcap` in the directory, oldest first.
pub fn log_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |error| ReadError::Io { path: path.into(), error };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mcap"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ReadError::Empty { path: path.into() });
    }
    Ok(files)
}

/// What `recover` made of one file.
#[derive(Debug)]
pub struct Recovered {
    pub input: PathBuf,
    /// The closed copy; `None` when the input was empty and was removed.
    pub output: Option<PathBuf>,
    pub messages: usize,
    /// Why the input ended early (a cut-short or damaged record), if it did.
    pub stopped: Option<String>,
}

impl fmt::Display for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(output) = &self.output else {
            return write!(f, "{}: empty (nothing reached the disk), removed", self.input.display());
        };
        write!(f, "{} -> {}: {} ticks", self.input.display(), output.display(), self.messages)?;
        if let Some(s) = &self.stopped {
            write!(f, " (input ended early: {s})")?;
        }
        Ok(())
    }
}

/// Where the recovered copy of `input` goes: `X.mcap.part` becomes `X.mcap`; any other file
/// `X.recovered.mcap` beside it.
pub(crate) fn recovered_name(input: &Path) -> PathBuf {
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".part") {
        Some(stem) if stem.ends_with(".mcap") => input.with_file_name(stem),
        _ => input.with_file_name(format!("{}.recovered.mcap", name.trim_end_matches(".mcap"))),
    }
}

fn is_part(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "part")
}

/// Writes a closed copy of `input` with every intact record, then removes a `.part` input. An
/// empty `.part` input is only removed.
pub fn recover(input: &Path) -> Result<Recovered, ReadError> {
    let io = |error| ReadError::Io { path: input.into(), error };
    if is_part(input) && std::fs::metadata(input).map_err(io)?.len() == 0 {
        std::fs::remove_file(input).map_err(io)?;
        return Ok(Recovered { input: input.into(), output: None, messages: 0, stopped: None });
    }
    let data = read_bytes(input)?;
    let s = scan(&data);
    if !s.has_tick_channel {
        return Err(match s.stopped {
            Some(detail) => ReadError::Corrupt { path: input.into(), messages: 0, detail },
            None => ReadError::NotLocod { path: input.into() },
        });
    }
    let output = recovered_name(input);
    let tmp = output.with_extension("mcap.recovering");
    let written =
        write_copy(input, &tmp, s.metadata, &s.messages, &s.shadow).and_then(|()| std::fs::rename(&tmp, &output));
    if let Err(error) = written {
        // No partial or empty copy stays behind; the input is kept as it was.
        let _ = std::fs::remove_file(&tmp);
        return Err(ReadError::Write { input: input.into(), output, error });
    }
    if is_part(input) {
        std::fs::remove_file(input).map_err(io)?;
    }
    Ok(Recovered { input: input.into(), output: Some(output), messages: s.messages.len(), stopped: s.stopped })
}

/// The closed copy of a scanned file, written to `tmp` and synced.
fn write_copy(
    input: &Path,
    tmp: &Path,
    metadata: Vec<(String, BTreeMap<String, String>)>,
    messages: &[(u64, Vec<u8>)],
    shadow: &[(u64, Vec<u8>)],
) -> std::io::Result<()> {
    use super::writer::io_error;
    let file = std::fs::File::create(tmp)?;
    let mut w = mcap::WriteOptions::new()
        .compression(Some(mcap::Compression::Zstd))
        .profile("ros2")
        .library(format!("locod {} (recovered)", env!("CARGO_PKG_VERSION")))
        .create(BufWriter::new(file))
        .map_err(io_error)?;
    let schema_id =
        w.add_schema(schema::SCHEMA_NAME, schema::SCHEMA_ENCODING, schema::MSG.as_bytes()).map_err(io_error)?;
    let channel =
        w.add_channel(schema_id, schema::TOPIC, schema::MESSAGE_ENCODING, &BTreeMap::new()).map_err(io_error)?;
    for (name, mut m) in metadata {
        if name == METADATA_NAME {
            m.insert("recovered_from".into(), input.display().to_string());
        }
        w.write_metadata(&mcap::records::Metadata { name, metadata: m }).map_err(io_error)?;
    }
    for (seq, (t, data)) in messages.iter().enumerate() {
        let header =
            mcap::records::MessageHeader { channel_id: channel, sequence: seq as u32, log_time: *t, publish_time: *t };
        w.write_to_known_channel(&header, data).map_err(io_error)?;
    }
    if !shadow.is_empty() {
        let id = w
            .add_schema(schema::SHADOW_SCHEMA_NAME, schema::SCHEMA_ENCODING, schema::SHADOW_MSG.as_bytes())
            .map_err(io_error)?;
        let channel =
            w.add_channel(id, schema::SHADOW_TOPIC, schema::MESSAGE_ENCODING, &BTreeMap::new()).map_err(io_error)?;
        for (seq, (t, data)) in shadow.iter().enumerate() {
            let header = mcap::records::MessageHeader {
                channel_id: channel,
                sequence: seq as u32,
                log_time: *t,
                publish_time: *t,
            };
            w.write_to_known_channel(&header, data).map_err(io_error)?;
        }
    }
    w.finish().map_err(io_error)?;
    let file = w.into_inner().into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// What `recover_dir` did: the files it finished, and the ones it could not (kept as they are).
#[derive(Debug, Default)]
pub struct DirRecovery {
    pub recovered: Vec<Recovered>,
    pub failed: Vec<ReadError>,
}

/// Recovers every `*.mcap.part` in `dir`. A file that cannot be recovered is kept, and its error
/// is in `failed`.
pub fn recover_dir(dir: &Path) -> Result<DirRecovery, ReadError> {
    let io = |error| ReadError::Io { path: dir.into(), error };
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".mcap.part"))
        .collect();
    parts.sort();
    let mut done = DirRecovery::default();
    for p in parts {
        match recover(&p) {
            Ok(r) => done.recovered.push(r),
            Err(e) => done.failed.push(e),
        }
    }
    Ok(done)
}
