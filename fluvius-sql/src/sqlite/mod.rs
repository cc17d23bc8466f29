//! The SQLite log store: embedded, one file, no server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fluvius_sql::Error> {
//! use fluvius_sql::{SqliteLogStore, Synchronous};
//! // create the file if missing, WAL journal, synchronous = FULL, migrations applied
//! let store = SqliteLogStore::open("sqlite://app.db").await?;
//! // or choose the settings
//! let store = SqliteLogStore::builder("sqlite://app.db")
//!     .synchronous(Synchronous::Normal)
//!     .busy_timeout(std::time::Duration::from_secs(10))
//!     .open()
//!     .await?;
//! // an in-memory database, for tests
//! let store = SqliteLogStore::open("sqlite::memory:").await?;
//! # Ok(()) }
//! ```
//!
//! # Durability
//! A file database runs in WAL mode with `foreign_keys = ON` and a busy timeout (5 s by
//! default: a writer waits that long for the write lock before failing).
//!
//! - [`Synchronous::Full`] (the default): every commit syncs the write-ahead log to disk
//!   before [`append`](fluvius_core::LogStore::append) returns. An appended event survives a process crash
//!   *and* a power loss or OS crash.
//! - [`Synchronous::Normal`]: the WAL is synced only at checkpoints. Still atomic and never
//!   corrupt, and a process crash loses nothing; but a power loss or OS crash may roll back the
//!   last transactions that had already been reported as committed. Faster per commit.
//!
//! # Outcomes
//! An append is answered `Ok` (stored), [`Error::OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown)
//! (resend it with the same command id), or any other error (nothing was written). Every
//! operation is bounded by [`SqliteOptions::operation_timeout`] (30 s by default): a read that
//! takes longer fails with [`Error::Timeout`](fluvius_core::Error::Timeout). An append that
//! takes longer may still commit on sqlx's worker thread, so the store waits for the truth
//! (at most the operation timeout again, at most 5 s): it takes the write turn, closes the
//! writer's connection if the write left it open (closing waits until the worker ran what was
//! sent before), and looks up the append's first event id at its version — found: `Ok`; not
//! there: a store error (it cannot commit any more); still running: `OutcomeUnknown`. A
//! queued append whose caller stopped waiting is not written any more.
//!
//! # Group commit
//! On by default ([`GroupCommit`](crate::GroupCommit), set with [`SqliteOptions::group_commit`]): appends made
//! concurrently through one store share one `BEGIN IMMEDIATE` transaction and one sync of the
//! WAL, and a conflict or a duplicate command fails only that append. With
//! `synchronous = FULL` one append per commit is bounded by the disk's sync rate; group commit
//! lifts that bound for concurrent callers. A lone append is written at once. See
//! [`crate::group_commit`] for the details.
//!
//! A batch of several appends is written in bulk, with two queries whatever its size (each
//! query costs a trip to sqlx's SQLite worker thread). The first begins the transaction
//! (`BEGIN IMMEDIATE`) and reads, one row back, the log's last position, the versions of all
//! the batch's streams and which of its command ids are recorded already (the streams and
//! ids go in as JSON arrays, so one prepared statement serves every batch size). The store
//! then decides each append in batch order (a command id recorded, or carried by an earlier
//! accepted append of the batch, is a duplicate; an expected version other than the stored
//! one plus the earlier accepted appends of the batch is a conflict naming that version). The
//! second query writes the accepted ones — a multi-row `INSERT` for their command records, one
//! for their events (split at [`MAX_ROWS_PER_INSERT`] rows) — and commits; appends with
//! snapshots write those after it and commit on their own. Nothing else can write meanwhile:
//! the transaction holds SQLite's write lock and the store's write turn. So the store numbers
//! the events itself, the positions after the last one in batch order — those SQLite would
//! assign — and needs no row back per event. A batch with [transactional
//! handlers](fluvius_core::transactional) — which must run inside their append's own
//! savepoint — is written one savepoint per append, as is a batch whose bulk statements fail
//! (rolled back, then written again append by append).
//!
//! # Batched stream reads
//! With group commit on, stream reads share queries too: a
//! [`read_stream`](fluvius_core::LogStore::read_stream) of a whole stream (the default [`StreamQuery`], what
//! loading an aggregate does) is queued for the store's reader task, which takes the
//! first read waiting plus whatever else is queued at that moment (up to 256 streams) and reads
//! all their streams with one query — the listed streams (one JSON array, so one prepared
//! statement for every batch size) joined against the stream index —
//! then answers each caller with its stream's events in version order. Each query is one trip
//! to sqlx's SQLite worker thread instead of one per read, which is what concurrent loads
//! spend most of their time on. Like appends, a lone read is sent at once, never held back for
//! company; and one query sees one snapshot of the database, so each stream comes back whole
//! as of that moment. A failing query fails every read of its batch with the store error.
//! Reads with a range or a time bound, and every read with [`GroupCommit::off`](crate::GroupCommit::off), run their own
//! query on the calling task. [`SqliteLogStore::read_batch_stats`] counts the batches.
//!
//! A stream read while nothing is queued and nobody is writing (any read, with group commit
//! on or off) runs on its caller's task, on the writer's connection (below), holding the write
//! turn for the query: that connection's page cache holds what the last appends wrote, where
//! a pooled connection has dropped its cache after every append and reads the pages again.
//! Such reads are counted in [`ReadBatchStats::alone`].
//!
//! # Connections
//! Appends to a file database write on one connection of their own, opened on the first
//! append with the pool's settings and kept until [`SqliteLogStore::close`]: outside the pool,
//! which keeps its connections for reads (and checkpoint writes). One connection for every
//! append keeps that connection's page cache valid from one commit to the next, where
//! appends on whichever pool connection is idle re-read the pages they touch (SQLite drops a
//! connection's cache when another connection wrote since). The pool does not ping a
//! connection before handing it out (an SQLite connection is a handle in this process, not a
//! socket that can go stale; the ping is a trip to its worker thread).
//!
//! An in-memory database (`sqlite::memory:`) keeps nothing when the store is dropped. Its pool
//! holds exactly one connection, kept open for the store's lifetime, so every operation sees
//! the same database.
//!
//! # Ordering
//! SQLite lets one write transaction run at a time (appends start with `BEGIN IMMEDIATE`), so
//! positions are assigned in commit order: the log is dense (1, 2, 3, … with no gaps) and a
//! reader of [`read_all`](fluvius_core::LogStore::read_all) can never see position N+1 before N.
//!
//! # Layout
//! Tables `fluvius_events`, `fluvius_commands` and `fluvius_snapshots` (see
//! `migrations/sqlite` in this crate).
//! Payloads, arguments, metadata and contexts are stored as the exact JSON text written;
//! timestamps as microseconds since the Unix epoch. One append alone is one transaction: the
//! command row (a duplicate command id fails there), then one multi-row `INSERT` for its
//! events that also checks the expected version — `INSERT … SELECT * FROM (VALUES …) WHERE
//! <the stream's version> = <expected> RETURNING …`, so no separate read of the version;
//! when it returns no rows the stream is elsewhere, and only then is its version read, to
//! name it in the conflict — then the snapshot row if the request carries one. The command
//! row and the events go to SQLite as one query of two statements, with `BEGIN IMMEDIATE` in
//! front (each query is a trip to sqlx's worker thread), so a lone append is that query and
//! `COMMIT`.
//! Appends above [`MAX_ROWS_PER_INSERT`] events are split into several statements of the same
//! transaction, to stay under SQLite's limit on bound parameters; the first one checks the
//! version, the others follow it under the same write lock.

