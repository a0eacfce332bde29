//! [`FileSink`]: appends each event as one line of CloudEvents structured JSON to a file under a
//! root directory, by default `{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}/events.jsonl` (seed
//! 002: topic, routing key, UTC hour). The layout and the bytes are those of the Wasm `file-sink`
//! plugin (plugins/file-sink), so either can take the other's place behind the `Sink` trait; but
//! an event still as it arrived in structured JSON is written as it came (the same JSON value, its
//! members in the sender's order: `codec::structured::write`).
//!
//! Owns: path templates and the sanitising of what events put into them, grouping a batch by file
//! (one buffer a file, the largest kept for the next batch), a small LRU of open append handles,
//! whole-line appends and the fsync policy.
//!
//! Never:
//! - writes outside `root`: a routing subject or routing key that could climb out or hide a file
//!   (`/`, `\`, `..`, NUL, a leading `.`) fails that event permanently, and templates are checked
//!   when the sink is built. (Symbolic links that someone else plants under `root` are followed.)
//! - creates `root`: a missing root fails the batch as retryable, so an unmounted volume is not
//!   silently filled on the disk beneath it.
//! - does file I/O on an async worker: each batch's I/O runs in one `spawn_blocking` call, while
//!   the sink's handle cache is held by a tokio mutex (so deliveries of one sink run one at a time).
//!
//! Differences from the Wasm plugin, both on purpose: it refuses a subject or routing key with `/`
//! where the plugin makes subdirectories of it, and it parses `time` with the `time` crate, which
//! reads a leap second (`23:59:60`) as the second before rather than the next hour.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::{SinkBuildError, event_failure, outcome};
use crate::event::Event;
use crate::sink::{DeliveryError, Sink};

/// How many files a sink keeps open at once; the least recently written is closed first. A busy
/// hour keeps its file open across batches instead of reopening it per event or per batch.
const OPEN_FILES: usize = 32;

/// The value a placeholder takes when the event has none (no routing key, empty subject).
const MISSING: &str = "_";

/// The placeholders a template may use, as the Wasm `file-sink` knows them.
const PLACEHOLDERS: &str = "subject, routingkey, yyyy, mm, dd, HH";

/// Config of a [`FileSink`] (TOML, under the sink's table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The directory every file goes under (required). It must exist when events arrive; the sink
    /// never creates it.
    pub root: PathBuf,
    /// The directory of an event's file under `root`, a template with the placeholders
    /// `{subject}` (routing subject), `{routingkey}` (the `routingkey` extension, `_` when
    /// absent) and `{yyyy}`, `{mm}`, `{dd}`, `{HH}` (the UTC hour of the event's `time` when it is
    /// RFC 3339, else of the clock). Default `{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The file name in that directory, a template with the same placeholders that must stay one
    /// path component. Default `events.jsonl`.
    #[serde(default = "default_file")]
    pub file: String,
    /// When written lines are forced to disk. Default `batch`.
    #[serde(default = "default_fsync")]
    pub fsync: FsyncPolicy,
}

/// When a [`FileSink`] forces written lines to disk (`fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Never: the kernel writes back when it likes; a crash of the machine can lose lines that
    /// `deliver` reported as delivered.
    Never,
    /// Once per file touched, after the batch's lines are written and before `deliver` returns;
    /// new files and directories are made durable too.
    Batch,
    /// After every line.
    Always,
}

/// The default of [`FileSinkConfig::path`].
pub fn default_path() -> String {
    "{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}".to_owned()
}

/// The default of [`FileSinkConfig::file`].
pub fn default_file() -> String {
    "events.jsonl".to_owned()
}

/// The default of [`FileSinkConfig::fsync`].
pub fn default_fsync() -> FsyncPolicy {
    FsyncPolicy::Batch
}

/// Appends events as CloudEvents JSON lines to files under a root directory.
#[derive(Debug)]
pub struct FileSink {
    root: PathBuf,
    path: Template,
    file: Template,
    fsync: FsyncPolicy,
    /// Open append handles; the lock also makes one delivery's writes to a file contiguous.
    open: Arc<tokio::sync::Mutex<OpenFiles>>,
    /// The largest line buffer of the last batch, for the next: a buffer of a whole batch
    /// made afresh each time comes as new pages the kernel must zero. At most [`SPARE_BYTES`].
    spare: std::sync::Mutex<Vec<u8>>,
}

/// The largest line buffer a sink keeps between batches.
const SPARE_BYTES: usize = 4 << 20;

