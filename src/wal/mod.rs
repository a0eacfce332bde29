//! The write-ahead log of durable embedded mode (`[durability]`): every event a route takes is
//! appended before it is acknowledged ([`crate::broker::DurableBroker`]), and marked done once
//! every copy of it is ([`crate::completion`]); after a crash, [`WriteAheadLog::open`] hands back
//! what was never marked done, to deliver again. [`LogWriter`] is the thread that owns it.
//!
//! Segment files, not an embedded store: the log is append-only and read back only at start, and
//! its space is given back a whole segment at a time — the shape Kafka's and JetStream's own logs
//! have; a B-tree store would pay a page write and a tree update for each event and compaction to
//! reclaim space. Each segment, `<first seq>.wal` in the log's directory, is a run of frames:
//!
//! ```text
//! kind u8 (1 event, 2 done) | length u32 LE | crc32 u32 LE of kind and payload | payload
//! event payload: seq u64 LE, then the record (`record`); done payload: seq u64 LE
//! ```
//!
//! A frame whose length runs past the file or whose checksum fails ends what is read of its
//! segment: the valid frames before it are kept, and the tail is reported ([`CorruptTail`]). A
//! segment is removed once every event in it and in every older segment is done, so the done
//! frames of an event never go before the event does. It never decides what an event is for.

mod record;
mod writer;

pub use writer::{AppendError, LogWriter};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Event;

/// A log position: one per appended event, increasing.
pub type Seq = u64;

const EVENT: u8 = 1;
const DONE: u8 = 2;
const HEADER: usize = 9;
/// A frame longer than this is taken for garbage, not allocated.
const MAX_FRAME: usize = 64 << 20;

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every commit that wrote events is on disk before it returns.
    Always,
    /// Commits go to the OS at once, so a crash of the process loses nothing, and are synced once
    /// the interval has passed since the last sync ([`WriteAheadLog::sync_deadline`]): a crash of
    /// the machine loses at most what came in one interval.
    Interval(Duration),
}

/// `[durability]`, as the config file gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurabilitySettings {
    /// Where the log's segment files live (made if missing).
    pub dir: PathBuf,
    /// `"always"`: acknowledged means on disk. `"interval"`: acknowledged means written to the OS,
    /// synced every `interval_ms`.
    #[serde(default)]
    pub fsync: FsyncMode,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A segment file past this size is closed and the next one begun.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

/// The `fsync` key of `[durability]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    #[default]
    Always,
    Interval,
}

fn default_interval_ms() -> u64 {
    100
}

fn default_segment_bytes() -> u64 {
    64 << 20
}

impl DurabilitySettings {
    /// What is wrong with the settings, by key.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.dir.as_os_str().is_empty() {
            errors.push(("dir", "name the directory the write-ahead log lives in".into()));
        }
        if self.fsync == FsyncMode::Interval && !(1..=60_000).contains(&self.interval_ms) {
            errors.push(("interval_ms", "sync at least once a minute, at most once a millisecond".into()));
        }
        if self.segment_bytes < 4096 {
            errors.push(("segment_bytes", "must be at least 4096".into()));
        }
        errors
    }

    pub fn wal(&self) -> WalSettings {
        let fsync = match self.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(Duration::from_millis(self.interval_ms)),
        };
        WalSettings { dir: self.dir.clone(), fsync, segment_bytes: self.segment_bytes }
    }
}

/// Where the log lives and how it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSettings {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// A segment past this size is closed and a new one started.
    pub segment_bytes: u64,
}

/// A segment's tail that was cut off (a torn write) or damaged, and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// What `open` found: the events never marked done, in log order, and the tails it skipped.
#[derive(Debug, Default)]
pub struct Recovery {
    pub pending: Vec<(Seq, Event)>,
    pub corrupt: Vec<CorruptTail>,
}

