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
//!   before [`append`](LogStore::append) returns. An appended event survives a process crash
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
//! On by default ([`GroupCommit`], set with [`SqliteOptions::group_commit`]): appends made
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
//! assign — and needs no row back per event. Measured at concurrency 64 (distinct aggregates,
//! 40 000 creates, A/B pairs): 1.13–1.27x the commands/s of a query each for the versions and
//! the command ids and an events `INSERT … RETURNING`, and 1.14–1.2x again for `BEGIN` sent
//! with the first query instead of on its own. A batch with [transactional
//! handlers](fluvius_core::transactional) — which must run inside their append's own
//! savepoint — is written one savepoint per append, as is a batch whose bulk statements fail
//! (rolled back, then written again append by append).
//!
//! # Batched stream reads
//! With group commit on, stream reads share queries too: a
//! [`read_stream`](LogStore::read_stream) of a whole stream (the default [`StreamQuery`], what
//! loading an aggregate does) is queued for the store's reader task, which takes the
//! first read waiting plus whatever else is queued at that moment (up to 256 streams) and reads
//! all their streams with one query — the listed streams (one JSON array, so one prepared
//! statement for every batch size) joined against the stream index —
//! then answers each caller with its stream's events in version order. Each query is one trip
//! to sqlx's SQLite worker thread instead of one per read, which is what concurrent loads
//! spend most of their time on. Like appends, a lone read is sent at once, never held back for
//! company; and one query sees one snapshot of the database, so each stream comes back whole
//! as of that moment. A failing query fails every read of its batch with the store error.
//! Reads with a range or a time bound, and every read with [`GroupCommit::off`], run their own
//! query on the calling task. [`SqliteLogStore::read_batch_stats`] counts the batches.
//!
//! A stream read while nothing is queued and nobody is writing (any read, with group commit
//! on or off) runs on its caller's task, on the writer's connection (below), holding the write
//! turn for the query: that connection's page cache holds what the last appends wrote, where
//! a pooled connection has dropped its cache after every append and reads the pages again.
//! One command at a time with a caller-chosen id (its stream is read before the decision)
//! measured 1.15–1.6x the commands/s of reading through the reader task. Such reads are
//! counted in [`ReadBatchStats::alone`].
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
//! reader of [`read_all`](LogStore::read_all) can never see position N+1 before N.
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

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fluvius_core::{
    AggregateId, AppendRequest, AppendTx, BoxFuture, CommandRecord, Event, LogEntry, LogStore, Payload,
    Snapshot, SnapshotQuery, StreamQuery,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Executor, QueryBuilder, Row, Sqlite, SqliteConnection};
use tracing::Instrument;
use uuid::Uuid;

use crate::batch::{
    batch_error, fail_batch, finish_batch, GroupCommit, GroupCommitStats, Pending, Queue, ReadBatchStats,
    ReadQueue,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::outcome::Bounded as _;

/// Why an append of a batch failed: on its own (its savepoint rolled back), or because the
/// transaction itself is in doubt.
enum SavepointFailure {
    Append(fluvius_core::Error),
    Transaction(sqlx::Error),
}

mod bulk;
mod checkpoint;
mod reads;
mod resolve;
mod write_tx;

use write_tx::WriteTx;

pub use checkpoint::{advance_projection, reset_projection};

type CoreResult<T> = fluvius_core::Result<T>;

/// This process's turn to write, with the writer's connection.
type WriteTurn<'a> = tokio::sync::MutexGuard<'a, WriterSlot>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// At most this many events go into one `INSERT` statement (13 bound parameters each, plus 3
/// for the version check, below SQLite's default limit of 32 766). Larger appends use several
/// statements, still in one transaction.
pub const MAX_ROWS_PER_INSERT: usize = 2_000;

/// Prepared statements the writer's connection keeps (sqlx's default is 100). A group-commit
/// batch runs four statements whose text depends on its size (the stream versions, the
/// recorded commands, the command rows, the event rows), so batches of up to 64 appends
/// already need some 256; with the default, concurrent appends kept evicting and re-preparing
/// them (preparing a statement of many rows costs about as much as running it). Measured at
/// concurrency 64 on SQLite: 1.07x the commands/s, 3 MiB more peak memory.
const WRITER_STATEMENT_CACHE: usize = 512;

const EVENT_COLUMNS: &str = "position, id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload, args, metadata, command_id, command_name, recorded_at";

/// How hard a commit works to reach the disk. See the [module docs](self#durability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// Sync the write-ahead log on every commit: committed means on disk.
    #[default]
    Full,
    /// Sync only at checkpoints: a power loss may lose the latest commits.
    Normal,
}

/// How to open a [`SqliteLogStore`]; start with [`SqliteLogStore::builder`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    url: String,
    synchronous: Synchronous,
    busy_timeout: Duration,
    max_connections: u32,
    run_migrations: bool,
    create_if_missing: bool,
    group_commit: GroupCommit,
    operation_timeout: Duration,
}