use std::sync::Arc;
use std::time::Duration;

use fluvius_core::{
    AggregateId, CommandRecord, Event, LogEntry, Payload, Snapshot, SnapshotQuery, StreamQuery,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

use crate::batch::{GroupCommitStats, Queue, ReadBatchStats, ReadQueue};
use crate::codec;
use crate::error::{Error, Result};

mod append;
mod bulk;
mod checkpoint;
mod options;
mod reads;
mod resolve;
mod rows;
mod statements;
mod write_tx;

use write_tx::WriteTx;

pub use checkpoint::{advance_projection, reset_projection};
pub use options::{SqliteOptions, Synchronous};

use self::append::*;
use self::rows::*;
use self::statements::*;

type CoreResult<T> = fluvius_core::Result<T>;

/// This process's turn to write, with the writer's connection.
type WriteTurn<'a> = tokio::sync::MutexGuard<'a, WriterSlot>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// At most this many events go into one `INSERT` statement (13 bound parameters each, plus 3
/// for the version check, below SQLite's default limit of 32 766). Larger appends use several
/// statements, still in one transaction.
pub const MAX_ROWS_PER_INSERT: usize = 2_000;

/// A [`LogStore`](fluvius_core::LogStore) in an SQLite database. Cheap to clone (the pool is shared).
///
/// See the [module docs](self) for durability and ordering.
#[derive(Clone)]
pub struct SqliteLogStore {
    pool: SqlitePool,
    target: Arc<str>,
    /// The group-commit writer's queue, when group commit is on.
    queue: Option<Queue>,
    /// The queue of the stream-read batcher, when group commit is on.
    reads: Option<ReadQueue>,
    /// Taken by every write of this store (appends, checkpoint writes) for its transaction:
    /// SQLite has one write lock, and writers of one process queue here in order instead of
    /// sleeping in SQLite's busy handler (1, 2, 5, 10… ms) until the lock happens to be free.
    /// It also holds the connection appends write on (see [`WriterSlot`]).
    writer: Arc<tokio::sync::Mutex<WriterSlot>>,
    /// See [`SqliteOptions::operation_timeout`].
    operation_timeout: Duration,
}

/// The connection appends write on, kept from one write to the next (a file database).
///
/// One connection for every append keeps SQLite's page cache of that connection valid from
/// one commit to the next: a connection drops its cache whenever another connection wrote
/// since its last transaction, and appends taking whichever pool connection is idle re-read
/// the pages they touch (about ten reads per commit). It is opened with the pool's settings
/// on the first append, outside the pool (so the pool keeps all its connections for reads),
/// and closed by [`SqliteLogStore::close`].
#[derive(Default)]
struct WriterSlot {
    /// How to open the connection; `None` for an in-memory database, whose pool's one
    /// connection *is* the database: its appends take that connection from the pool.
    options: Option<SqliteConnectOptions>,
    conn: Option<SqliteConnection>,
    /// `conn` may be broken (a statement failed other than in the database) or may hold a
    /// transaction (set from `BEGIN` until `COMMIT` or `ROLLBACK` returned, see [`WriteTx`]):
    /// the next append opens a new one, and no read uses it meanwhile.
    suspect: bool,
}

impl WriterSlot {
    /// The writer's connection is open and not suspect (an in-memory database has none of
    /// its own): a read may use it.
    fn can_read(&self) -> bool {
        self.conn.is_some() && !self.suspect
    }
}

impl std::fmt::Debug for SqliteLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLogStore")
            .field("target", &self.target)
            .finish()
    }
}