/// The log; see the module docs. Appends and done marks are buffered until [`commit`](Self::commit)
/// writes them in one go, so one write and one fsync serve a whole group of appends.
pub struct WriteAheadLog {
    settings: WalSettings,
    /// Events committed and not done yet, by segment (its first seq).
    pending: BTreeMap<Seq, BTreeSet<Seq>>,
    active: Active,
    next_seq: Seq,
    /// Frames of events appended since the last commit, and their seqs.
    events: Vec<u8>,
    uncommitted: Vec<Seq>,
    /// Frames of done marks since the last commit; kept for the next one if a commit fails.
    dones: Vec<u8>,
}

struct Active {
    first: Seq,
    file: File,
    /// Bytes written and committed: a failed write is cut back to this.
    bytes: u64,
    synced: Instant,
    /// Written since the last sync.
    dirty: bool,
}

impl WriteAheadLog {
    /// Opens the log in `settings.dir` (made if missing), reads back every segment, and starts a new
    /// segment for what comes next.
    pub fn open(settings: WalSettings) -> io::Result<(WriteAheadLog, Recovery)> {
        fs::create_dir_all(&settings.dir)?;
        let mut recovery = Recovery::default();
        let mut events: BTreeMap<Seq, (Seq, Event)> = BTreeMap::new();
        let mut done = BTreeSet::new();
        let mut next_seq = 0;
        for (first, path) in segments(&settings.dir)? {
            let bytes = fs::read(&path)?;
            let mut at = 0;
            while at < bytes.len() {
                let frame = match read_frame(&bytes[at..]) {
                    Ok(frame) => frame,
                    Err(reason) => {
                        recovery.corrupt.push(CorruptTail { segment: path.clone(), offset: at as u64, reason });
                        break;
                    }
                };
                at += HEADER + frame.1.len();
                let Some((seq, body)) = frame.1.split_first_chunk::<8>().map(|(s, b)| (u64::from_le_bytes(*s), b))
                else {
                    continue;
                };
                next_seq = next_seq.max(seq + 1);
                match frame.0 {
                    EVENT => match record::decode(body) {
                        Some(event) => {
                            events.insert(seq, (first, event));
                        }
                        None => recovery.corrupt.push(CorruptTail {
                            segment: path.clone(),
                            offset: at as u64,
                            reason: format!("event {seq} is not a record this version reads"),
                        }),
                    },
                    _ => {
                        done.insert(seq);
                    }
                }
            }
        }
        let mut pending: BTreeMap<Seq, BTreeSet<Seq>> = BTreeMap::new();
        for (seq, (segment, event)) in events {
            if !done.contains(&seq) {
                pending.entry(segment).or_default().insert(seq);
                recovery.pending.push((seq, event));
            }
        }
        for (first, _) in segments(&settings.dir)? {
            pending.entry(first).or_default();
        }
        let active = Active::start(&settings.dir, next_seq)?;
        pending.entry(next_seq).or_default();
        let mut log = WriteAheadLog {
            settings,
            pending,
            active,
            next_seq,
            events: Vec::new(),
            uncommitted: Vec::new(),
            dones: Vec::new(),
        };
        log.remove_finished()?;
        Ok((log, recovery))
    }