impl SqliteOptions {
    /// Options for the database at `url` (`sqlite://path`, `sqlite:path` or `sqlite::memory:`),
    /// with the defaults: create if missing, `synchronous = FULL`, 5 s busy timeout, 8
    /// connections, migrations on, 30 s operation timeout.
    ///
    /// Opening refuses, with [`Error::Config`], a URL without the `sqlite:` scheme (a bare
    /// path) and one that names no file (`""`, `sqlite://`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            max_connections: 8,
            run_migrations: true,
            create_if_missing: true,
            group_commit: GroupCommit::default(),
            operation_timeout: crate::outcome::DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// How long one operation of the store (an append, a read, a command lookup) may take,
    /// waiting for the write turn included (default 30 s). A read that takes longer fails with
    /// [`Error::Timeout`](fluvius_core::Error::Timeout). An append that takes longer may still
    /// commit on sqlx's worker thread: the store waits (at most another `timeout`, at most 5 s)
    /// until it has committed or rolled back, and answers it as stored, as not written, or —
    /// if it is still running then — with
    /// [`Error::OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) (see the
    /// [module docs](self#outcomes)). A zero timeout is taken as 1 ms.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Durability of commits (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for a lock held by another connection or process.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Size of the connection pool (at least 1; an in-memory database always uses 1). Appends
    /// to a file database write on one more connection, outside the pool (see
    /// [connections](crate::sqlite#connections)).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Whether to apply the embedded migrations on open (default `true`). Without them the
    /// schema must already be in place (see [`SqliteLogStore::migrator`]).
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// How concurrent appends share transactions (default: [`GroupCommit::default`], on). See
    /// the [module docs](self#group-commit). With group commit on, concurrent whole-stream
    /// reads share queries too ([batched stream reads](self#batched-stream-reads)).
    pub fn group_commit(mut self, group_commit: GroupCommit) -> Self {
        self.group_commit = group_commit;
        self
    }

    /// Whether to create the database file if it does not exist (default `true`).
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Open the store.
    pub async fn open(self) -> Result<SqliteLogStore> {
        SqliteLogStore::open_with(self).await
    }
}

/// A [`LogStore`] in an SQLite database. Cheap to clone (the pool is shared).
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

fn is_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Refuse a URL without the `sqlite:` scheme (a bare path would silently create a file
/// relative to the working directory) and one that names no file (`""`, `sqlite://`: SQLite
/// would give every pooled connection a private temporary database of its own).
fn check_url(url: &str) -> Result<()> {
    let refuse = |message: &str| {
        Error::Config {
        target: format!("sqlite database `{url}`"),
        message: format!(
            "{message}: expected `sqlite://<path>` (or `sqlite:<path>`) for a file, or `sqlite::memory:` for an in-memory database"
        ),
        source: None,
    }
    };
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(refuse("not an SQLite URL"));
    };
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() && !is_memory_url(url) {
        return Err(refuse("the URL names no database file"));
    }
    Ok(())
}

