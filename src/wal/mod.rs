//! The write-ahead log of durable embedded mode (issue 9, not wired into ingest yet): every
//! accepted event is appended before it is acknowledged, and marked done once every copy of it is
//! ([`crate::completion`]); after a crash, [`WriteAheadLog::open`] hands back what was never
//! marked done, to publish again.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
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
    /// Every append is on disk before it returns.
    Always,
    /// Appends are written to the OS at once, so a crash of the process loses nothing, and synced
    /// by the first append after each interval has passed (a crash of the machine loses at most
    /// what came since the last sync; the owner of the log may call `sync` on a timer too).
    Interval(Duration),
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

/// The log; see the module docs.
pub struct WriteAheadLog {
    settings: WalSettings,
    /// Events not done yet, by segment (its first seq).
    pending: BTreeMap<Seq, BTreeSet<Seq>>,
    active: Active,
    next_seq: Seq,
    frame: Vec<u8>,
}

struct Active {
    first: Seq,
    file: BufWriter<File>,
    bytes: u64,
    synced: Instant,
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
        let mut log = WriteAheadLog { settings, pending, active, next_seq, frame: Vec::new() };
        log.remove_finished()?;
        Ok((log, recovery))
    }

    /// Appends `event`; with `FsyncPolicy::Always` it is on disk when this returns. An error (a
    /// full disk) leaves the log as it was: the event is not in it.
    pub fn append(&mut self, event: &Event) -> io::Result<Seq> {
        let seq = self.next_seq;
        let mut payload = std::mem::take(&mut self.frame);
        payload.clear();
        payload.extend_from_slice(&seq.to_le_bytes());
        record::encode(event, &mut payload);
        let written = self.write(EVENT, &payload, true);
        self.frame = payload;
        written?;
        self.next_seq += 1;
        self.pending.entry(self.active.first).or_default().insert(seq);
        self.rotate_if_full()?;
        Ok(seq)
    }

    /// Marks event `seq` done: it is not handed back after a restart, and its segment goes once
    /// it and every older one are done.
    /// A done mark is not synced on its own: lost in a crash, it makes the event come back once
    /// more (a duplicate, never a loss), and the next sync takes it along.
    pub fn done(&mut self, seq: Seq) -> io::Result<()> {
        self.write(DONE, &seq.to_le_bytes(), false)?;
        if let Some((_, events)) = self.pending.range_mut(..=seq).next_back() {
            events.remove(&seq);
        }
        self.remove_finished()
    }

    /// Writes what is buffered and syncs it to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.active.file.flush()?;
        self.active.file.get_ref().sync_data()?;
        self.active.synced = Instant::now();
        Ok(())
    }

    /// Writes one frame; `durable`: as the fsync policy says, else only to the OS.
    fn write(&mut self, kind: u8, payload: &[u8], durable: bool) -> io::Result<()> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(payload);
        let mut header = [0; HEADER];
        header[0] = kind;
        header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[5..9].copy_from_slice(&crc.finalize().to_le_bytes());
        self.active.file.write_all(&header)?;
        self.active.file.write_all(payload)?;
        self.active.bytes += (HEADER + payload.len()) as u64;
        match self.settings.fsync {
            FsyncPolicy::Always if durable => self.sync(),
            FsyncPolicy::Interval(every) if durable && self.active.synced.elapsed() >= every => self.sync(),
            _ => self.active.file.flush(),
        }
    }

    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.active.bytes < self.settings.segment_bytes {
            return Ok(());
        }
        self.sync()?;
        self.active = Active::start(&self.settings.dir, self.next_seq)?;
        self.pending.entry(self.next_seq).or_default();
        Ok(())
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

    /// Events appended and not done yet.
    pub fn pending(&self) -> usize {
        self.pending.values().map(BTreeSet::len).sum()
    }

    /// Segment files on disk now.
    pub fn segments(&self) -> io::Result<usize> {
        Ok(segments(&self.settings.dir)?.len())
    }
}

impl Active {
    fn start(dir: &Path, first: Seq) -> io::Result<Active> {
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, first))?;
        // The new file's directory entry must survive a crash too.
        File::open(dir)?.sync_all()?;
        Ok(Active { first, file: BufWriter::with_capacity(64 << 10, file), bytes: 0, synced: Instant::now() })
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

    fn ids(recovery: &Recovery) -> Vec<String> {
        recovery.pending.iter().map(|(_, e)| e.context.id.clone()).collect()
    }

    #[test]
    fn what_was_not_done_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert!(recovery.pending.is_empty() && recovery.corrupt.is_empty());
        let seqs: Vec<Seq> = (0..5).map(|n| log.append(&event(n)).unwrap()).collect();
        log.done(seqs[1]).unwrap();
        log.done(seqs[3]).unwrap();
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
            log.append(&event(n)).unwrap();
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
        let seqs: Vec<Seq> = (0..3).map(|n| log.append(&event(n)).unwrap()).collect();
        assert_eq!(log.segments().unwrap(), 4, "a segment per event, and the active one");
        log.done(seqs[1]).unwrap();
        assert_eq!(log.segments().unwrap(), 4, "the oldest segment still has an event");
        log.done(seqs[0]).unwrap();
        assert_eq!(log.segments().unwrap(), 2, "the two oldest went together");
        log.done(seqs[2]).unwrap();
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
        log.append(&event(7)).unwrap();
        // Read while the log is still open, as after a crash of the process.
        let (_, recovery) = WriteAheadLog::open(interval).unwrap();
        assert_eq!(ids(&recovery), ["7"]);
        drop(log);
    }

    #[test]
    fn sequence_numbers_go_on_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        let first = log.append(&event(0)).unwrap();
        drop(log);
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert!(log.append(&event(1)).unwrap() > first);
    }
}