    /// Appends an event's `record` ([`encode`]) to what the next [`commit`](Self::commit) writes.
    pub fn append(&mut self, record: &[u8]) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        frame(&mut self.events, EVENT, seq, record);
        self.uncommitted.push(seq);
        seq
    }

    /// Marks committed event `seq` done: it is not handed back after a restart, and its segment goes
    /// once it and every older one are done. The mark is written by the next commit, and is never
    /// synced on its own: lost in a crash, it makes the event come back once more (a duplicate,
    /// never a loss).
    pub fn done(&mut self, seq: Seq) {
        frame(&mut self.dones, DONE, seq, &[]);
        if let Some((_, events)) = self.pending.range_mut(..=seq).next_back() {
            events.remove(&seq);
        }
    }

    /// Writes what was appended and marked done since the last commit, syncs it as the fsync
    /// policy says, and gives back finished segments. On an error (a full disk) the appended events
    /// are not in the log — the file is cut back to where it was — and the done marks wait for the
    /// next commit.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.events.is_empty() && self.dones.is_empty() {
            return Ok(());
        }
        let written = self.active.write(&self.dones).and_then(|()| self.active.write(&self.events));
        if let Err(err) = written {
            self.active.file.set_len(self.active.bytes)?;
            self.events.clear();
            self.uncommitted.clear();
            return Err(err);
        }
        self.active.bytes += (self.dones.len() + self.events.len()) as u64;
        self.active.dirty = true;
        let appended = !self.events.is_empty();
        self.dones.clear();
        self.events.clear();
        let segment = self.pending.entry(self.active.first).or_default();
        segment.extend(self.uncommitted.drain(..));
        let sync = match self.settings.fsync {
            FsyncPolicy::Always => appended,
            FsyncPolicy::Interval(every) => self.active.synced.elapsed() >= every,
        };
        if sync {
            self.sync()?;
        }
        if self.active.bytes >= self.settings.segment_bytes {
            self.sync()?;
            self.active = Active::start(&self.settings.dir, self.next_seq)?;
            self.pending.entry(self.next_seq).or_default();
        }
        self.remove_finished()
    }

    /// Syncs what was committed to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.active.dirty {
            self.active.file.sync_data()?;
            self.active.dirty = false;
        }
        self.active.synced = Instant::now();
        Ok(())
    }

    /// When committed frames are due to be synced by the interval policy, if they are.
    pub fn sync_deadline(&self) -> Option<Instant> {
        match self.settings.fsync {
            FsyncPolicy::Interval(every) if self.active.dirty => Some(self.active.synced + every),
            _ => None,
        }
    }

    /// Removes the oldest segments while every event in them is done (never the active one).
    fn remove_finished(&mut self) -> io::Result<()> {
        while let Some((&first, events)) = self.pending.first_key_value() {
            if first == self.active.first || !events.is_empty() {
                break;
            }
            self.pending.remove(&first);
            match fs::remove_file(segment_path(&self.settings.dir, first)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    /// Events committed and not done yet.
    pub fn pending(&self) -> usize {
        self.pending.values().map(BTreeSet::len).sum()
    }

    /// Segment files on disk now.
    pub fn segments(&self) -> io::Result<usize> {
        Ok(segments(&self.settings.dir)?.len())
    }
}

/// The record of `event`, for [`WriteAheadLog::append`].
pub fn encode(event: &Event) -> Vec<u8> {
    let mut record = Vec::with_capacity(128 + event.data.len());
    record::encode(event, &mut record);
    record
}

/// Appends a frame of `kind` holding `seq` and `body` to `out`.
fn frame(out: &mut Vec<u8>, kind: u8, seq: Seq, body: &[u8]) {
    let len = (8 + body.len()) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&seq.to_le_bytes());
    crc.update(body);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(body);
}

impl Active {
    fn start(dir: &Path, first: Seq) -> io::Result<Active> {
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, first))?;
        // The new file's directory entry must survive a crash too.
        File::open(dir)?.sync_all()?;
        let bytes = file.metadata()?.len();
        Ok(Active { first, file, bytes, synced: Instant::now(), dirty: false })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() { Ok(()) } else { self.file.write_all(bytes) }
    }
}