impl SqliteLogStore {
    /// Open (creating if missing) the database at `url` with the default options.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(SqliteOptions::new(url)).await
    }

    /// Options for opening the database at `url`.
    pub fn builder(url: impl Into<String>) -> SqliteOptions {
        SqliteOptions::new(url)
    }

    /// Open with explicit options.
    #[tracing::instrument(name = "fluvius.sqlite.open", skip_all, fields(target = tracing::field::Empty), err)]
    pub async fn open_with(options: SqliteOptions) -> Result<Self> {
        check_url(&options.url)?;
        let memory = is_memory_url(&options.url);
        let connect = SqliteConnectOptions::from_str(&options.url).map_err(|e| Error::Config {
            target: format!("sqlite database `{}`", options.url),
            message: "not a valid SQLite URL".into(),
            source: Some(e),
        })?;
        let target = if memory {
            "sqlite::memory:".to_owned()
        } else {
            format!("sqlite:{}", connect.get_filename().display())
        };
        tracing::Span::current().record("target", target.as_str());
        let mut connect = connect
            .create_if_missing(options.create_if_missing)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout);
        let pool_options = if memory {
            // One connection that lives as long as the pool: the database lives in it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            connect = connect
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match options.synchronous {
                    Synchronous::Full => SqliteSynchronous::Full,
                    Synchronous::Normal => SqliteSynchronous::Normal,
                });
            SqlitePoolOptions::new().max_connections(options.max_connections)
        };
        // No ping before handing out a connection: an SQLite connection is a handle in this
        // process, not a socket that can go stale, and the ping is a round trip to its worker
        // thread on every acquire (a broken connection still fails its statement, and the
        // pool drops it when it comes back).
        let pool_options = pool_options.test_before_acquire(false);
        let writer = WriterSlot {
            options: (!memory).then(|| connect.clone().statement_cache_capacity(WRITER_STATEMENT_CACHE)),
            ..WriterSlot::default()
        };
        let pool = pool_options
            .connect_with(connect)
            .await
            .map_err(|source| Error::Connect {
                target: target.clone(),
                source,
            })?;
        let mut store = Self {
            pool,
            target: target.into(),
            queue: None,
            reads: None,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            operation_timeout: options.operation_timeout,
        };
        if options.run_migrations {
            store.migrate().await?;
        }
        if options.group_commit.is_on() {
            // Taken before the queues are set: the tasks must not keep their own queues open.
            let writer = store.clone();
            let reader = store.clone();
            store.reads = Some(ReadQueue::spawn(
                "sqlite",
                reads::READERS,
                reads::MAX_READ_BATCH,
                move |batch| {
                    let reader = reader.clone();
                    let span = tracing::debug_span!("fluvius.sqlite.read_batch", streams = batch.len());
                    async move { reader.read_batch(batch).await }.instrument(span)
                },
            ));
            // The gate is the write turn: a lone append written on its caller's task holds it,
            // and the writer waits for it with its batch's first append (see `append_impl`).
            let gate = store.writer.clone();
            store.queue = Some(Queue::spawn(
                options.group_commit,
                "sqlite",
                1,
                gate,
                move |batch, turn| {
                    let writer = writer.clone();
                    let span = tracing::debug_span!("fluvius.sqlite.group_commit", appends = batch.len());
                    async move { writer.write_batch(batch, turn).await }.instrument(span)
                },
            ));
        }
        Ok(store)
    }

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

    fn query_error(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> fluvius_core::Error + '_ {
        move |source| {
            Error::Query {
                target: self.target.to_string(),
                operation,
                source,
            }
            .into()
        }
    }

    fn data_error(&self, message: String) -> fluvius_core::Error {
        Error::Data {
            target: self.target.to_string(),
            message,
        }
        .into()
    }

    async fn current_version<'e, E>(
        &self,
        executor: E,
        resource: &str,
        aggregate_id: AggregateId,
    ) -> CoreResult<u64>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(aggregate_version), 0) FROM fluvius_events \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2",
        )
        .bind(resource)
        .bind(aggregate_id.to_string())
        .fetch_one(executor)
        .await
        .map_err(self.query_error("read stream version"))?;
        codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))
    }

    fn conflict(request: &AppendRequest, actual: u64) -> fluvius_core::Error {
        fluvius_core::Error::Conflict {
            resource: request.resource.to_string(),
            aggregate_id: request.aggregate_id,
            expected: request.expected_version,
            actual,
        }
    }

    /// The conflict of an append whose events `INSERT` failed its version check, naming the
    /// version the stream is at (read in the append's transaction `tx`).
    async fn version_conflict(
        &self,
        tx: &mut SqliteConnection,
        request: &AppendRequest,
    ) -> fluvius_core::Error {
        match self
            .current_version(&mut *tx, &request.resource, request.aggregate_id)
            .await
        {
            Ok(actual) => Self::conflict(request, actual),
            Err(e) => e,
        }
    }

    /// An append with no events writes nothing, but still reports a known command id and a
    /// wrong expected version, like every other append.
    async fn check_empty_append(&self, request: &AppendRequest) -> CoreResult<()> {
        if let Some(command) = &request.command {
            if self.get_command_impl(command.id).await?.is_some() {
                return Err(fluvius_core::Error::DuplicateCommand {
                    command_id: command.id,
                });
            }
        }
        let actual = self
            .current_version(&self.pool, &request.resource, request.aggregate_id)
            .await?;
        if actual != request.expected_version {
            return Err(Self::conflict(request, actual));
        }
        Ok(())
    }

    async fn append_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        let probe = crate::outcome::Probe::of(&request);
        let written = self.bounded("append", self.write_impl(request)).await;
        // A failure that may have come with (or before) a commit: learn the truth first.
        match (written, probe) {
            (Err(e), Some(probe)) if crate::outcome::unclear(&e) => Box::pin(self.resolve(&probe, e)).await,
            (written, _) => written,
        }
    }

    /// Write an append: on the caller's task or through the group-commit writer.
    async fn write_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        request.validate()?;
        if request.events.is_empty() {
            self.check_empty_append(&request).await?;
            return Ok(Vec::new());
        }
        if let Some(queue) = &self.queue {
            // Nothing queued and nobody writing: write it here. Through the writer it would be
            // a batch of one, plus a hand-off to the writer task and back. (The write turn is
            // fair: it is not free while the writer waits for it.)
            if queue.is_idle() {
                if let Ok(mut turn) = self.writer.try_lock() {
                    queue.wrote_alone();
                    return self.append_alone(&mut turn, request).await;
                }
            }
            return queue.submit(request).await;
        }
        // Take the write lock up front: no read-then-upgrade failures, and the version check
        // cannot go stale before the insert.
        let mut turn = self.write_turn().await;
        self.append_alone(&mut turn, request).await
    }

    /// Write one append in a transaction of its own, holding the write turn.
    async fn append_alone(&self, slot: &mut WriterSlot, request: AppendRequest) -> CoreResult<Vec<Event>> {
        let mut tx = self
            .begin_write(slot)
            .await
            .map_err(self.query_error("begin append"))?;
        let positions = match self.write_append(&mut tx, &request).await {
            Ok(positions) => positions,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        tx.commit().await.map_err(self.query_error("commit append"))?;
        Ok(codec::stored(request, positions))
    }

    /// Wait for this process's turn to write (see the `writer` field).
    async fn write_turn(&self) -> WriteTurn<'_> {
        self.writer.lock().await
    }

    /// An append's write transaction on the writer's connection, opening it if need be (see
    /// [`WriterSlot`]), begun by its first query (see [`WriteTx`]); an in-memory database's on
    /// its pool's connection, begun at once.
    async fn begin_write<'t>(&self, slot: &'t mut WriterSlot) -> sqlx::Result<WriteTx<'t>> {
        let WriterSlot {
            options,
            conn,
            suspect,
        } = slot;
        let Some(options) = options else {
            return Ok(WriteTx::Pool(self.pool.begin_with("BEGIN IMMEDIATE").await?));
        };
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        if std::mem::take(suspect) {
            *conn = None;
        }
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(options.connect().await?),
        };
        Ok(WriteTx::writer(conn, suspect))
    }

    /// Write the batch of the group-commit writer in one transaction, each caller answered
    /// after the commit: in bulk when it can (several appends, none with transactional
    /// handlers), else one savepoint per append (when there are several). Returns whether it
    /// wrote the batch in bulk.
    async fn write_batch(
        &self,
        batch: Vec<Pending>,
        mut turn: tokio::sync::OwnedMutexGuard<WriterSlot>,
    ) -> bool {
        // Holding the write turn: an append whose caller stopped waiting (it timed out and is
        // resolving, or gave up) is not written any more, so the caller's look for it, which
        // waits for this turn, can trust an absence.
        let batch: Vec<Pending> = batch.into_iter().filter(|p| !p.abandoned()).collect();
        if batch.is_empty() {
            return false;
        }
        let n = batch.len();
        let mut tx = match self.begin_write(&mut turn).await {
            Ok(tx) => tx,
            Err(e) => {
                fail_batch(batch, &self.target, "begin append", &e);
                return false;
            }
        };
        if n > 1 && batch.iter().all(|p| p.request.transactional.is_none()) {
            let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
            match self.write_bulk(&mut tx, &requests).await {
                Ok(outcomes) => {
                    let outcomes = batch.into_iter().zip(outcomes).collect();
                    finish_batch(tx, outcomes, &self.target).await;
                    return true;
                }
                // Its query commits too: if that may have happened (the worker died), each
                // caller learns its append's truth instead of a rewrite turning it into a
                // conflict.
                Err(e) if crate::outcome::unclear(&e) => {
                    for p in batch {
                        p.answer(Err(crate::outcome::in_doubt(e.to_string())));
                    }
                    return true;
                }
                Err(e) => {
                    // Nothing of the bulk statements may stay: start over, append by append
                    // (still holding the write turn), where each failure is an append's own.
                    tracing::debug!(error = %e, appends = n, "bulk write failed, writing the batch append by append");
                    let _ = tx.rollback().await;
                    tx = match self.begin_write(&mut turn).await {
                        Ok(tx) => tx,
                        Err(e) => {
                            fail_batch(batch, &self.target, "begin append", &e);
                            return false;
                        }
                    };
                }
            }
        }
        let mut outcomes = Vec::with_capacity(n);
        for pending in batch {
            let result = if n == 1 {
                self.write_append(&mut tx, &pending.request)
                    .await
                    .map_err(SavepointFailure::Append)
            } else {
                self.write_in_savepoint(&mut tx, &pending.request).await
            };
            match result {
                Ok(positions) => outcomes.push((pending, Ok(positions))),
                Err(SavepointFailure::Append(e)) => outcomes.push((pending, Err(e))),
                // A failed savepoint statement leaves the transaction in doubt: give up on
                // the whole batch (nothing is committed).
                Err(SavepointFailure::Transaction(e)) => {
                    let _ = tx.rollback().await;
                    pending.answer(Err(batch_error(&self.target, "append (savepoint)", &e, n)));
                    for (p, outcome) in outcomes {
                        let own =
                            outcome.and_then(|_| Err(batch_error(&self.target, "append (savepoint)", &e, n)));
                        p.answer(own);
                    }
                    return false;
                }
            }
        }
        finish_batch(tx, outcomes, &self.target).await;
        false
    }

    /// One append of a batch, inside its own savepoint: rolled back alone if it fails.
    async fn write_in_savepoint(
        &self,
        tx: &mut WriteTx<'_>,
        request: &AppendRequest,
    ) -> Result<Vec<u64>, SavepointFailure> {
        tx.begin().await.map_err(SavepointFailure::Transaction)?;
        tx.conn()
            .execute("SAVEPOINT fluvius_append")
            .await
            .map_err(SavepointFailure::Transaction)?;
        match self.write_append(tx, request).await {
            Ok(positions) => {
                tx.conn()
                    .execute("RELEASE fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Ok(positions)
            }
            Err(e) => {
                tx.conn()
                    .execute("ROLLBACK TO fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                tx.conn()
                    .execute("RELEASE fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Err(SavepointFailure::Append(e))
            }
        }
    }

    /// Write one append in the open write transaction `tx`: its command row, then its events
    /// (one query for both), the first `INSERT` written only if the stream is at the expected
    /// version (no rows back: a conflict, and only then is the stream's version read). Returns
    /// the position of each event written, in event order. On error the caller rolls back (the
    /// transaction, or the append's savepoint).
    async fn write_append(&self, tx: &mut WriteTx<'_>, request: &AppendRequest) -> CoreResult<Vec<u64>> {
        let prepared = self.prepare(request)?;
        let expected =
            codec::to_i64(request.expected_version, "expected version").map_err(|m| self.data_error(m))?;
        let mut positions: Vec<(i64, i64)> = Vec::with_capacity(prepared.rows.len());
        for (index, chunk) in prepared.rows.chunks(MAX_ROWS_PER_INSERT).enumerate() {
            // The transaction's first query begins it (see `WriteTx`).
            let mut query = QueryBuilder::<Sqlite>::new(tx.begin_prefix());
            // The first statement records the command too (before the events: a duplicate
            // command is what gets reported, whatever the version), sent with the events
            // `INSERT` as one query: one trip to the worker thread for both. A duplicate stops
            // the query before the events.
            let command = prepared.command.as_ref().filter(|_| index == 0);
            if let Some((record, row)) = command {
                push_insert_commands(&mut query, [(*record, row)]);
                query.push("; ");
            }
            let rows = chunk
                .iter()
                .map(|row| (row, request.resource.as_str(), prepared.aggregate_id.as_str()));
            // The first statement checks the version; the later ones continue the same append
            // in the same transaction, with the write lock held since.
            let at = (index == 0).then(|| StreamAt {
                resource: request.resource.as_str(),
                aggregate_id: prepared.aggregate_id.as_str(),
                version: expected,
            });
            push_insert_events(&mut query, rows, at);
            let returned = match query.build().fetch_all(tx.conn()).await {
                Ok(returned) if returned.is_empty() => {
                    // The version check failed (the `VALUES` are never empty): read where the
                    // stream is, for the conflict.
                    return Err(self.version_conflict(tx.conn(), request).await);
                }
                Ok(returned) => returned,
                Err(err) if is_duplicate_command(&err) => {
                    return Err(match command {
                        Some((record, _)) => fluvius_core::Error::DuplicateCommand {
                            command_id: record.id,
                        },
                        None => self.query_error("append (insert events)")(err),
                    });
                }
                // Cannot happen while we hold the write lock and the version check passed,
                // but if it does, it is a conflict.
                Err(err) if codec::unique_violation(&err).is_some() => {
                    return Err(if index == 0 {
                        self.version_conflict(tx.conn(), request).await
                    } else {
                        Self::conflict(request, request.expected_version)
                    });
                }
                Err(err) => return Err(self.query_error("append (record command, insert events)")(err)),
            };
            for row in returned {
                let position: i64 = row
                    .try_get(0)
                    .map_err(self.query_error("append (read positions)"))?;
                let version: i64 = row
                    .try_get(1)
                    .map_err(self.query_error("append (read positions)"))?;
                positions.push((version, position));
            }
        }
        if let Some(snapshot) = &request.snapshot {
            self.insert_snapshot(tx.conn(), snapshot).await?;
        }
        let positions = self.checked_positions(request, positions)?;
        request
            .run_transactional(
                positions.iter().copied(),
                &mut AppendTx::new("sqlite", Some(tx.conn())),
            )
            .await?;
        Ok(positions)
    }

    /// An append's rows, converted for binding (a value that does not fit the schema fails
    /// this append alone).
    fn prepare<'a>(&self, request: &'a AppendRequest) -> CoreResult<Prepared<'a>> {
        let rows = request
            .events
            .iter()
            .map(EventRow::new)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| self.data_error(m))?;
        let command = request
            .command
            .as_ref()
            .map(|record| CommandRow::new(record).map(|row| (record, row)))
            .transpose()
            .map_err(|m| self.data_error(m))?;
        Ok(Prepared {
            request,
            rows,
            command,
            aggregate_id: request.aggregate_id.to_string(),
        })
    }

    /// Check the positions an append got back, inside its transaction (so a mismatch rolls
    /// the append back instead of failing after the commit), in event order.
    fn checked_positions(
        &self,
        request: &AppendRequest,
        mut positions: Vec<(i64, i64)>,
    ) -> CoreResult<Vec<u64>> {
        positions.sort_unstable();
        if positions.len() != request.events.len() {
            return Err(self.data_error(format!(
                "append wrote {} events but {} positions came back",
                request.events.len(),
                positions.len()
            )));
        }
        positions
            .into_iter()
            .map(|(_, position)| codec::to_u64(position, "position").map_err(|m| self.data_error(m)))
            .collect()
    }

    /// Write one snapshot row (inside the append's transaction).
    async fn insert_snapshot(&self, conn: &mut SqliteConnection, snapshot: &Snapshot) -> CoreResult<()> {
        let version = codec::to_i64(snapshot.version, "snapshot version").map_err(|m| self.data_error(m))?;
        sqlx::query(
            "INSERT INTO fluvius_snapshots (tenant, resource, aggregate_id, aggregate_version, state_version, \
             state, recorded_at) VALUES ('', ?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(snapshot.resource.as_str())
        .bind(snapshot.aggregate_id.to_string())
        .bind(version)
        .bind(i64::from(snapshot.state_version))
        .bind(snapshot.state.as_str())
        .bind(snapshot.timestamp.timestamp_micros())
        .execute(conn)
        .await
        .map_err(self.query_error("append (write snapshot)"))?;
        Ok(())
    }

    async fn load_snapshot_impl(
        &self,
        resource: &str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> CoreResult<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT aggregate_version, state_version, state, recorded_at FROM fluvius_snapshots \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2 \
             AND aggregate_version <= ?3 AND recorded_at <= ?4 \
             ORDER BY aggregate_version DESC LIMIT 1",
        )
        .bind(resource)
        .bind(aggregate_id.to_string())
        .bind(query.max_version.map_or(i64::MAX, codec::clamp_i64))
        .bind(query.until.map_or(i64::MAX, |t| t.timestamp_micros()))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("load snapshot"))?;
        row.map(|row| -> Result<Snapshot, String> {
            let state_version: i64 = column(&row, 1)?;
            Ok(Snapshot {
                resource: resource.to_owned(),
                aggregate_id,
                version: codec::to_u64(column(&row, 0)?, "snapshot version")?,
                state_version: u32::try_from(state_version)
                    .map_err(|_| format!("stored state version {state_version} is out of range"))?,
                state: Payload::from_json_unchecked(column::<String>(&row, 2)?),
                timestamp: time_column(&row, 3)?,
            })
        })
        .transpose()
        .map_err(|m| self.data_error(m))
    }

    async fn read_stream_impl(
        &self,
        resource: &str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> CoreResult<Vec<Event>> {
        // Nobody writing and nothing queued: read on the writer's connection. Its page cache
        // holds what the last appends wrote, while a pooled connection drops its whole cache
        // after every write of another connection and reads the pages again.
        let idle = self.queue.as_ref().is_none_or(Queue::is_idle)
            && self.reads.as_ref().is_none_or(ReadQueue::is_idle);
        // Without a writer's connection to read on (none opened yet, or suspect) the turn is
        // given back at once, and the read goes like any other.
        let mut turn = idle
            .then(|| self.writer.try_lock().ok())
            .flatten()
            .filter(|turn| turn.can_read());
        let writer = turn.as_mut().and_then(|turn| turn.conn.as_mut());
        if let Some(reads) = &self.reads {
            if writer.is_some() {
                reads.read_alone();
            } else if query == StreamQuery::default() {
                return reads.submit(resource, aggregate_id).await;
            }
        }
        let from = query.from_version.map_or(0, codec::clamp_i64);
        let to = query.to_version.map_or(i64::MAX, codec::clamp_i64);
        let until = query.until.map_or(i64::MAX, |t| t.timestamp_micros());
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2 \
             AND aggregate_version >= ?3 AND aggregate_version <= ?4 AND recorded_at <= ?5 \
             ORDER BY aggregate_version"
        );
        let read = sqlx::query(&sql)
            .bind(resource)
            .bind(aggregate_id.to_string())
            .bind(from)
            .bind(to)
            .bind(until);
        let rows = match writer {
            Some(conn) => read.fetch_all(conn).await,
            None => read.fetch_all(&self.pool).await,
        };
        if rows
            .as_ref()
            .is_err_and(|e| !matches!(e, sqlx::Error::Database(_)))
        {
            // Read on the writer's connection (the turn is only kept for that), as after a
            // failed `BEGIN`: the next append opens a new one.
            if let Some(turn) = turn.as_mut() {
                turn.suspect = true;
            }
        }
        drop(turn);
        let rows = rows.map_err(self.query_error("read stream"))?;
        codec::stream_events(&rows, decode_entry, |m| self.data_error(m))
    }

    async fn read_all_impl(&self, after: u64, limit: usize) -> CoreResult<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events WHERE position > ?1 ORDER BY position LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(codec::clamp_i64(after))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error("read all"))?;
        rows.iter()
            .map(decode_entry)
            .collect::<Result<_, _>>()
            .map_err(|m| self.data_error(m))
    }

    async fn get_command_impl(&self, command_id: Uuid) -> CoreResult<Option<CommandRecord>> {
        let row = sqlx::query(
            "SELECT id, namespace, resource, aggregate_id, action, args, context, version_before, \
             version_after, recorded_at FROM fluvius_commands WHERE id = ?1",
        )
        .bind(command_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("get command"))?;
        row.as_ref()
            .map(decode_command)
            .transpose()
            .map_err(|m| self.data_error(m))
    }
}