impl FileSink {
    /// Checks `config` and builds the sink named `name`; does no I/O (a missing `root` shows at
    /// delivery, as a retryable failure).
    pub fn new(name: &str, config: FileSinkConfig) -> Result<FileSink, SinkBuildError> {
        if config.root.as_os_str().is_empty() {
            return Err(SinkBuildError::config(name, "root", "the root directory is empty"));
        }
        let path = Template::parse(&config.path).map_err(|reason| {
            SinkBuildError::config(name, "path", format!("invalid template \"{}\": {reason}", config.path))
        })?;
        let file = Template::parse(&config.file)
            .and_then(|template| template.single_component().map(|()| template))
            .map_err(|reason| {
                SinkBuildError::config(name, "file", format!("invalid template \"{}\": {reason}", config.file))
            })?;
        Ok(FileSink {
            root: config.root,
            path,
            file,
            fsync: config.fsync,
            open: Arc::new(tokio::sync::Mutex::new(OpenFiles::default())),
            spare: std::sync::Mutex::default(),
        })
    }

    /// The file `event` goes to, relative to the root, in `hour` (when the templates use time).
    fn locate(&self, event: &Event, hour: Option<Hour>) -> Result<PathBuf, String> {
        let relative = Path::new(&self.path.render(event, hour)?).join(self.file.render(event, hour)?);
        // Templates and placeholder values are checked already; this keeps the promise on its own.
        if relative.as_os_str().is_empty() || !relative.components().all(|part| matches!(part, Component::Normal(_))) {
            return Err(format!("path \"{}\" is not inside the root", relative.display()));
        }
        // A name no filesystem takes would fail every retry alike: refused at once (dead letter).
        if let Some(long) = relative.components().find(|part| part.as_os_str().len() > MAX_NAME_BYTES) {
            let long = long.as_os_str().to_string_lossy();
            return Err(format!("a path name is longer than {MAX_NAME_BYTES} bytes: \"{long:.64}...\""));
        }
        if self.root.as_os_str().len() + relative.as_os_str().len() >= MAX_PATH_BYTES {
            return Err(format!("the path is longer than {MAX_PATH_BYTES} bytes"));
        }
        Ok(relative)
    }
}

/// The longest file or directory name Linux filesystems take (`NAME_MAX`), and the longest path
/// (`PATH_MAX`).
const MAX_NAME_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 4096;

#[async_trait]
impl Sink for FileSink {
    /// Groups the batch by file and appends each file's lines in batch order. An event whose path
    /// is refused fails permanently; an event whose file cannot be written fails retryably (and
    /// any partial line is cut off again); the other events are delivered.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once the writes have started they finish in the blocking pool, so a
    /// cancelled delivery may still have written its lines.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        let mut failures = Vec::new();
        let mut clock = Clock::default();
        let uses_time = self.path.uses_time() || self.file.uses_time();
        // Lines grouped by file, so each file is looked up once per batch; batch order is kept per file.
        let spare = self.spare.lock().map(|mut spare| std::mem::take(&mut *spare)).unwrap_or_default();
        let mut files = Destinations::with_spare(spare);
        for (index, event) in batch.iter().enumerate() {
            let hour = uses_time.then(|| clock.hour_of(event));
            if let Err(reason) = files.push(index, event, hour, || self.locate(event, hour)) {
                failures.push(event_failure(batch, index, &reason, false));
            }
        }
        let files = files.into_groups();
        if !files.is_empty() {
            let mut open = Arc::clone(&self.open).lock_owned().await;
            let root = self.root.clone();
            let fsync = self.fsync;
            let (written, files) = tokio::task::spawn_blocking(move || {
                let failed = write_files(&root, fsync, &mut open, &files);
                (failed, files)
            })
            .await
            .map_err(|err| {
                DeliveryError::Retryable(format!("writing under {}: writer task failed: {err}", self.root.display()))
            })?;
            failures.extend(written.into_iter().map(|(index, reason)| event_failure(batch, index, &reason, true)));
            let largest = files.into_iter().map(|(_, lines)| lines.into_buffer()).max_by_key(Vec::capacity);
            if let (Some(buffer), Ok(mut spare)) = (largest.filter(|b| b.capacity() <= SPARE_BYTES), self.spare.lock())
            {
                *spare = buffer;
            }
        }
        outcome(batch.len(), failures)
    }
}

/// A batch's lines grouped by destination (a file, or an object's directory), in the order the
/// destinations first appear. Events in a row with the same subject, routing key and hour (the
/// usual run) share one lookup of their destination.
pub(super) struct Destinations<'a, D> {
    groups: Vec<(D, JsonLines)>,
    /// A buffer for the first group's lines.
    spare: Vec<u8>,
    /// The last event's place and its group.
    last: Option<(Place<'a>, usize)>,
}

/// What decides an event's destination: its subject, routing key and hour.
type Place<'a> = (&'a str, Option<&'a str>, Option<Hour>);

impl<D> Default for Destinations<'_, D> {
    fn default() -> Self {
        Destinations { groups: Vec::new(), spare: Vec::new(), last: None }
    }
}

impl<'a, D: PartialEq> Destinations<'a, D> {
    /// Destinations whose first lines go into `spare` (emptied).
    pub(super) fn with_spare(mut spare: Vec<u8>) -> Self {
        spare.clear();
        Destinations { groups: Vec::new(), spare, last: None }
    }

