//! The PostgreSQL log store: many app instances on one database.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fluvius_sql::Error> {
//! use fluvius_sql::PostgresLogStore;
//! let store = PostgresLogStore::connect("postgres://app:secret@db.internal/app").await?;
//! // or: tables in their own schema (created if missing), no migrations on connect
//! let store = PostgresLogStore::builder("postgres://app:secret@db.internal/app")
//!     .schema("fluvius")
//!     .run_migrations(false)
//!     .connect()
//!     .await?;
//! store.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! Needs PostgreSQL 13 or later (`xid8`, `pg_current_xact_id`).
//!
//! # Global order without a table lock
//! A sequence hands out positions, but sequence values are taken when a transaction *writes*,
//! not when it commits: transaction A can take position 5, transaction B position 6, and B can
//! commit first. A reader that then reads "everything after 4" sees 6, moves its checkpoint to
//! 6, and never sees 5 when A commits. Locking the table on every append fixes this by
//! serializing all writers; this store does not.
//!
//! Instead:
//! 1. Each append reserves its block of positions with `fluvius_reserve_positions(n)` (a
//!    function created by the migrations). Under a session advisory lock held for
//!    microseconds — not until commit — it assigns the transaction its id, marks the
//!    transaction as one of this schema's appends (a shared advisory lock held until it ends,
//!    keyed by the schema's sequence and the transaction id) and takes `n` consecutive
//!    sequence values. So among writers, **position order is transaction-id order**, and
//!    **the events of one append get consecutive positions**, even with concurrent appends.
//! 2. Each row stores its transaction id (`xact_id xid8 DEFAULT pg_current_xact_id()`).
//! 3. [`read_all`](fluvius_core::LogStore::read_all) first reads a horizon, then returns only rows with
//!    `xact_id` below it: the oldest transaction id among **this schema's appends** still
//!    running (their marks in `pg_locks`), or else the snapshot's `xmax`. Any append that
//!    could still commit is at or above that horizon, so — by 1 — it can only commit
//!    positions *above* every row returned. A reader never skips a late commit. (The argument
//!    is spelled out in `fluvius-sql/src/postgres/horizon.rs`. On a hot standby, which cannot
//!    see the primary's marks, the horizon is the snapshot's `xmin`, as before.)
//!
//! The trade-off: `read_all` lags behind commits by the longest append of this store still
//! running (appends are short: usually milliseconds). Transactions of other programs, other
//! schemas or other databases on the server do not hold it back. Every writer of
//! `fluvius_events` must reserve its positions with `fluvius_reserve_positions`, as the
//! store's appends do. Per-aggregate reads ([`read_stream`](fluvius_core::LogStore::read_stream) and
//! friends) see every committed event at once.
//!
//! Positions are not dense across appends: an append that fails (conflict, duplicate
//! command, lost connection) has already used its block, so the log may skip numbers. Readers
//! must treat positions as ordered, not as counters; checkpoints (`read_all(after, …)`) work
//! unchanged.
//!
//! # Durability
//! An append returns after PostgreSQL reports the commit, so with the server's defaults
//! (`synchronous_commit = on`, `fsync = on`) an appended event is on disk.
//!
//! # Outcomes
//! An append ends in one of three answers:
//! - `Ok`: it is stored (the events as stored, with their positions);
//! - [`Error::OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown): the store could not learn
//!   whether it is stored. Resend it with the same command id: a stored command is answered
//!   from its record, never applied twice;
//! - any other error: **nothing was written**.
//!
//! When the connection breaks after a write was sent (an I/O, TLS or protocol error, a lost
//! reply to a statement committed on its own or to a `COMMIT`), when the append outlives the
//! [operation timeout](PostgresOptions::operation_timeout), or when the server committed but
//! the positions could not be read back, the store learns the truth before answering: on a
//! fresh pooled connection it looks up the append's first event id at its version (the
//! unique stream key decides; group commit looks per append of the batch). Each look is
//! bounded (1 s), and so is the whole (the operation timeout, at most 5 s). Found: `Ok` with
//! the stored events. That version held by another event: a plain store error (it can never
//! be stored). Not there: `OutcomeUnknown` — the statement may still be in the server's
//! socket buffer, or held by a stalled network, and commit later; the store keeps looking
//! while that is likely (until every transaction running at its first look has ended), so a
//! late commit is still answered `Ok`. A failure before an explicit transaction's `COMMIT`
//! was sent, or one the database answered, wrote nothing and is a plain error at once.
//!
//! Every operation is bounded by [`PostgresOptions::operation_timeout`] (30 s by default,
//! waiting for a pooled connection included): a read that takes longer fails with
//! [`Error::Timeout`](fluvius_core::Error::Timeout), an append is resolved as above, and a
//! group-commit batch stuck on a stalled connection is given up so the writer goes on.
//!
//! # Layout
//! Tables `fluvius_events`, `fluvius_commands` and `fluvius_snapshots`, the sequence `fluvius_events_position_seq`
//! and the function `fluvius_reserve_positions` (see `migrations/postgres` in this crate), in
//! the schema given with [`PostgresOptions::schema`] or else the first schema of the
//! connection's `search_path`. Payloads, arguments, metadata and contexts are `json` rather
//! than `jsonb`: validated, but stored as the exact text written, so key order and the digits
//! of large numbers (beyond what a double holds) come back unchanged. One append alone is one
//! statement, committed on its own (one round trip, no `BEGIN` or `COMMIT`): an `INSERT …
//! SELECT … FROM unnest(…)` for all its events that also checks the expected version, with the
//! command row inserted by a `WITH` clause only if the events were. An append with a snapshot
//! or [transactional handlers](fluvius_core::transactional) is one transaction instead: the
//! events, then the command row, then the snapshot row (and the handlers).
//!
//! sqlx records applied migrations in `_sqlx_migrations` in the same schema. If your
//! application runs its own sqlx migrations on the same schema, the two sets share that table;
//! give the log store its own schema to keep them apart.
//!
//! # Group commit
//! On by default ([`GroupCommit`], set with [`PostgresOptions::group_commit`]): appends made
//! concurrently through one store share one transaction and one commit (one WAL flush), and a
//! conflict or a duplicate command fails only that append. A lone append is written at once,
//! in one statement, on its caller's task: while no other append of the store is queued or
//! being written, the caller writes its own (counted in [`GroupCommitStats::alone`]), and
//! appends that arrive meanwhile queue for the writers. See [`crate::group_commit`].
//!
//! A batch of several appends on different streams with different command ids (the usual
//! case: the domain lets one command at a time append to an aggregate) is written in bulk with
//! one statement whatever its size, committed on its own: the events of every append
//! (positions reserved first, in batch order) and their command records, each append's events
//! inserted only if its stream has reached the version the append expects (the stored version
//! `expected`, or none for 0), each command record only if its append was written. An append
//! whose stream had not reached that version is refused alone: a conflict naming the version
//! read just after, on the same connection. A stream already past the expected version (the
//! unique stream key) or a recorded command id (the commands table's unique key) fails the
//! statement, and the batch is then written one savepoint per append, where each failure is
//! that append's own.
//!
//! Any other batch is written in bulk with three round trips whatever its size:
//! one query reads the versions of all its streams, one which of its command ids are recorded;
//! the store decides each append in batch order (a duplicate command, or a conflict naming
//! the stream's version as read plus the earlier accepted appends of the batch); then one
//! statement, committed on its own, writes the events of every accepted append with an
//! `INSERT … SELECT … FROM unnest(…)` — reserving their positions first, in batch order, so
//! the events of one append get consecutive positions and position order stays
//! transaction-id order — and their command records with a `WITH` clause. (Under `READ
//! COMMITTED` the reads would see no more inside a transaction: each statement takes a new
//! snapshot.) A batch with snapshots is written in one transaction instead: the events, the
//! command records, then the snapshots. Another transaction (another writer of this store,
//! another instance) may record a version or a command id of the batch between the reads and
//! the inserts: the unique constraints catch it, the statement (or the transaction) is rolled
//! back, and the batch is written again one savepoint per append, where the failure is that
//! append's own.
//! A batch with [transactional handlers](fluvius_core::transactional) is always written that
//! way (the handlers run inside their append's savepoint): that transaction reserves the
//! positions of the whole batch first, and each append writes its events, then its command
//! record.
//!
//! # Batched stream reads
//! With group commit on, stream reads share queries too: a
//! [`read_stream`](fluvius_core::LogStore::read_stream) of a whole stream (the default [`StreamQuery`], what
//! loading an aggregate does) is queued for the store's reader task, which takes the first read
//! waiting plus whatever else is queued at that moment (up to 256 streams) and reads all their
//! streams with one query — the listed streams (`unnest` of two arrays, resources and aggregate
//! ids, so one prepared statement for every batch size), each read by a lateral subquery
//! through the stream key's index, as a single read would — then answers each caller with its
//! stream's events in version order. Concurrent loads then cost one query and one pooled
//! connection per batch instead of one each. Like appends, a lone read is sent at once, never
//! held back for company, on its caller's task (counted in [`ReadBatchStats::alone`]); and
//! one statement sees one snapshot of the database, so each stream comes back whole as of
//! that moment (every event committed before the query started, none of a transaction still
//! open). A failing query fails every read of its batch with the store error. Reads with a
//! range or a time bound, and every read with [`GroupCommit::off`], run their own query on the
//! calling task. [`PostgresLogStore::read_batch_stats`] counts the batches.
//!
//! # Waking other instances
//! After an append commits, the store sends `NOTIFY` on [`APPEND_CHANNEL`] (a task of the
//! store, one statement of its own, coalescing appends that commit meanwhile), which wakes the
//! dispatchers of every instance listening on the database. It is not sent from the append's
//! transaction: PostgreSQL serializes the commits of transactions that notify (a cluster-wide
//! lock held until the commit is flushed), which would make every append of every instance
//! commit one at a time. The notification is a hint; dispatchers also poll, so rows written by
//! other programs are picked up by the poll alone.
//!
//! # Connection loss
//! The pool checks a connection before handing it out and reconnects as needed: when the
//! database comes back, the store works again without being reopened. (With
//! [`PostgresOptions::ping_connections_idle_for`] only connections idle for a while are
//! checked, and a dropped connection that was used recently fails one operation instead.)
//! While it is away, operations fail with [`fluvius_core::Error::Store`] naming the database
//! (never the password) once the acquire timeout has passed; a connection lost while an
//! append was under way is resolved as [above](self#outcomes).

