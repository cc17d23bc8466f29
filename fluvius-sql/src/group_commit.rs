//! Group commit: concurrent appends share one transaction and one sync to disk.
//!
//! Each store with group commit on owns a writer task (PostgreSQL: a few, see
//! [`GroupCommit::writers`]). [`LogStore::append`] puts its request
//! on the writer's queue and waits for its own answer. The writer takes the first request
//! waiting, drains whatever else is queued at that moment (up to
//! [`GroupCommit::max_batch`] appends and [`GroupCommit::max_batch_events`] events), and
//! writes them all in one transaction. A conflict or a duplicate command fails that append
//! alone, and its neighbours commit. Every caller is answered only after the commit returned,
//! so an acknowledged append is as durable as without group commit.
//!
//! A batch of several appends is written in bulk: a read of the current versions of all its
//! streams and of which of its command ids are already recorded (one query each on
//! PostgreSQL, one for both on SQLite), a decision per append
//! in batch order (a command id recorded, or carried by an earlier accepted append of the same
//! batch, is a [duplicate](fluvius_core::Error::DuplicateCommand); an expected version other
//! than the stream's, counting the earlier accepted appends of the batch, is a
//! [conflict](fluvius_core::Error::Conflict) naming that version), then one multi-row insert
//! for the accepted command records and one for their events — a few statements for the
//! whole batch instead of several per append. A batch where an append carries
//! [transactional handlers](fluvius_core::transactional) is written one savepoint per append
//! instead (the handlers run inside their append's savepoint, and a refusal rolls back that
//! append alone), and so is a batch whose bulk statements fail: the store undoes them and
//! writes the batch again, append by append, where each failure is an append's own. Each
//! store's module docs say how it writes a batch.
//!
//! A lone append is written at once: the writer never waits for company, so an idle store
//! adds no latency. Batches form by themselves while a commit is in flight — exactly when
//! callers would otherwise queue for the write lock. A lone append is written on its caller's
//! task (no hand-off to the writer task and back, [`GroupCommitStats::alone`]): on SQLite when
//! nothing is queued and nobody is writing — the writer, having taken the first append of its
//! next batch, waits for that write before it takes the rest, so what queues meanwhile still
//! forms one batch; on PostgreSQL when no other append is queued, being written or written
//! alone (appends that arrive meanwhile queue for the writers, which write them beside it).
//!
//! A caller that stops waiting (its future is dropped, or the store's operation timeout
//! passed) does not withdraw an append a writer has taken: it is written, as a request
//! already sent to a server would be, and the caller learns its outcome from the log (see the
//! `postgres` and `sqlite` module docs, "Outcomes"). On SQLite, an append still queued when
//! its writer takes the write turn is dropped if its caller is gone.
//!
//! The writer runs on the tokio runtime that opened the store: use the store inside that
//! runtime (once it shuts down, appends fail with a store error saying the writer stopped),
//! or turn group commit off with [`GroupCommit::off`].
//!
//! Group commit also batches whole-stream reads: concurrent [`LogStore::read_stream`] calls
//! share one query, with the same shape (a reader task takes the first read waiting plus
//! whatever else is queued, a lone read goes at once; on PostgreSQL the only read in flight
//! runs on its caller's task, on SQLite a read while nothing is queued and nobody is writing
//! runs on its caller's task, on the writer's connection). See the `sqlite` and `postgres`
//! module docs and [`ReadBatchStats`].
//!
//! [`LogStore::append`]: fluvius_core::LogStore::append
//! [`LogStore::read_stream`]: fluvius_core::LogStore::read_stream

pub use crate::batch::{GroupCommit, GroupCommitStats, ReadBatchStats};
