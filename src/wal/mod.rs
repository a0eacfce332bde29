//! The write-ahead log of durable embedded mode (`[durability]`): every event a route takes is
//! appended before it is acknowledged ([`crate::broker::DurableBroker`]), and marked done once
//! every copy of it is ([`crate::completion`]); after a crash, [`WriteAheadLog::open`] hands back
//! what was never marked done, to deliver again. [`LogWriter`] is the thread that owns it.
//!
//! Segment files, not an embedded store: the log is append-only and read back only at start, and
//! its space is given back a whole segment at a time — the shape Kafka's and JetStream's own logs
//! have; a B-tree store would pay a page write and a tree update for each event and compaction to
//! reclaim space. Each segment, `<first seq>.wal` in the log's directory, is a run of frames
//! (`frame`).
//!
//! Invariants: a frame that could not be read back is never written (an event over
//! [`MAX_RECORD`] is refused); nothing is ever appended behind a damaged frame (recovery cuts a
//! damaged tail off, `recover`, and every run starts a fresh segment); a seq is never used twice
//! (a run goes on after every seq and segment name it finds); a segment is removed once every
//! event in it and in every older segment is done, so the done frames of an event never go before
//! the event does. It never decides what an event is for.

mod frame;
mod record;
mod recover;
mod writer;

pub use frame::{MAX_EVENT_BYTES, MAX_RECORD};
pub use recover::{PendingEvents, Skipped};
pub use writer::{AppendError, LogWriter};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Event;
use frame::{DONE, EVENT};

/// A log position: one per appended event, increasing.
pub type Seq = u64;

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

/// What `open` found: the events never marked done, to read back in log order, and the damage it
/// skipped.
pub struct Recovery {
    pub pending: PendingEvents,
    pub skipped: Vec<Skipped>,
}

/// An event whose record is larger than a frame may hold ([`MAX_RECORD`]): never written, as it
/// could not be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of {size} bytes is larger than the write-ahead log takes ({MAX_RECORD} bytes)")]
pub struct TooLarge {
    pub size: usize,
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
    /// Opens the log in `settings.dir` (made if missing): reads every segment back, cuts off a
    /// damaged tail, and starts a fresh segment after every seq it found for what comes next.
    pub fn open(settings: WalSettings) -> io::Result<(WriteAheadLog, Recovery)> {
        fs::create_dir_all(&settings.dir)?;
        let scan = recover::scan(&settings.dir)?;
        let recovery = Recovery { pending: PendingEvents::new(&settings.dir, &scan.pending), skipped: scan.skipped };
        let mut pending = scan.pending;
        let active = Active::start(&settings.dir, scan.next_seq)?;
        pending.entry(scan.next_seq).or_default();
        let mut log = WriteAheadLog {
            settings,
            pending,
            active,
            next_seq: scan.next_seq,
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
        frame::write(&mut self.events, EVENT, seq, record);
        self.uncommitted.push(seq);
        seq
    }

    /// Marks committed event `seq` done: it is not handed back after a restart, and its segment goes
    /// once it and every older one are done. The mark is written by the next commit, and is never
    /// synced on its own: lost in a crash, it makes the event come back once more (a duplicate,
    /// never a loss).
    pub fn done(&mut self, seq: Seq) {
        frame::write(&mut self.dones, DONE, seq, &[]);
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
            // A segment of done marks only has no event of its own: the next one is still new.
            self.next_seq = self.next_seq.max(self.active.first + 1);
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
        Ok(recover::segments(&self.settings.dir)?.len())
    }
}

/// The record of `event`, for [`WriteAheadLog::append`]; refused if a frame could not hold it.
pub fn encode(event: &Event) -> Result<Vec<u8>, TooLarge> {
    let mut record = Vec::with_capacity(128 + event.data.len());
    record::encode(event, &mut record);
    if record.len() > MAX_RECORD {
        return Err(TooLarge { size: record.len() });
    }
    Ok(record)
}

impl Active {
    fn start(dir: &Path, first: Seq) -> io::Result<Active> {
        // Always a new file: nothing is appended to what an earlier run left.
        let file = OpenOptions::new().create_new(true).append(true).open(segment_path(dir, first))?;
        // The new file's directory entry must survive a crash too.
        File::open(dir)?.sync_all()?;
        Ok(Active { first, file, bytes: 0, synced: Instant::now(), dirty: false })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() { Ok(()) } else { self.file.write_all(bytes) }
    }
}

fn segment_path(dir: &Path, first: Seq) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::frame::{FrameReader, HEADER};
    use super::*;
    use crate::event::EventJson;