    /// Adds the line of `event`, the batch's event at `index`, in `hour`, to its destination, which
    /// `locate` finds unless the event before it went to the same place; or says why `locate`
    /// refused it.
    pub(super) fn push(
        &mut self,
        index: usize,
        event: &'a Event,
        hour: Option<Hour>,
        locate: impl FnOnce() -> Result<D, String>,
    ) -> Result<(), String> {
        let key = (event.subject.as_str(), event.routing_key(), hour);
        let group = match self.last {
            Some((last, group)) if last == key => group,
            _ => {
                let destination = locate()?;
                let group = match self.groups.iter().position(|(known, _)| *known == destination) {
                    Some(group) => group,
                    None => {
                        let lines = JsonLines { bytes: std::mem::take(&mut self.spare), lines: Vec::new() };
                        self.groups.push((destination, lines));
                        self.groups.len() - 1
                    }
                };
                self.last = Some((key, group));
                group
            }
        };
        self.groups[group].1.push(index, event);
        Ok(())
    }

    /// Each destination and its lines.
    pub(super) fn into_groups(self) -> Vec<(D, JsonLines)> {
        self.groups
    }
}

/// The hour an event is filed under: its `time`'s, or the clock's, read once a batch.
#[derive(Default)]
pub(super) struct Clock(Option<Hour>);

impl Clock {
    pub(super) fn hour_of(&mut self, event: &Event) -> Hour {
        let from_event = event.context.time.as_deref().and_then(Hour::parse);
        from_event.unwrap_or_else(|| *self.0.get_or_insert_with(Hour::now))
    }
}

/// The lines of CloudEvents JSON that go to one file (or object), in one buffer: each event's
/// line, newline included, is the bytes the Wasm `file-sink` writes for it.
#[derive(Debug, Default)]
pub(super) struct JsonLines {
    bytes: Vec<u8>,
    /// Each line's event's position in the batch, and where the line ends in `bytes`.
    lines: Vec<(usize, usize)>,
}

impl JsonLines {
    /// Appends the line of `event`, the batch's event at `index`.
    pub(super) fn push(&mut self, index: usize, event: &Event) {
        self.bytes.reserve(256 + event.data.len() * 4 / 3);
        crate::codec::structured::write(event, &mut self.bytes);
        self.bytes.push(b'\n');
        self.lines.push((index, self.bytes.len()));
    }

    /// Every line, in order.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The buffer, for other lines ([`Destinations::with_spare`] empties it).
    fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// The batch positions of the lines from the `first`th on.
    pub(super) fn indices(&self, first: usize) -> impl Iterator<Item = usize> + '_ {
        self.lines[first.min(self.lines.len())..].iter().map(|&(index, _)| index)
    }

    /// Each line's bytes, in order.
    fn each(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.lines.iter().map(|&(_, end)| end));
        starts.zip(&self.lines).map(|(start, &(_, end))| &self.bytes[start..end])
    }
}

/// Writes each file's lines under `root`; returns the batch index and reason of every line that
/// could not be written (all retryable).
fn write_files(
    root: &Path,
    fsync: FsyncPolicy,
    open: &mut OpenFiles,
    files: &[(PathBuf, JsonLines)],
) -> Vec<(usize, String)> {
    let all_fail = |reason: String| -> Vec<(usize, String)> {
        files.iter().flat_map(|(_, lines)| lines.indices(0)).map(|index| (index, reason.clone())).collect()
    };
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            open.clear();
            return all_fail(format!("root {} is not a directory", root.display()));
        }
        Err(err) => {
            open.clear();
            return all_fail(format!("root directory {} is unavailable: {err}", root.display()));
        }
    }
    let mut failed = Vec::new();
    for (relative, lines) in files {
        let path = root.join(relative);
        let result = match open.get_or_open(root, &path, fsync) {
            Ok(file) => append(file, &path, lines, fsync),
            Err(reason) => Err((0, reason)),
        };
        if let Err((first, reason)) = result {
            open.evict(&path);
            failed.extend(lines.indices(first).map(|index| (index, reason.clone())));
        }
    }
    failed
}

/// Appends `lines` to `file` (open for append at `path`) as `fsync` says. On an error, returns the
/// position in `lines` of the first line not known to be written and why, after cutting off any
/// part of a line that did reach the file, so the file only ever holds whole lines.
fn append(file: &mut File, path: &Path, lines: &JsonLines, fsync: FsyncPolicy) -> Result<(), (usize, String)> {
    let write = |file: &mut File, bytes: &[u8]| -> Result<(), String> {
        let before = file.metadata().map_err(|err| format!("cannot read the length of {}: {err}", path.display()))?;
        file.write_all(bytes).map_err(|err| {
            // Best effort: a failed write may have left part of a line; cut the file back to where
            // this write began (this assumes the sink is the file's only writer).
            let undo = match file.set_len(before.len()) {
                Ok(()) => String::new(),
                Err(undo) => format!(" (and cutting it back to {} bytes failed: {undo})", before.len()),
            };
            format!("cannot write to {}: {err}{undo}", path.display())
        })
    };
    let sync = |file: &File| file.sync_data().map_err(|err| format!("cannot fsync {}: {err}", path.display()));
    match fsync {
        FsyncPolicy::Never | FsyncPolicy::Batch => {
            write(file, lines.bytes()).map_err(|reason| (0, reason))?;
            if fsync == FsyncPolicy::Batch {
                sync(file).map_err(|reason| (0, reason))?;
            }
        }
        FsyncPolicy::Always => {
            for (at, line) in lines.each().enumerate() {
                write(file, line).and_then(|()| sync(file)).map_err(|reason| (at, reason))?;
            }
        }
    }
    Ok(())
}