fn segment_path(dir: &Path, first: Seq) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<(Seq, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wal"));
        if let Some(first) = first.and_then(|f| f.parse().ok()) {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The kind and payload of the frame `bytes` start with, or why there is none.
fn read_frame(bytes: &[u8]) -> Result<(u8, &[u8]), String> {
    let Some(header) = bytes.get(..HEADER) else {
        return Err(format!("a frame header cut after {} of {HEADER} bytes", bytes.len()));
    };
    let kind = header[0];
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    if kind != EVENT && kind != DONE || len > MAX_FRAME {
        return Err(format!("no frame here (kind {kind}, length {len})"));
    }
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Err(format!("a frame of {len} bytes cut after {}", bytes.len() - HEADER));
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Err("checksum mismatch".into());
    }
    Ok((kind, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventJson;

    fn event(n: usize) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": "a.b", "id": n.to_string(), "data": n}))
            .unwrap()
            .into_event(|| unreachable!())
            .unwrap()
    }

    fn settings(dir: &Path, segment_bytes: u64) -> WalSettings {
        WalSettings { dir: dir.to_path_buf(), fsync: FsyncPolicy::Always, segment_bytes }
    }

    fn append(log: &mut WriteAheadLog, n: usize) -> Seq {
        let seq = log.append(&encode(&event(n)));
        log.commit().unwrap();
        seq
    }

    fn done(log: &mut WriteAheadLog, seq: Seq) {
        log.done(seq);
        log.commit().unwrap();
    }

    fn ids(recovery: &Recovery) -> Vec<String> {
        recovery.pending.iter().map(|(_, e)| e.context.id.clone()).collect()
    }

    #[test]
    fn what_was_not_done_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert!(recovery.pending.is_empty() && recovery.corrupt.is_empty());
        let seqs: Vec<Seq> = (0..5).map(|n| append(&mut log, n)).collect();
        done(&mut log, seqs[1]);
        done(&mut log, seqs[3]);
        drop(log);
        let (log, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert_eq!(ids(&recovery), ["0", "2", "4"]);
        assert_eq!(recovery.pending[0].1, event(0));
        assert_eq!(log.pending(), 3);
    }

    #[test]
    fn a_torn_tail_is_reported_and_the_frames_before_it_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        for n in 0..3 {
            append(&mut log, n);
        }
        drop(log);
        let (_, path) = segments(dir.path()).unwrap().remove(0);
        let length = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 3).unwrap();
        let (_, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert_eq!(ids(&recovery), ["0", "1"]);
        assert_eq!(recovery.corrupt.len(), 1);
        assert!(recovery.corrupt[0].reason.contains("cut"), "{:?}", recovery.corrupt);

        // A flipped byte in the middle: the checksum says so, and the rest of that segment goes.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert!(ids(&recovery).is_empty());
        assert_eq!(recovery.corrupt[0].reason, "checksum mismatch");
    }

    #[test]
    fn segments_go_once_they_and_every_older_one_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1)).unwrap();
        let seqs: Vec<Seq> = (0..3).map(|n| append(&mut log, n)).collect();
        assert_eq!(log.segments().unwrap(), 4, "a segment per event, and the active one");
        done(&mut log, seqs[1]);
        assert_eq!(log.segments().unwrap(), 4, "the oldest segment still has an event");
        done(&mut log, seqs[0]);
        assert_eq!(log.segments().unwrap(), 2, "the two oldest went together");
        done(&mut log, seqs[2]);
        drop(log);
        let (log, recovery) = WriteAheadLog::open(settings(dir.path(), 1)).unwrap();
        assert!(recovery.pending.is_empty());
        assert_eq!(log.segments().unwrap(), 1, "only the new active segment is left");
    }

    #[test]
    fn with_an_interval_policy_every_append_is_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let interval =
            WalSettings { fsync: FsyncPolicy::Interval(Duration::from_secs(3600)), ..settings(dir.path(), 1 << 20) };
        let (mut log, _) = WriteAheadLog::open(interval.clone()).unwrap();
        append(&mut log, 7);
        // Read while the log is still open, as after a crash of the process.
        let (_, recovery) = WriteAheadLog::open(interval).unwrap();
        assert_eq!(ids(&recovery), ["7"]);
        drop(log);
    }

    #[test]
    fn sequence_numbers_go_on_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        let first = append(&mut log, 0);
        drop(log);
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert!(append(&mut log, 1) > first);
    }
}