    fn event(id: &str) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": "a.b", "id": id, "data": id}))
            .unwrap()
            .into_event(|| unreachable!())
            .unwrap()
    }

    fn settings(dir: &Path, segment_bytes: u64) -> WalSettings {
        WalSettings { dir: dir.to_path_buf(), fsync: FsyncPolicy::Always, segment_bytes }
    }

    fn append(log: &mut WriteAheadLog, id: &str) -> Seq {
        let seq = log.append(&encode(&event(id)).unwrap());
        log.commit().unwrap();
        seq
    }

    fn done(log: &mut WriteAheadLog, seq: Seq) {
        log.done(seq);
        log.commit().unwrap();
    }

    fn open(dir: &Path) -> (WriteAheadLog, Vec<String>, Vec<Skipped>) {
        let (log, recovery) = WriteAheadLog::open(settings(dir, 1 << 20)).unwrap();
        let ids = recovery.pending.map(|(_, e)| e.context.id).collect();
        (log, ids, recovery.skipped)
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segments = recover::segments(dir).unwrap();
        assert_eq!(segments.len(), 1);
        segments.remove(0).1
    }

    #[test]
    fn what_was_not_done_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, ids, skipped) = open(dir.path());
        assert!(ids.is_empty() && skipped.is_empty());
        let seqs: Vec<Seq> = (0..5).map(|n| append(&mut log, &n.to_string())).collect();
        done(&mut log, seqs[1]);
        done(&mut log, seqs[3]);
        drop(log);
        let (log, recovery) = WriteAheadLog::open(settings(dir.path(), 1 << 20)).unwrap();
        assert_eq!(recovery.pending.len(), 3);
        let events: Vec<Event> = recovery.pending.map(|(_, e)| e).collect();
        assert_eq!(events, [event("0"), event("2"), event("4")]);
        assert_eq!(log.pending(), 3);
    }

    #[test]
    fn a_damaged_tail_is_reported_cut_off_and_the_frames_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        for id in ["0", "1", "2"] {
            append(&mut log, id);
        }
        drop(log);
        let path = only_segment(dir.path());
        let length = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 3).unwrap();
        let (log, ids, skipped) = open(dir.path());
        assert_eq!(ids, ["0", "1"]);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.contains("cut"), "{skipped:?}");
        assert_eq!(fs::metadata(&path).unwrap().len(), skipped[0].offset, "cut back to the last good frame");
        drop(log);

        // A flipped byte in the first frame: the checksum says so, and the rest of that segment goes.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, ids, skipped) = open(dir.path());
        assert!(ids.is_empty());
        assert_eq!(skipped[0].reason, "checksum mismatch");
    }

    #[test]
    fn a_segment_holding_only_a_torn_frame_is_never_appended_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        let first = append(&mut log, "a");
        drop(log);
        // The crash came while the next run's first frame was being written.
        let (log, _, _) = open(dir.path());
        let torn = segment_path(dir.path(), log.active.first);
        drop(log);
        fs::write(&torn, [EVENT, 40, 0, 0]).unwrap();

        let (mut log, ids, skipped) = open(dir.path());
        assert_eq!((ids, skipped.len()), (vec!["a".to_owned()], 1));
        let after = append(&mut log, "b");
        assert!(after > first);
        drop(log);
        let (_, ids, skipped) = open(dir.path());
        assert_eq!((ids, skipped), (vec!["a".to_owned(), "b".to_owned()], vec![]));
    }

    #[test]
    fn segments_go_once_they_and_every_older_one_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WriteAheadLog::open(settings(dir.path(), 1)).unwrap();
        let seqs: Vec<Seq> = ["0", "1", "2"].iter().map(|id| append(&mut log, id)).collect();
        let exists = |seq: Seq| segment_path(dir.path(), seq).exists();
        assert_eq!(log.segments().unwrap(), 4, "a segment per event, and the active one");
        done(&mut log, seqs[1]);
        assert!(exists(seqs[0]) && exists(seqs[1]), "the oldest segment still has an event");
        done(&mut log, seqs[0]);
        assert!(!exists(seqs[0]) && !exists(seqs[1]) && exists(seqs[2]), "the two oldest went together");
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
        append(&mut log, "7");
        // Read while the log is still open, as after a crash of the process.
        let (_, ids, _) = open(dir.path());
        assert_eq!(ids, ["7"]);
        drop(log);
    }

    #[test]
    fn sequence_numbers_are_never_used_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        let first = append(&mut log, "0");
        done(&mut log, first);
        drop(log);
        // Every event done, every older segment gone: the empty active one still counts.
        let (mut log, _, _) = open(dir.path());
        assert!(append(&mut log, "1") > first);
    }

    #[test]
    fn an_event_a_frame_cannot_hold_is_refused() {
        let mut big = event("big");
        big.data = bytes::Bytes::from(vec![b'x'; MAX_RECORD]);
        assert!(matches!(encode(&big), Err(TooLarge { size }) if size > MAX_RECORD));
        big.data = bytes::Bytes::from(vec![b'x'; MAX_EVENT_BYTES]);
        assert!(encode(&big).is_ok());
    }

    /// A log of one segment written in commits of appends and done marks, and the frames it holds
    /// as the test wrote them: where each ends, and the event it appends or marks done.
    struct Written {
        bytes: Vec<u8>,
        frames: Vec<(u64, Option<String>, String)>,
    }

    impl Written {
        fn new(seed: u64) -> Written {
            let mut random = fastrand::Rng::with_seed(seed);
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _, _) = open(dir.path());
            let mut ids: BTreeMap<Seq, String> = BTreeMap::new();
            let mut open_events: Vec<Seq> = Vec::new();
            for commit in 0..6 {
                for _ in 0..random.usize(0..3).min(open_events.len()) {
                    log.done(open_events.remove(random.usize(..open_events.len())));
                }
                for n in 0..random.usize(1..4) {
                    let id = format!("c{commit}e{n}");
                    let seq = log.append(&encode(&event(&id)).unwrap());
                    ids.insert(seq, id);
                    open_events.push(seq);
                }
                log.commit().unwrap();
            }
            drop(log);
            let bytes = fs::read(only_segment(dir.path())).unwrap();
            let mut reader = FrameReader::new(bytes.as_slice());
            let mut frames = Vec::new();
            while let Some(frame) = reader.next().ok().flatten() {
                let (appended, id) = ((frame.kind == EVENT).then_some(()), ids[&frame.seq].clone());
                frames.push((reader.offset(), appended.map(|()| id.clone()), id));
            }
            assert_eq!(reader.offset(), bytes.len() as u64, "the test reads every frame it wrote");
            Written { bytes, frames }
        }

        /// The events appended and not marked done by the frames that end at or before `end`.
        fn pending_up_to(&self, end: u64) -> BTreeSet<String> {
            let mut pending = BTreeSet::new();
            for (_, appended, id) in self.frames.iter().filter(|(at, _, _)| *at <= end) {
                match appended {
                    Some(_) => pending.insert(id.clone()),
                    None => pending.remove(id),
                };
            }
            pending
        }

        /// Recovers a copy of the log as `damage` leaves it: exactly `want`, and after a run that
        /// appends and crashes, `want` and what that run appended.
        fn recovers(&self, damage: impl FnOnce(&mut Vec<u8>), want: BTreeSet<String>, case: &str) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = self.bytes.clone();
            damage(&mut bytes);
            fs::write(segment_path(dir.path(), 0), bytes).unwrap();
            let (mut log, ids, _) = open(dir.path());
            assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want, "{case}");
            assert_eq!(ids.len(), want.len(), "{case}: once each");
            log.append(&encode(&event("next")).unwrap());
            log.commit().unwrap();
            drop(log);
            let (_, ids, skipped) = open(dir.path());
            let mut want = want;
            want.insert("next".into());
            assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), want, "{case}, after another run");
            assert!(skipped.is_empty(), "{case}: the damage was cut off once: {skipped:?}");
        }
    }

    #[test]
    fn every_value_of_every_byte_of_the_last_frames_stops_reading_at_the_damaged_frame() {
        for seed in 0..3 {
            let written = Written::new(seed);
            let frames = &written.frames;
            let start = if frames.len() > 3 { frames[frames.len() - 4].0 } else { 0 };
            for at in start..written.bytes.len() as u64 {
                let frame_start = frames.iter().map(|(end, _, _)| *end).filter(|end| *end <= at).max().unwrap_or(0);
                let mut bytes = written.bytes.clone();
                for flip in 1..=255u8 {
                    bytes[at as usize] ^= flip;
                    let mut reader = FrameReader::new(bytes.as_slice());
                    while let Ok(Some(_)) = reader.next() {}
                    assert_eq!(reader.offset(), frame_start, "seed {seed}, byte {at} ^ {flip:#x}");
                    bytes[at as usize] ^= flip;
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_every_damaged_byte_of_the_last_frames_recovers_what_was_kept() {
        for seed in 0..3 {
            let written = Written::new(seed);
            let length = written.bytes.len() as u64;
            for cut in 0..=length {
                let want = written.pending_up_to(cut);
                written.recovers(|bytes| bytes.truncate(cut as usize), want, &format!("seed {seed}, cut at {cut}"));
            }
            // The last three frames: a byte there changed, in three ways, loses that frame and what
            // follows it, and nothing before.
            let frames = &written.frames;
            let start = if frames.len() > 3 { frames[frames.len() - 4].0 } else { 0 };
            for at in start..length {
                let frame_start =
                    written.frames.iter().map(|(end, _, _)| *end).filter(|end| *end <= at).max().unwrap_or(0);
                let want = written.pending_up_to(frame_start);
                for flip in [0x01, 0x80, 0xff] {
                    let case = format!("seed {seed}, byte {at} ^ {flip:#x}");
                    written.recovers(|bytes| bytes[at as usize] ^= flip, want.clone(), &case);
                }
            }
        }
    }
}