/// Open append handles by path, least recently used first; at most [`OPEN_FILES`].
#[derive(Debug, Default)]
struct OpenFiles {
    entries: VecDeque<OpenFile>,
}

/// One cached handle.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: File,
    /// What the handle was opened on, to notice a file removed or replaced since.
    id: FileId,
}

impl OpenFiles {
    /// The handle for `path`, reusing a cached one while `path` still names the file it was opened
    /// on (a removed or rotated file is reopened); otherwise creates the missing directories below
    /// `root` and opens `path` for append, creating it. Under an fsync policy, new directories
    /// and files are made durable in their parent directories before the handle is returned.
    fn get_or_open(&mut self, root: &Path, path: &Path, fsync: FsyncPolicy) -> Result<&mut File, String> {
        if let Some(at) = self.entries.iter().position(|entry| entry.path == path) {
            let entry = self.entries.remove(at).expect("position came from this deque");
            if fs::metadata(path).is_ok_and(|meta| FileId::of(&meta) == entry.id) {
                self.entries.push_back(entry);
                return Ok(&mut self.entries.back_mut().expect("an entry was just pushed").file);
            }
        }
        let entry = open(root, path, fsync)?;
        if self.entries.len() >= OPEN_FILES {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        Ok(&mut self.entries.back_mut().expect("an entry was just pushed").file)
    }

    /// Forgets (closes) the handle for `path`, if cached.
    fn evict(&mut self, path: &Path) {
        self.entries.retain(|entry| entry.path != path);
    }

    /// Closes every handle.
    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Opens `path` for append as [`OpenFiles::get_or_open`] describes.
fn open(root: &Path, path: &Path, fsync: FsyncPolicy) -> Result<OpenFile, String> {
    let dir = path.parent().unwrap_or(root);
    let created_dirs =
        create_dirs(root, dir).map_err(|err| format!("cannot create directory {}: {err}", dir.display()))?;
    let (file, created) = match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(file) => (file, true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
            (file, false)
        }
        Err(err) => return Err(format!("cannot create {}: {err}", path.display())),
    };
    if fsync != FsyncPolicy::Never {
        // A new entry is durable once the directory holding it is synced.
        let mut parents: BTreeSet<&Path> = created_dirs.iter().filter_map(|dir| dir.parent()).collect();
        if created {
            parents.insert(dir);
        }
        for parent in parents {
            sync_dir(parent).map_err(|err| format!("cannot fsync directory {}: {err}", parent.display()))?;
        }
    }
    let meta = file.metadata().map_err(|err| format!("cannot read metadata of {}: {err}", path.display()))?;
    Ok(OpenFile { path: path.to_owned(), file, id: FileId::of(&meta) })
}

/// Creates `dir` and its missing ancestors below `root`; returns the directories it created.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = dir;
    while cursor != root && !cursor.is_dir() {
        missing.push(cursor.to_owned());
        match cursor.parent() {
            Some(parent) => cursor = parent,
            None => break,
        }
    }
    for dir in missing.iter().rev() {
        match fs::create_dir(dir) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
    }
    Ok(missing)
}

/// Forces directory `dir`'s entries to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Which file a handle or path refers to: device and inode on Unix; elsewhere every existing file
/// counts as the same, so only a removed file is noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            FileId(meta.dev(), meta.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileId(0, 0)
        }
    }
}

/// A UTC hour: the values of `{yyyy}`, `{mm}`, `{dd}` and `{HH}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hour {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
}

impl Hour {
    /// The UTC hour of `at`, or `None` when that falls outside the years `time` can represent.
    fn of(at: OffsetDateTime) -> Option<Hour> {
        let utc = at.checked_to_offset(UtcOffset::UTC)?;
        Some(Hour { year: utc.year(), month: utc.month().into(), day: utc.day(), hour: utc.hour() })
    }

    /// The UTC hour of an RFC 3339 timestamp, or `None` when `text` is not one.
    pub(super) fn parse(text: &str) -> Option<Hour> {
        Hour::parse_utc(text).or_else(|| OffsetDateTime::parse(text, &Rfc3339).ok().and_then(Hour::of))
    }

