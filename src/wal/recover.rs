//! Reading a log back at start: [`scan`] reads every segment once, frame by frame, cuts a damaged
//! tail off its segment (so nothing is ever appended behind garbage) and finds the events never
//! marked done and the highest seq ever used; [`PendingEvents`] then reads those events back one
//! frame at a time, so a log far larger than memory replays in bounded memory. Never writes a
//! frame, and never removes a segment: the log does both.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::frame::{Damage, EVENT, FrameReader, HEADER};
use super::{Seq, record};
use crate::event::Event;

/// Damage recovery found and skipped: a torn write or corruption cut off the end of its segment
/// (the segment is truncated to its last good frame), or an event this version cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub segment: PathBuf,
    pub offset: u64,
    /// Bytes skipped there.
    pub bytes: u64,
    pub reason: String,
}

/// What [`scan`] found.
pub struct Scan {
    /// The events never marked done, by the segment that holds them.
    pub pending: BTreeMap<Seq, BTreeSet<Seq>>,
    /// The first seq after every seq and every segment name seen: where the log goes on.
    pub next_seq: Seq,
    pub skipped: Vec<Skipped>,
}

/// Reads every segment of `dir` (see the module docs).
pub fn scan(dir: &Path) -> io::Result<Scan> {
    let segments = segments(dir)?;
    let mut events: BTreeMap<Seq, Seq> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut next_seq = segments.last().map_or(0, |(first, _)| first + 1);
    for (first, path) in &segments {
        let file = File::open(path)?;
        let length = file.metadata()?.len();
        let mut reader = FrameReader::new(BufReader::new(file));
        loop {
            let frame = match reader.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(Damage::Io(err)) => return Err(err),
                Err(Damage::Bad(reason)) => {
                    let offset = reader.offset();
                    truncate(path, offset)?;
                    skipped.push(Skipped { segment: path.clone(), offset, bytes: length - offset, reason });
                    break;
                }
            };
            let (kind, seq, size) = (frame.kind, frame.seq, (HEADER + 8 + frame.body.len()) as u64);
            let readable = kind != EVENT || record::decode(frame.body).is_some();
            next_seq = next_seq.max(seq + 1);
            match kind {
                EVENT if readable => {
                    events.insert(seq, *first);
                }
                EVENT => skipped.push(Skipped {
                    segment: path.clone(),
                    offset: reader.offset() - size,
                    bytes: size,
                    reason: format!("event {seq} is not a record this version reads; it stays in the log"),
                }),
                _ => {
                    events.remove(&seq);
                }
            }
        }
    }
    let mut pending: BTreeMap<Seq, BTreeSet<Seq>> =
        segments.iter().map(|(first, _)| (*first, BTreeSet::new())).collect();
    for (seq, segment) in events {
        pending.entry(segment).or_default().insert(seq);
    }
    Ok(Scan { pending, next_seq, skipped })
}

/// Cuts `path` back to `length` bytes, on disk before anything is appended after it.
fn truncate(path: &Path, length: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(length)?;
    file.sync_all()
}

/// The segment files of `dir`, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<(Seq, PathBuf)>> {
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

/// The events a log held that were never marked done, read back in log order one frame at a time.
/// A segment that cannot be read any more is logged and skipped: its events stay in the log for
/// the next start.
pub struct PendingEvents {
    segments: VecDeque<(PathBuf, BTreeSet<Seq>)>,
    reading: Option<(PathBuf, FrameReader<BufReader<File>>, BTreeSet<Seq>)>,
    left: usize,
}

impl PendingEvents {
    pub(super) fn new(dir: &Path, pending: &BTreeMap<Seq, BTreeSet<Seq>>) -> PendingEvents {
        let segments: VecDeque<_> = pending
            .iter()
            .filter(|(_, seqs)| !seqs.is_empty())
            .map(|(first, seqs)| (super::segment_path(dir, *first), seqs.clone()))
            .collect();
        let left = segments.iter().map(|(_, seqs)| seqs.len()).sum();
        PendingEvents { segments, reading: None, left }
    }

    /// Events not read back yet.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for PendingEvents {
    type Item = (Seq, Event);

    fn next(&mut self) -> Option<(Seq, Event)> {
        loop {
            if self.reading.is_none() {
                let (path, seqs) = self.segments.pop_front()?;
                match File::open(&path) {
                    Ok(file) => self.reading = Some((path, FrameReader::new(BufReader::new(file)), seqs)),
                    Err(err) => {
                        tracing::error!(segment = %path.display(), error = %err, "cannot read back a segment of the write-ahead log");
                        self.left -= seqs.len();
                    }
                }
                continue;
            }
            let (path, reader, seqs) = self.reading.as_mut()?;
            let found = match reader.next() {
                Ok(Some(frame)) if frame.kind == EVENT && seqs.remove(&frame.seq) => {
                    self.left -= 1;
                    let event = record::decode(frame.body);
                    Some(event.map(|event| (frame.seq, event)))
                }
                Ok(Some(_)) => None,
                Ok(None) | Err(Damage::Bad(_)) | Err(Damage::Io(_)) => {
                    if !seqs.is_empty() {
                        tracing::error!(segment = %path.display(), events = seqs.len(), "a segment of the write-ahead log changed while it was read back; its events stay in the log");
                        self.left -= seqs.len();
                    }
                    self.reading = None;
                    None
                }
            };
            if self.reading.as_ref().is_some_and(|(_, _, seqs)| seqs.is_empty()) {
                self.reading = None;
            }
            if let Some(Some(found)) = found {
                return Some(found);
            }
        }
    }
}
