//! [`LogWriter`]: the thread that owns the [`WriteAheadLog`], so no tokio worker ever waits on a
//! disk. Appends and done marks queue to it; it takes everything queued, commits it with one write
//! and (as the fsync policy says) one fsync, then answers every append of the group: group commit.
//! It never decides what is logged; [`crate::broker::DurableBroker`] does.

use std::io;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Seq, WriteAheadLog};

/// Commands taken into one commit at most, so answers are not held back behind a flood.
const MAX_GROUP: usize = 4096;

/// Why an append is not in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the write-ahead log cannot write: {message}")]
pub struct AppendError {
    pub kind: io::ErrorKind,
    pub message: String,
}

impl AppendError {
    fn from_io(err: &io::Error) -> AppendError {
        AppendError { kind: err.kind(), message: err.to_string() }
    }
}

enum Command {
    Append { records: Vec<Vec<u8>>, reply: oneshot::Sender<Result<Vec<Seq>, AppendError>> },
    Done(Seq),
    Sync(oneshot::Sender<Result<(), AppendError>>),
}

/// A handle on the log's thread; clones share it. The thread ends when the last handle is gone,
/// after committing and syncing what it was given.
#[derive(Clone)]
pub struct LogWriter {
    commands: mpsc::Sender<Command>,
}

impl LogWriter {
    /// Starts the thread that owns `log`.
    pub fn start(log: WriteAheadLog) -> io::Result<LogWriter> {
        let (commands, queued) = mpsc::channel();
        std::thread::Builder::new().name("eventyard-wal".into()).spawn(move || run(log, queued))?;
        Ok(LogWriter { commands })
    }

    /// Appends `records` ([`super::encode`]), in order, and returns their seqs once they are
    /// committed as the fsync policy says.
    pub async fn append(&self, records: Vec<Vec<u8>>) -> Result<Vec<Seq>, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Append { records, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Marks `seq` done; never waits.
    pub fn done(&self, seq: Seq) {
        let _ = self.commands.send(Command::Done(seq));
    }

    /// Commits and syncs everything given so far.
    pub async fn sync(&self) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Sync(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> AppendError {
    AppendError { kind: io::ErrorKind::BrokenPipe, message: "its thread has stopped".into() }
}

fn run(mut log: WriteAheadLog, queued: mpsc::Receiver<Command>) {
    let mut appends = Vec::new();
    let mut syncs = Vec::new();
    let mut failing = false;
    loop {
        let first = match log.sync_deadline() {
            Some(deadline) => match queued.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(err) = log.sync() {
                        tracing::error!(error = %err, "cannot sync the write-ahead log");
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match queued.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next {
            match command {
                Command::Append { records, reply } => {
                    let seqs: Vec<Seq> = records.iter().map(|record| log.append(record)).collect();
                    appends.push((seqs, reply));
                }
                Command::Done(seq) => log.done(seq),
                Command::Sync(reply) => syncs.push(reply),
            }
            taken += 1;
            next = if taken < MAX_GROUP { queued.try_recv().ok() } else { None };
        }
        let mut committed = log.commit();
        if committed.is_ok() && !syncs.is_empty() {
            committed = log.sync();
        }
        let result = committed.as_ref().map(|_| ()).map_err(AppendError::from_io);
        match (&result, failing) {
            (Err(err), false) => {
                tracing::error!(error = %err.message, "the write-ahead log cannot write; refusing events until it can")
            }
            (Ok(()), true) => tracing::info!("the write-ahead log writes again"),
            _ => {}
        }
        failing = result.is_err();
        for (seqs, reply) in appends.drain(..) {
            let _ = reply.send(result.clone().map(|()| seqs));
        }
        for reply in syncs.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
    if let Err(err) = log.commit().and_then(|()| log.sync()) {
        tracing::error!(error = %err, "cannot write the last of the write-ahead log");
    }
}