use std::sync::Arc;
use std::time::Duration;

use fluvius_core::{
    AggregateId, CommandRecord, Event, LogEntry, Payload, Snapshot, SnapshotQuery, StreamQuery,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::batch::{GroupCommit, GroupCommitStats, Queue, ReadBatchStats, ReadQueue};
use crate::codec;
use crate::error::{Error, Result};

use self::hints::AppendHints;

#[macro_use]
mod statements;

mod append;
mod bulk;
mod checkpoint;
mod hints;
mod horizon;
mod options;
mod reads;
mod resolve;
mod rows;

pub use checkpoint::{advance_projection, reset_projection, APPEND_CHANNEL};
pub use options::PostgresOptions;

use self::append::*;
use self::options::*;
use self::rows::*;
use self::statements::*;

type CoreResult<T> = fluvius_core::Result<T>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// A [`LogStore`](fluvius_core::LogStore) in a PostgreSQL database. Cheap to clone (the pool is shared).
///
/// See the [module docs](self) for how the global order is kept without a table lock.
#[derive(Clone)]
pub struct PostgresLogStore {
    pool: PgPool,
    target: Arc<str>,
    /// The group-commit writer's queue, when group commit is on.
    queue: Option<Queue>,
    /// The stream-read batcher's queue, when group commit is on.
    reads: Option<ReadQueue>,
    /// Sends the `NOTIFY` that wakes other instances' dispatchers after an append commits.
    hints: Option<AppendHints>,
    /// See [`PostgresOptions::operation_timeout`].
    operation_timeout: Duration,
}

impl std::fmt::Debug for PostgresLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLogStore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresLogStore {
    /// Use an existing pool (its connections' `search_path` decides the schema) and run the
    /// migrations.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        let store = Self::from_pool_without_migrations(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Use an existing pool whose database is already migrated. Group commit is on (with the
    /// defaults) when called inside a tokio runtime.
    pub fn from_pool_without_migrations(pool: PgPool) -> Self {
        let target = describe(&pool.connect_options(), None);
        Self {
            pool,
            target: target.into(),
            queue: None,
            reads: None,
            hints: None,
            operation_timeout: crate::outcome::DEFAULT_OPERATION_TIMEOUT,
        }
        .with_group_commit(GroupCommit::default())
        .with_hints()
    }

    /// Apply the embedded migrations (done on connect unless turned off).
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database, as `postgres://user@host:port/database`, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Close every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await
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

log_store_glue!(PostgresLogStore, "postgres");