/// One event, converted for binding.
struct EventRow<'a> {
    event: &'a Event,
    version: i64,
    metadata: String,
    recorded_at: i64,
}

impl<'a> EventRow<'a> {
    fn new(event: &'a Event) -> Result<Self, String> {
        Ok(Self {
            event,
            version: codec::to_i64(event.aggregate_version, "aggregate version")?,
            metadata: codec::encode_metadata(&event.metadata)?,
            recorded_at: event.timestamp.timestamp_micros(),
        })
    }
}

/// The parts of a command record that need converting before binding.
struct CommandRow {
    context: String,
    version_before: i64,
    version_after: i64,
    recorded_at: i64,
}

impl CommandRow {
    fn new(record: &CommandRecord) -> Result<Self, String> {
        Ok(Self {
            context: codec::encode_context(&record.context)?,
            version_before: codec::to_i64(record.version_before, "version")?,
            version_after: codec::to_i64(record.version_after, "version")?,
            recorded_at: record.timestamp.timestamp_micros(),
        })
    }
}

/// One append, converted for binding.
struct Prepared<'a> {
    request: &'a AppendRequest,
    rows: Vec<EventRow<'a>>,
    command: Option<(&'a CommandRecord, CommandRow)>,
    aggregate_id: String,
}

/// Push a multi-row `INSERT` of command records onto `query` (at most
/// [`MAX_ROWS_PER_INSERT`] of them: 10 parameters each).
fn push_insert_commands<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    commands: impl IntoIterator<Item = (&'a CommandRecord, &'a CommandRow)>,
) {
    query.push(
        "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context, \
         version_before, version_after, recorded_at) ",
    );
    query.push_values(commands, |mut b, (record, row)| {
        b.push_bind(record.id.to_string())
            .push_bind(record.namespace.as_str())
            .push_bind(record.resource.as_str())
            .push_bind(record.aggregate_id.to_string())
            .push_bind(record.action.as_str())
            .push_bind(record.args.as_str())
            .push_bind(row.context.as_str())
            .push_bind(row.version_before)
            .push_bind(row.version_after)
            .push_bind(row.recorded_at);
    });
}