impl SqliteLogStore {
    /// Apply the embedded migrations (done on open unless turned off).
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|source| Error::Connect {
            target: self.target.to_string(),
            source,
        })?;
        // `run_direct` on a concrete connection keeps this future `Send` in generic contexts.
        MIGRATOR
            .run_direct(&mut *conn)
            .await
            .map_err(|source| Error::Migrate {
                target: self.target.to_string(),
                source,
            })
    }

    /// The embedded migrations, for tools that manage the schema themselves.
    pub fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database, as `sqlite:<path>` or `sqlite::memory:`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Close every connection (waits for those in use, and for an append in progress). An
    /// in-memory database is gone after. Reads and writes fail from then on.
    pub async fn close(&self) {
        let conn = {
            // Under the write turn: an append after this sees the pool closed, and does not
            // open a new writer connection.
            let mut slot = self.writer.lock().await;
            self.pool.close().await;
            slot.conn.take()
        };
        if let Some(conn) = conn {
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the writer connection failed");
            }
        }
    }

    /// What the group-commit writer has done so far; `None` when group commit is off.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.queue.as_ref().map(Queue::stats)
    }

    /// What the stream-read batcher has done so far; `None` when group commit is off. See the
    /// [module docs](self#batched-stream-reads).
    pub fn read_batch_stats(&self) -> Option<ReadBatchStats> {
        self.reads.as_ref().map(ReadQueue::stats)
    }
}

log_store_glue!(SqliteLogStore, "sqlite");