    /// The usual shape, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read without the general parser; `None`
    /// for anything else (which the general parser then reads, or refuses).
    fn parse_utc(text: &str) -> Option<Hour> {
        let bytes = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Option<u8> {
            bytes.get(range)?.iter().try_fold(0u8, |n, &b| b.is_ascii_digit().then(|| n * 10 + (b - b'0')))
        };
        let shape = bytes.len() >= 20
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && matches!(bytes[10], b'T' | b't')
            && bytes[13] == b':'
            && bytes[16] == b':'
            && matches!(bytes[bytes.len() - 1], b'Z' | b'z');
        let fraction = &bytes.get(19..bytes.len() - 1)?;
        let fraction_ok = fraction.is_empty()
            || (fraction.len() >= 2 && fraction[0] == b'.' && fraction[1..].iter().all(u8::is_ascii_digit));
        if !shape || !fraction_ok {
            return None;
        }
        let year = i32::from(number(0..2)?) * 100 + i32::from(number(2..4)?);
        let (month, day, hour) = (number(5..7)?, number(8..10)?, number(11..13)?);
        let (minute, second) = (number(14..16)?, number(17..19)?);
        let month_ok = (1..=12).contains(&month);
        let day_ok = month_ok && day >= 1 && day <= time::util::days_in_month(month.try_into().ok()?, year);
        (day_ok && hour <= 23 && minute <= 59 && second <= 59).then_some(Hour { year, month, day, hour })
    }