/// Whether `err` is the refusal of a command id recorded already (the primary key of
/// `fluvius_commands`; SQLite names the table and column in the message).
fn is_duplicate_command(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.message().contains("fluvius_commands.id"))
}

/// The columns of `fluvius_events` an `INSERT` binds for each event (all but the position).
const EVENT_INSERT_COLUMNS: &str = "id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload, args, metadata, command_id, command_name, recorded_at";

/// A stream at a version: the condition of a checked events `INSERT`.
struct StreamAt<'a> {
    resource: &'a str,
    aggregate_id: &'a str,
    version: i64,
}

/// Push a multi-row `INSERT` of events onto `query`, each with its stream's resource and
/// aggregate id (at most [`MAX_ROWS_PER_INSERT`] of them), returning `position,
/// aggregate_version, resource, aggregate_id` of each row, in no particular order. With `at`,
/// the rows are written only if that stream is at that version (`INSERT … SELECT * FROM
/// (VALUES …) WHERE <its version> = ?`): else nothing is written and no row comes back.
fn push_insert_events<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    rows: impl IntoIterator<Item = (&'a EventRow<'a>, &'a str, &'a str)>,
    at: Option<StreamAt<'a>>,
) {
    query
        .push("INSERT INTO fluvius_events (")
        .push(EVENT_INSERT_COLUMNS)
        .push(") ");
    if at.is_some() {
        query.push("SELECT * FROM (");
    }
    query.push_values(rows, |mut b, (row, resource, aggregate_id)| {
        bind_event(&mut b, row, resource, aggregate_id);
    });
    if let Some(at) = at {
        // An uncorrelated subquery: SQLite evaluates it once, before the first row.
        query
            .push(
                ") WHERE coalesce((SELECT max(aggregate_version) FROM fluvius_events \
                 WHERE tenant = '' AND resource = ",
            )
            .push_bind(at.resource)
            .push(" AND aggregate_id = ")
            .push_bind(at.aggregate_id)
            .push("), 0) = ")
            .push_bind(at.version);
    }
    query.push(" RETURNING position, aggregate_version, resource, aggregate_id");
}

/// The columns an event row binds, in the order of [`EVENT_INSERT_COLUMNS`].
fn bind_event<'a>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, Sqlite, &'static str>,
    row: &'a EventRow<'a>,
    resource: &'a str,
    aggregate_id: &'a str,
) {
    b.push_bind(row.event.id.to_string())
        .push_bind(row.event.namespace.as_str())
        .push_bind(resource)
        .push_bind(aggregate_id)
        .push_bind(row.version)
        .push_bind(row.event.key.as_str())
        .push_bind(i64::from(row.event.schema_version))
        .push_bind(row.event.payload.as_str())
        .push_bind(row.event.args.as_str())
        .push_bind(row.metadata.as_str())
        .push_bind(row.event.command_id.to_string())
        .push_bind(row.event.command_name.as_str())
        .push_bind(row.recorded_at);
}

fn column<'r, T>(row: &'r SqliteRow, index: usize) -> Result<T, String>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(index).map_err(|e| format!("column {index}: {e}"))
}

fn uuid_column(row: &SqliteRow, index: usize) -> Result<Uuid, String> {
    let text: &str = column(row, index)?;
    Uuid::parse_str(text).map_err(|e| format!("column {index} is not a UUID: {e}"))
}

fn time_column(row: &SqliteRow, index: usize) -> Result<DateTime<Utc>, String> {
    let micros: i64 = column(row, index)?;
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("column {index}: timestamp {micros} out of range"))
}