    /// The hour of the clock now.
    pub(super) fn now() -> Hour {
        let now = OffsetDateTime::now_utc();
        Hour { year: now.year(), month: now.month().into(), day: now.day(), hour: now.hour() }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The event's routing subject.
    Subject,
    /// The `routingkey` extension.
    RoutingKey,
    Year,
    Month,
    Day,
    Hour,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`, refusing unknown placeholders, unbalanced braces, absolute paths, `.` and
    /// `..` components, `\` and NUL.
    pub(super) fn parse(text: &str) -> Result<Template, String> {
        if text.starts_with('/') {
            return Err("absolute paths are refused: it is relative to `root`".into());
        }
        if text.contains('\\') || text.contains('\0') {
            return Err("`\\` and NUL are refused".into());
        }
        if text.split('/').any(|component| component == ".." || component == ".") {
            return Err("`.` and `..` components are refused".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find(['{', '}']) else {
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if rest[open..].starts_with('}') {
                return Err("`}` without `{`".into());
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err("`{` without `}`".into());
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "subject" => Part::Subject,
                "routingkey" => Part::RoutingKey,
                "yyyy" => Part::Year,
                "mm" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                _ => return Err(format!("unknown placeholder `{{{name}}}` (known: {PLACEHOLDERS})")),
            });
            rest = &rest[open + close + 1..];
        }
        Ok(Template { parts })
    }

    /// Checks that the template always renders one non-empty path component (a file name).
    fn single_component(&self) -> Result<(), String> {
        if self.parts.is_empty() {
            return Err("the file name is empty".into());
        }
        if self.parts.iter().any(|part| matches!(part, Part::Literal(text) if text.contains('/'))) {
            return Err("a file name cannot contain `/`".into());
        }
        Ok(())
    }

    /// True when rendering needs the event's hour.
    pub(super) fn uses_time(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Year | Part::Month | Part::Day | Part::Hour))
    }

    /// The template filled in for `event` in `hour`; the subject and routing key must be safe path
    /// components ([`path_component`]).
    pub(super) fn render(&self, event: &Event, hour: Option<Hour>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match (part, hour) {
                (Part::Literal(text), _) => out.push_str(text),
                (Part::Subject, _) => out.push_str(path_component("subject", &event.subject)?),
                (Part::RoutingKey, _) => {
                    out.push_str(event.routing_key().map_or(Ok(MISSING), |key| path_component("routing key", key))?)
                }
                (Part::Year, Some(h)) => out.push_str(&format!("{:04}", h.year)),
                (Part::Month, Some(h)) => out.push_str(&format!("{:02}", h.month)),
                (Part::Day, Some(h)) => out.push_str(&format!("{:02}", h.day)),
                (Part::Hour, Some(h)) => out.push_str(&format!("{:02}", h.hour)),
                (Part::Year | Part::Month | Part::Day | Part::Hour, None) => out.push_str(MISSING),
            }
        }
        Ok(out)
    }
}

/// `value` (the event's `what`) as a path component: [`MISSING`] when empty, refused when it
/// contains `/`, `\`, `..` or NUL or starts with `.`, since it could then leave the root, name a
/// parent, or hide a file.
fn path_component<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    let refused = if value.contains('/') {
        "contains \"/\""
    } else if value.contains('\\') {
        "contains \"\\\""
    } else if value.contains("..") {
        "contains \"..\""
    } else if value.contains('\0') {
        "contains NUL"
    } else if value.starts_with('.') {
        "starts with \".\""
    } else if value.is_empty() {
        return Ok(MISSING);
    } else {
        return Ok(value);
    };
    Err(format!("{what} \"{}\" is refused as a path component: it {refused}", value.escape_debug()))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::event::Context;
    use crate::sink::EventFailure;

    fn event(id: &str, subject: &str, routing_key: Option<&str>, time: Option<&str>, data: &str) -> Event {
        Event {
            subject: subject.into(),
            context: Context {
                id: id.into(),
                source: "/dss/node-1".into(),
                ty: "audit".into(),
                specversion: "1.0".into(),
                subject: None,
                time: time.map(str::to_owned),
                datacontenttype: Some("application/json".into()),
                dataschema: None,
            },
            extensions: routing_key.map(|k| ("routingkey".to_owned(), k.to_owned())).into_iter().collect(),
            data: Bytes::copy_from_slice(data.as_bytes()),
            nats: None,
            completion: None,
            arrived: None,
        }
    }

    fn config(root: &Path, toml_rest: &str) -> FileSinkConfig {
        toml::from_str(&format!("root = {:?}\n{toml_rest}", root.display().to_string())).unwrap()
    }

    fn sink(root: &Path, toml_rest: &str) -> FileSink {
        FileSink::new("audit", config(root, toml_rest)).unwrap()
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    const HOUR: Option<Hour> = Some(Hour { year: 2022, month: 7, day: 2, hour: 7 });

    #[test]
    fn the_quick_hour_reading_agrees_with_the_rfc_3339_parser() {
        let general = |text: &str| OffsetDateTime::parse(text, &Rfc3339).ok().and_then(Hour::of);
        let texts = [
            "2026-12-07T15:04:05Z",
            "2026-12-07t15:04:05.123456789z",
            "2024-02-29T23:59:59Z",
            "2023-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-00-01T10:00:00Z",
            "2026-12-00T10:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "2026-12-07T15:04:05.Z",
            "2026-12-07T15:04:05,5Z",
            "2026-12-07T15:04:05+01:00",
            "2026-12-07T00:30:00+01:00",
            "2026-12-07 15:04:05Z",
            "0000-01-01T00:00:00Z",
            "2026-1a-07T15:04:05Z",
            "2026-12-07T15:04:05",
            "",
        ];
        for text in texts {
            if let Some(quick) = Hour::parse_utc(text) {
                assert_eq!(Some(quick), general(text), "{text}");
            }
            assert_eq!(Hour::parse(text), general(text), "{text}");
        }
        assert!(Hour::parse_utc("2026-12-07T15:04:05.5Z").is_some(), "the usual shape takes the quick way");
    }

    #[test]
    fn the_default_path_is_subject_routing_key_and_hour() {
        let path = Template::parse(&default_path()).unwrap();
        assert!(path.uses_time());
        let e = |key| event("1", "orders.eu", key, None, "");
        assert_eq!(path.render(&e(Some("eu")), HOUR).unwrap(), "orders.eu/eu/2022/07/02/07");
        assert_eq!(path.render(&e(None), HOUR).unwrap(), "orders.eu/_/2022/07/02/07");
        assert_eq!(path.render(&e(Some("")), HOUR).unwrap(), "orders.eu/_/2022/07/02/07");
        assert_eq!(path.render(&event("1", "", None, None, ""), None).unwrap(), "_/_/_/_/_/_");
        let file = Template::parse("events-{routingkey}.jsonl").unwrap();
        assert!(!file.uses_time());
        assert_eq!(file.render(&e(Some("k")), None).unwrap(), "events-k.jsonl");
        assert_eq!(Template::parse("").unwrap().render(&e(None), None).unwrap(), "");
    }

    #[test]
    fn locate_joins_path_and_file_and_takes_the_hour_from_time() {
        let s = sink(Path::new("/r"), "");
        let mut clock = Clock::default();
        let e = event("1", "audit", Some("node-1"), Some("2022-07-12t01:30:00+02:00"), "");
        let hour = Some(clock.hour_of(&e));
        assert_eq!(s.locate(&e, hour).unwrap(), Path::new("audit/node-1/2022/07/11/23/events.jsonl"));
        assert_eq!(clock.0, None, "the clock is not read when the event has a time");
        let untimed = event("2", "audit", None, Some("yesterday"), "");
        let path = s.locate(&untimed, Some(clock.hour_of(&untimed))).unwrap();
        let hour = clock.0.expect("the clock was read");
        let expected =
            format!("audit/_/{:04}/{:02}/{:02}/{:02}/events.jsonl", hour.year, hour.month, hour.day, hour.hour);
        assert_eq!(path, Path::new(&expected));
    }

    #[test]
    fn names_longer_than_the_filesystem_takes_are_refused() {
        let s = sink(Path::new("/r"), "");
        let long = "x".repeat(300);
        let e = event("1", &format!("audit.{long}"), None, Some("2022-07-12T01:30:00Z"), "");
        let refused = s.locate(&e, Hour::parse("2022-07-12T01:30:00Z")).unwrap_err();
        assert!(refused.contains("longer than 255 bytes"), "{refused}");
    }

    #[test]
    fn hours_come_from_rfc3339_timestamps_in_utc() {
        let h = |year, month, day, hour| Some(Hour { year, month, day, hour });
        assert_eq!(Hour::parse("2022-07-12T07:08:09Z"), h(2022, 7, 12, 7));
        assert_eq!(Hour::parse("2022-07-11T16:44:27.146Z"), h(2022, 7, 11, 16));
        assert_eq!(Hour::parse("2022-07-12t01:30:00+02:00"), h(2022, 7, 11, 23));
        assert_eq!(Hour::parse("2022-12-31T23:30:00-01:00"), h(2023, 1, 1, 0));
        assert_eq!(Hour::parse("2000-02-29T12:00:00Z"), h(2000, 2, 29, 12));
        assert_eq!(Hour::parse("1969-12-31T23:59:59Z"), h(1969, 12, 31, 23));
        for bad in ["", "2022-07-12", "2022-07-12T07:08:09", "2022-13-12T07:08:09Z", "2022-02-29T07:08:09Z"] {
            assert_eq!(Hour::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsafe_subjects_and_routing_keys_are_refused() {
        let path = Template::parse(&default_path()).unwrap();
        for bad in ["../etc", "a/b", "/etc", "a\\b", "a..b", "..", ".hidden", ".", "a\0b"] {
            let by_key = path.render(&event("1", "audit", Some(bad), None, ""), HOUR).unwrap_err();
            assert!(by_key.starts_with("routing key \""), "{bad}: {by_key}");
            let by_subject = path.render(&event("1", bad, None, None, ""), HOUR).unwrap_err();
            assert!(by_subject.starts_with("subject \""), "{bad}: {by_subject}");
        }
        assert_eq!(
            path_component("routing key", "../etc").unwrap_err(),
            "routing key \"../etc\" is refused as a path component: it contains \"/\""
        );
        assert!(path_component("subject", "a\0b").unwrap_err().contains("\"a\\0b\""));
        for fine in ["audit", "orders.eu.created", "node-1", "a.b_c", "x.", "$SYS.x"] {
            assert_eq!(path_component("subject", fine), Ok(fine));
        }
    }

    #[test]
    fn bad_templates_fail_to_build_naming_the_key() {
        for (key, value, reason) in [
            ("path", "/abs/{subject}", "absolute"),
            ("path", "a/../b", "`..`"),
            ("path", "./a", "`.`"),
            ("path", "a\\\\b", "`\\`"),
            ("path", "{nope}", "unknown placeholder `{nope}` (known: subject, routingkey, yyyy, mm, dd, HH)"),
            ("path", "{subject", "without `}`"),
            ("path", "a}", "without `{`"),
            ("file", "a/b.jsonl", "cannot contain `/`"),
            ("file", "", "empty"),
        ] {
            let err = FileSink::new("audit", config(Path::new("/r"), &format!("{key} = \"{value}\""))).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with(&format!("sink \"audit\": key `{key}`: invalid template")), "{text}");
            assert!(text.contains(reason), "{value}: {text}");
        }
        let empty_root = FileSink::new("audit", config(Path::new(""), "")).unwrap_err();
        assert_eq!(empty_root.to_string(), "sink \"audit\": key `root`: the root directory is empty");
    }

    #[test]
    fn config_defaults_and_fsync_policies_parse() {
        let defaults = config(Path::new("/r"), "");
        assert_eq!(
            defaults,
            FileSinkConfig {
                root: "/r".into(),
                path: "{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}".into(),
                file: "events.jsonl".into(),
                fsync: FsyncPolicy::Batch,
            }
        );
        for (text, policy) in
            [("never", FsyncPolicy::Never), ("batch", FsyncPolicy::Batch), ("always", FsyncPolicy::Always)]
        {
            assert_eq!(config(Path::new("/r"), &format!("fsync = \"{text}\"")).fsync, policy);
        }
        let bad = toml::from_str::<FileSinkConfig>("root = \"/r\"\nfsync = \"sometimes\"").unwrap_err();
        assert!(bad.message().contains("unknown variant `sometimes`"), "{bad}");
        let unknown = toml::from_str::<FileSinkConfig>("root = \"/r\"\nfsynk = \"never\"").unwrap_err();
        assert!(unknown.message().contains("unknown field `fsynk`"), "{unknown}");
        assert!(
            toml::from_str::<FileSinkConfig>("path = \"x\"").unwrap_err().message().contains("missing field `root`")
        );
    }

    fn json_line(event: &Event) -> Vec<u8> {
        let mut lines = JsonLines::default();
        lines.push(0, event);
        lines.bytes().to_vec()
    }

    #[test]
    fn a_json_line_is_the_cloudevents_form_and_a_newline() {
        let line = json_line(&event("1", "audit", Some("eu"), Some("2022-07-12T07:08:09Z"), r#"{"user": "ada"}"#));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            concat!(
                r#"{"data":{"user":"ada"},"datacontenttype":"application/json","id":"1","routingkey":"eu","#,
                r#""source":"/dss/node-1","specversion":"1.0","time":"2022-07-12T07:08:09Z","type":"audit"}"#,
                "\n"
            )
        );
        let not_json = json_line(&event("2", "audit", None, None, "not json"));
        assert!(not_json.ends_with(b"\"data_base64\":\"bm90IGpzb24=\",\"datacontenttype\":\"application/json\",\"id\":\"2\",\"source\":\"/dss/node-1\",\"specversion\":\"1.0\",\"type\":\"audit\"}\n"));
    }

    #[tokio::test]
    async fn batches_are_appended_by_file_under_every_fsync_policy() {
        for policy in ["never", "batch", "always"] {
            let root = tempfile::tempdir().unwrap();
            let s = sink(root.path(), &format!("fsync = \"{policy}\""));
            let t = Some("2022-07-12T07:08:09Z");
            s.deliver(&[
                event("1", "audit.login", Some("eu"), t, r#"{"user":"ada"}"#),
                event("2", "audit.login", None, t, "{}"),
                event("3", "audit.login", Some("eu"), t, "not json"),
            ])
            .await
            .unwrap();
            s.deliver(&[event("4", "audit.login", Some("eu"), t, "{}")]).await.unwrap();
            let eu = lines(&root.path().join("audit.login/eu/2022/07/12/07/events.jsonl"));
            assert_eq!(eu.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(), [json!("1"), json!("3"), json!("4")]);
            assert_eq!(eu[0]["data"]["user"], "ada");
            assert_eq!(eu[1]["data_base64"], "bm90IGpzb24=");
            assert_eq!(lines(&root.path().join("audit.login/_/2022/07/12/07/events.jsonl"))[0]["id"], "2");
            assert_eq!(s.open.lock().await.entries.len(), 2, "{policy}: one handle per file");
        }
    }

    #[tokio::test]
    async fn refused_and_unwritable_events_fail_alone() {
        let root = tempfile::tempdir().unwrap();
        // A plain file where the sink wants the directory `blocked`.
        fs::write(root.path().join("blocked"), "").unwrap();
        let s = sink(root.path(), "path = \"{subject}/{routingkey}\"");
        let err = s
            .deliver(&[
                event("ok", "a", Some("k"), None, "{}"),
                event("escape", "a", Some("../etc"), None, "{}"),
                event("blocked", "blocked", Some("k"), None, "{}"),
            ])
            .await
            .unwrap_err();
        let DeliveryError::Partial(failures) = err else { panic!("expected a partial failure, got {err:?}") };
        let summary: Vec<_> = failures.iter().map(|f| (f.index, f.retryable)).collect();
        assert_eq!(summary, [(1, false), (2, true)]);
        assert_eq!(
            failures[0].message,
            "event \"escape\": routing key \"../etc\" is refused as a path component: it contains \"/\""
        );
        assert!(
            failures[1].message.starts_with("event \"blocked\": cannot create directory"),
            "{}",
            failures[1].message
        );
        assert_eq!(lines(&root.path().join("a/k/events.jsonl")).len(), 1);
        assert!(!root.path().join("etc").exists());
    }

    #[tokio::test]
    async fn a_missing_root_fails_the_batch_as_retryable_and_is_not_created() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("not-mounted");
        let s = sink(&missing, "");
        let err = s.deliver(&[event("1", "a", None, None, "{}"), event("2", "a", None, None, "{}")]).await.unwrap_err();
        assert!(
            matches!(&err, DeliveryError::Retryable(m) if m.contains("root directory") && m.ends_with("(and 1 more event(s))")),
            "{err:?}"
        );
        assert!(!missing.exists());
        let only_refused = s.deliver(&[event("1", ".a", None, None, "")]).await.unwrap_err();
        assert!(matches!(only_refused, DeliveryError::Permanent(_)), "{only_refused:?}");
    }

    #[tokio::test]
    async fn a_removed_file_is_reopened_and_old_handles_are_closed() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(root.path(), "path = \"{subject}\"\nfsync = \"never\"");
        s.deliver(&[event("1", "a", None, None, "{}")]).await.unwrap();
        fs::remove_dir_all(root.path().join("a")).unwrap();
        s.deliver(&[event("2", "a", None, None, "{}")]).await.unwrap();
        assert_eq!(lines(&root.path().join("a/events.jsonl"))[0]["id"], "2");

        let many: Vec<_> =
            (0..OPEN_FILES + 5).map(|i| event(&i.to_string(), &format!("s{i}"), None, None, "")).collect();
        s.deliver(&many).await.unwrap();
        let open = s.open.lock().await;
        assert_eq!(open.entries.len(), OPEN_FILES);
        assert!(
            open.entries.iter().all(|entry| entry.path != root.path().join("a/events.jsonl")),
            "the oldest went first"
        );
    }

    #[test]
    fn failed_writes_keep_the_event_indexes() {
        let batch = [event("x", "a", None, None, "")];
        assert_eq!(
            event_failure(&batch, 0, "cannot write", true),
            EventFailure { index: 0, message: "event \"x\": cannot write".into(), retryable: true }
        );
    }
}