fn decode_event(row: &SqliteRow) -> Result<Event, String> {
    let schema_version: i64 = column(row, 7)?;
    Ok(Event {
        position: codec::to_u64(column(row, 0)?, "position")?,
        id: uuid_column(row, 1)?,
        namespace: column::<&str>(row, 2)?.into(),
        resource: column::<&str>(row, 3)?.into(),
        aggregate_id: AggregateId::from_uuid(uuid_column(row, 4)?),
        aggregate_version: codec::to_u64(column(row, 5)?, "aggregate version")?,
        key: column::<&str>(row, 6)?.into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| format!("stored schema version {schema_version} is out of range"))?,
        payload: codec::checked_json(column::<String>(row, 8)?, "payload")?,
        args: codec::checked_json(column::<String>(row, 9)?, "args")?,
        metadata: codec::decode_metadata(column(row, 10)?)?,
        command_id: uuid_column(row, 11)?,
        command_name: column::<&str>(row, 12)?.into(),
        timestamp: time_column(row, 13)?,
    })
}

/// A row of [`EVENT_COLUMNS`] as a log entry (see [`codec::log_entry`]).
fn decode_entry(row: &SqliteRow) -> Result<LogEntry, String> {
    codec::log_entry(
        decode_event(row),
        || column(row, 0),
        || uuid_column(row, 1).ok(),
        || column(row, 6).ok(),
    )
}

/// The stream a row of [`EVENT_COLUMNS`] belongs to, if that much of it reads.
fn stream_of(row: &SqliteRow) -> Option<(String, AggregateId)> {
    Some((
        column(row, 3).ok()?,
        AggregateId::from_uuid(uuid_column(row, 4).ok()?),
    ))
}

fn decode_command(row: &SqliteRow) -> Result<CommandRecord, String> {
    Ok(CommandRecord {
        id: uuid_column(row, 0)?,
        namespace: column::<&str>(row, 1)?.into(),
        resource: column::<&str>(row, 2)?.into(),
        aggregate_id: AggregateId::from_uuid(uuid_column(row, 3)?),
        action: column::<&str>(row, 4)?.into(),
        args: Payload::from_json_unchecked(column::<String>(row, 5)?),
        context: codec::decode_context(column(row, 6)?)?,
        version_before: codec::to_u64(column(row, 7)?, "version")?,
        version_after: codec::to_u64(column(row, 8)?, "version")?,
        timestamp: time_column(row, 9)?,
    })
}

impl crate::outcome::Bounded for SqliteLogStore {
    fn target(&self) -> &str {
        &self.target
    }

    fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }
}

impl LogStore for SqliteLogStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, CoreResult<Vec<Event>>> {
        let span = tracing::debug_span!(
            "fluvius.sqlite.append",
            resource = %request.resource,
            aggregate_id = %request.aggregate_id,
            expected_version = request.expected_version,
            events = request.events.len(),
        );
        Box::pin(self.append_impl(request).instrument(span))
    }

    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, CoreResult<Vec<Event>>> {
        let span = tracing::debug_span!("fluvius.sqlite.read_stream", resource, aggregate_id = %aggregate_id);
        Box::pin(
            self.bounded(
                "read stream",
                self.read_stream_impl(resource, aggregate_id, query),
            )
            .instrument(span),
        )
    }

    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, CoreResult<Vec<LogEntry>>> {
        let span = tracing::debug_span!("fluvius.sqlite.read_all", after, limit);
        Box::pin(
            self.bounded("read all", self.read_all_impl(after, limit))
                .instrument(span),
        )
    }

    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, CoreResult<Option<CommandRecord>>> {
        let span = tracing::debug_span!("fluvius.sqlite.get_command", command_id = %command_id);
        Box::pin(
            self.bounded("get command", self.get_command_impl(command_id))
                .instrument(span),
        )
    }

    fn load_snapshot<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> BoxFuture<'a, CoreResult<Option<Snapshot>>> {
        let span =
            tracing::debug_span!("fluvius.sqlite.load_snapshot", resource, aggregate_id = %aggregate_id);
        Box::pin(
            self.bounded(
                "load snapshot",
                self.load_snapshot_impl(resource, aggregate_id, query),
            )
            .instrument(span),
        )
    }

    fn checkpoints(&self) -> Option<&dyn fluvius_core::CheckpointStore> {
        Some(self)
    }

    fn runs_transactional_handlers(&self) -> bool {
        true
    }

    fn head_position(&self) -> BoxFuture<'_, CoreResult<u64>> {
        Box::pin(self.bounded("read head position", self.head_position_impl()))
    }
}
