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
//! 3. [`read_all`](LogStore::read_all) first reads a horizon, then returns only rows with
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
//! store's appends do. Per-aggregate reads ([`read_stream`](LogStore::read_stream) and
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
//! events, then the command row, then the snapshot row (and the handlers). Measured one
//! command at a time: 1.5x the commands/s of the transaction (four round trips).
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
//! that append's own. This one statement measured 1.28–1.31x the commands/s at concurrency 64
//! of the three round trips below with 0.25–1.25 ms added each way between the store and the
//! server, and within noise on this machine's loopback.
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
//! [`read_stream`](LogStore::read_stream) of a whole stream (the default [`StreamQuery`], what
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

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fluvius_core::{
    AggregateId, AppendRequest, AppendTx, BoxFuture, CommandRecord, Event, LogEntry, LogStore, Payload,
    Snapshot, SnapshotQuery, StreamQuery,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, Row};
use tracing::Instrument;
use uuid::Uuid;

use self::hints::AppendHints;
use crate::batch::{
    batch_error, batch_refused, finish_batch, refuse_batch, GroupCommit, GroupCommitStats, Pending, Queue,
    ReadBatchStats, ReadQueue,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::outcome::Bounded as _;

/// Why one append failed inside its transaction.
enum AppendFailure {
    /// The stream was not at the expected version: a conflict, or a duplicate command whose
    /// events are already there. Told apart by reading outside the transaction.
    ConflictOrDuplicate,
    /// Anything else.
    Error(fluvius_core::Error),
}

impl From<fluvius_core::Error> for AppendFailure {
    fn from(e: fluvius_core::Error) -> Self {
        AppendFailure::Error(e)
    }
}

/// Why an append of a batch failed: on its own (its savepoint rolled back), or because the
/// transaction itself is in doubt.
enum SavepointFailure {
    Append(AppendFailure),
    Transaction(sqlx::Error),
}

/// The start of the `WITH` clause that inserts command records from `unnest(…)` rows aliased
/// `c`, shared by [`INSERT_EVENTS_AND_COMMAND`] and the bulk statements (which add their own
/// `FROM` and `WHERE`).
macro_rules! insert_command_rows {
    () => {
        "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context,
        version_before, version_after, recorded_at)
    SELECT c.id, c.namespace, c.resource, c.aggregate_id, c.action, c.args::json, c.context::json,
        c.version_before, c.version_after, c.recorded_at"
    };
}

mod bulk;
mod checkpoint;
mod hints;
mod horizon;
mod reads;
mod resolve;

pub use checkpoint::{advance_projection, reset_projection, APPEND_CHANNEL};

type CoreResult<T> = fluvius_core::Result<T>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const EVENTS_STREAM_KEY: &str = "fluvius_events_stream_version_key";
const COMMANDS_KEY: &str = "fluvius_commands_pkey";

const EVENT_COLUMNS: &str = "position, id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload::text, args::text, metadata::text, command_id, command_name, recorded_at";

/// The statement that appends all events of one request; see [`INSERT_EVENTS`],
/// [`INSERT_EVENTS_AT`] and [`INSERT_EVENTS_AND_COMMAND`].
macro_rules! insert_events {
    ($with:literal, $first:literal, $from:literal) => {
        insert_events!($with, $first, $from, "")
    };
    ($with:literal, $first:literal, $from:literal, $end:expr) => {
        concat!(
            $with,
            "INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key,
    schema_version, payload, args, metadata, command_id, command_name, recorded_at)
SELECT ",
            $first,
            " + e.ord - 1, e.id, e.namespace, $1, $2, e.aggregate_version, e.key,
    e.schema_version, e.payload::json, e.args::json, e.metadata::json, e.command_id, e.command_name,
    e.recorded_at
FROM ",
            $from,
            "
    unnest($5::uuid[], $6::text[], $7::bigint[], $8::text[], $9::integer[], $10::text[], $11::text[],
        $12::text[], $13::uuid[], $14::text[], $15::timestamptz[])
    WITH ORDINALITY AS e(id, namespace, aggregate_version, key, schema_version, payload, args, metadata,
        command_id, command_name, recorded_at, ord)
WHERE (SELECT coalesce(max(v.aggregate_version), 0) FROM fluvius_events v
       WHERE v.tenant = '' AND v.resource = $1 AND v.aggregate_id = $2) = $3
RETURNING position, aggregate_version",
            $end
        )
    };
}

/// Appends all events of one request in one statement, reserving `$4` positions. The version
/// check is an uncorrelated subquery (a one-time filter): when the stream is not at `$3`,
/// nothing is inserted and no positions are reserved.
const INSERT_EVENTS: &str = insert_events!(
    "WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($4) AS first)\n",
    "reserved.first",
    "reserved,"
);

/// [`INSERT_EVENTS`] and the command record (`$16`–`$25`: the columns of [`INSERT_COMMAND`] as
/// arrays of one element, or of none when the append has no command record) in one
/// statement, committed on its own: a lone append with no snapshot and no transactional
/// handlers, one round trip instead of four (`BEGIN`, the two inserts, `COMMIT`). The command
/// is recorded only if the events were written (the version check passed); a recorded command
/// id fails the whole statement with the commands table's unique violation.
const INSERT_EVENTS_AND_COMMAND: &str = insert_events!(
    "WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($4) AS first),\nwritten AS (\n",
    "reserved.first",
    "reserved,",
    concat!(
        "
),
recorded AS (
    ",
        insert_command_rows!(),
        "
    FROM unnest($16::uuid[], $17::text[], $18::text[], $19::uuid[], $20::text[], $21::text[], $22::text[],
        $23::bigint[], $24::bigint[], $25::timestamptz[])
        AS c(id, namespace, resource, aggregate_id, action, args, context, version_before, version_after,
            recorded_at)
    WHERE EXISTS (SELECT 1 FROM written)
)
SELECT position, aggregate_version FROM written"
    )
);

/// The same, at positions from `$4` on, reserved beforehand for a whole group commit (only the
/// first statement that writes in a transaction may reserve positions).
const INSERT_EVENTS_AT: &str = insert_events!("", "$4::bigint", "");

const INSERT_SNAPSHOT: &str = "\
INSERT INTO fluvius_snapshots (tenant, resource, aggregate_id, aggregate_version, state_version, state,
    recorded_at)
VALUES ('', $1, $2, $3, $4, $5::json, $6)";

const INSERT_COMMAND: &str = "\
INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context, version_before,
    version_after, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8, $9, $10)";

/// One of the [`insert_events!`] statements with an append's parameters `$1`–`$15` bound: its
/// stream, expected version, `fourth` (how many positions to reserve, or the first one
/// reserved beforehand) and its events column by column.
fn bind_append<'q, T>(
    sql: &'q str,
    request: &'q AppendRequest,
    expected: i64,
    fourth: T,
    columns: &'q Columns<'q>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>
where
    T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    sqlx::query(sql)
        .bind(request.resource.as_str())
        .bind(request.aggregate_id.as_uuid())
        .bind(expected)
        .bind(fourth)
        .bind(&columns.ids)
        .bind(&columns.namespaces)
        .bind(&columns.versions)
        .bind(&columns.keys)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.args)
        .bind(&columns.metadata)
        .bind(&columns.command_ids)
        .bind(&columns.command_names)
        .bind(&columns.recorded_at)
}

/// How to connect a [`PostgresLogStore`]; start with [`PostgresLogStore::builder`].
#[derive(Clone)]
pub struct PostgresOptions {
    source: Source,
    schema: Option<String>,
    run_migrations: bool,
    max_connections: u32,
    acquire_timeout: Duration,
    application_name: Option<String>,
    group_commit: GroupCommit,
    ping_idle_for: Duration,
    operation_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.source.redacted())
            .field("schema", &self.schema)
            .field("run_migrations", &self.run_migrations)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("application_name", &self.application_name)
            .field("group_commit", &self.group_commit)
            .field("ping_idle_for", &self.ping_idle_for)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for the database at `url` (`postgres://user:password@host:port/database`), with
    /// the defaults: the connection's own `search_path`, migrations on, 10 connections, 10 s
    /// acquire timeout, 30 s operation timeout. Connecting refuses any scheme but `postgres://`
    /// and `postgresql://` with [`Error::Config`].
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_source(Source::Url(url.into()))
    }

    /// Options for a database given as sqlx connect options (host, port, user, password, TLS,
    /// …), with the same defaults as [`new`](Self::new).
    pub fn from_connect_options(options: PgConnectOptions) -> Self {
        Self::with_source(Source::Options(Box::new(options)))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            schema: None,
            run_migrations: true,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            application_name: None,
            group_commit: GroupCommit::default(),
            ping_idle_for: Duration::ZERO,
            operation_timeout: crate::outcome::DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// How long one operation of the store (an append, a read, a command lookup) may take,
    /// waiting for a connection included (default 30 s). A read that takes longer fails with
    /// [`Error::Timeout`](fluvius_core::Error::Timeout); an append that takes longer is
    /// resolved like one whose connection broke (see the [module docs](self#outcomes)): it is
    /// answered as stored if it is in the log, else with
    /// [`Error::OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown), after at most another
    /// `timeout` (and at most 5 s). A zero timeout is taken as 1 ms.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Keep the tables in this schema: it is created if missing, and every connection of the
    /// store's pool gets `SET search_path TO <schema>`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Whether to apply the embedded migrations on connect (default `true`).
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// Size of the connection pool (at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long connecting, or waiting for a pooled connection, may take before failing.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How concurrent appends share transactions (default: [`GroupCommit::default`], on). See
    /// the [module docs](self#group-commit).
    pub fn group_commit(mut self, group_commit: GroupCommit) -> Self {
        self.group_commit = group_commit;
        self
    }

    /// Check a pooled connection with a round trip (a ping) before using it only when it has
    /// been idle for at least `idle`. The default, [`Duration::ZERO`], checks every connection
    /// every time it is taken from the pool: a connection the server dropped (a restart, a
    /// failover, `pg_terminate_backend`) is replaced before anything uses it, so no operation
    /// fails for it. With a longer `idle`, a recently used connection is handed out unchecked,
    /// saving one round trip per use of the pool (a command at concurrency 1 takes the pool
    /// twice: measured 1.23–1.57x its commands/s with connections never checked and the server
    /// on the same machine, more with the server further away); the price is that after the
    /// server dropped connections, each such connection fails the one operation that uses it
    /// next (with [`Error::Store`](fluvius_core::Error::Store); the pool then opens a new one).
    pub fn ping_connections_idle_for(mut self, idle: Duration) -> Self {
        self.ping_idle_for = idle;
        self
    }

    /// The `application_name` the connections report (visible in `pg_stat_activity`).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Connect, create the schema if one was given, and run the migrations unless turned off.
    pub async fn connect(self) -> Result<PostgresLogStore> {
        PostgresLogStore::connect_with(self).await
    }
}

/// Where to connect: a URL, or ready-made options.
#[derive(Clone)]
enum Source {
    Url(String),
    Options(Box<PgConnectOptions>),
}

impl Source {
    fn redacted(&self) -> String {
        match self {
            Source::Url(url) => redact_url(url),
            Source::Options(options) => describe(options, None),
        }
    }

    fn connect_options(&self) -> Result<PgConnectOptions> {
        match self {
            Source::Url(url) if !url.starts_with("postgres://") && !url.starts_with("postgresql://") => {
                Err(Error::Config {
                    target: redact_url(url),
                    message: "not a PostgreSQL URL: expected `postgres://…` or `postgresql://…`".into(),
                    source: None,
                })
            }
            Source::Url(url) => PgConnectOptions::from_str(url).map_err(|e| Error::Config {
                target: redact_url(url),
                message: "not a valid PostgreSQL URL".into(),
                source: Some(e),
            }),
            Source::Options(options) => Ok((**options).clone()),
        }
    }
}

/// A [`LogStore`] in a PostgreSQL database. Cheap to clone (the pool is shared).
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

/// Quote an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A URL with the password (and every query parameter) removed, for messages about a URL that
/// does not parse.
fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return "<PostgreSQL URL>".to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}/{path}")
}

/// `postgres://user@host:port/database`, plus the schema: never the password.
fn describe(options: &PgConnectOptions, schema: Option<&str>) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let mut target = format!(
        "postgres://{}@{}/{}",
        options.get_username(),
        host,
        options.get_database().unwrap_or_default()
    );
    if let Some(schema) = schema {
        target.push_str(&format!(" (schema {schema})"));
    }
    target
}

impl PostgresLogStore {
    /// Connect to `url` with the default options (migrations run).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PostgresOptions::new(url)).await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions::new(url)
    }

    /// Connect with explicit options.
    ///
    /// One connection is opened first, to report an unreachable database or a failed login at
    /// once (rather than after the acquire timeout), to create the schema and to migrate.
    #[tracing::instrument(name = "fluvius.postgres.connect", skip_all, fields(target = tracing::field::Empty), err)]
    pub async fn connect_with(options: PostgresOptions) -> Result<Self> {
        let mut connect = options.source.connect_options()?;
        if let Some(name) = &options.application_name {
            connect = connect.application_name(name);
        }
        let target = describe(&connect, options.schema.as_deref());
        tracing::Span::current().record("target", target.as_str());
        let set_search_path = options
            .schema
            .as_deref()
            .map(|schema| Arc::<str>::from(format!("SET search_path TO {}", quote_ident(schema))));

        let connect_error = |source| Error::Connect {
            target: target.clone(),
            source,
        };
        let mut conn = tokio::time::timeout(options.acquire_timeout, PgConnection::connect_with(&connect))
            .await
            .map_err(|_| {
                connect_error(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", options.acquire_timeout),
                )))
            })?
            .map_err(connect_error)?;
        if let (Some(schema), Some(set_search_path)) = (&options.schema, &set_search_path) {
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
            conn.execute(create.as_str())
                .await
                .map_err(|source| Error::Query {
                    target: target.clone(),
                    operation: "create schema",
                    source,
                })?;
            conn.execute(&**set_search_path)
                .await
                .map_err(|source| Error::Query {
                    target: target.clone(),
                    operation: "set search_path",
                    source,
                })?;
        }
        if options.run_migrations {
            MIGRATOR
                .run_direct(&mut conn)
                .await
                .map_err(|source| Error::Migrate {
                    target: target.clone(),
                    source,
                })?;
        }
        let _ = conn.close().await;

        let mut pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout);
        if !options.ping_idle_for.is_zero() {
            let min_idle = options.ping_idle_for;
            pool = pool.test_before_acquire(false).before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= min_idle {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        }
        if let Some(statement) = set_search_path {
            pool = pool.after_connect(move |conn, _meta| {
                let statement = statement.clone();
                Box::pin(async move { conn.execute(&*statement).await.map(drop) })
            });
        }
        Ok(Self {
            pool: pool.connect_lazy_with(connect),
            target: target.into(),
            queue: None,
            reads: None,
            hints: None,
            operation_timeout: options.operation_timeout,
        }
        .with_group_commit(options.group_commit)
        .with_hints())
    }

    /// Start the task that notifies listeners after appends (inside a tokio runtime). Set last:
    /// the group-commit tasks' clones of the store do not keep it running.
    fn with_hints(mut self) -> Self {
        self.hints = AppendHints::spawn(self.pool.clone());
        self
    }

    /// Start the group-commit writers and the stream readers (when `config` is on and a tokio
    /// runtime is running).
    fn with_group_commit(mut self, config: GroupCommit) -> Self {
        if config.is_on() && tokio::runtime::Handle::try_current().is_ok() {
            // Taken before the queues are set: the tasks must not keep their own queues open.
            let writer = self.clone();
            let reader = self.clone();
            self.reads = Some(ReadQueue::spawn(
                "postgres",
                reads::READERS,
                reads::MAX_READ_BATCH,
                move |batch| {
                    let reader = reader.clone();
                    let span = tracing::debug_span!("fluvius.postgres.read_batch", streams = batch.len());
                    // Given up on a stalled connection (its callers have timed out), so the
                    // reader goes on with the next batch.
                    let within = reader.operation_timeout;
                    async move {
                        let _ = tokio::time::timeout(within, reader.read_batch(batch)).await;
                    }
                    .instrument(span)
                },
            ));
            let writers = config.writers_or(GroupCommit::DEFAULT_POSTGRES_WRITERS);
            self.queue = Some(Queue::spawn(config, "postgres", writers, (), move |batch, ()| {
                let writer = writer.clone();
                let span = tracing::debug_span!("fluvius.postgres.group_commit", appends = batch.len());
                // A batch stuck on a stalled connection is given up (its callers learn the
                // truth themselves), so the writer goes on with the next.
                let within = writer.operation_timeout;
                async move {
                    tokio::time::timeout(within, writer.write_batch(batch))
                        .await
                        .unwrap_or(false)
                }
                .instrument(span)
            }));
        }
        self
    }

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

    async fn current_version(&self, resource: &str, aggregate_id: AggregateId) -> CoreResult<u64> {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(aggregate_version), 0) FROM fluvius_events \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2",
        )
        .bind(resource)
        .bind(aggregate_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(self.query_error("read stream version"))?;
        codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))
    }

    /// After an append found the stream at another version: a known command id wins (the
    /// caller answers it from the record), else it is a conflict.
    async fn conflict_or_duplicate(&self, request: &AppendRequest) -> fluvius_core::Error {
        if let Some(command) = &request.command {
            match self.get_command_impl(command.id).await {
                Ok(Some(_)) => {
                    return fluvius_core::Error::DuplicateCommand {
                        command_id: command.id,
                    }
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        match self
            .current_version(&request.resource, request.aggregate_id)
            .await
        {
            Ok(actual) => fluvius_core::Error::Conflict {
                resource: request.resource.to_string(),
                aggregate_id: request.aggregate_id,
                expected: request.expected_version,
                actual,
            },
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
            .current_version(&request.resource, request.aggregate_id)
            .await?;
        if actual != request.expected_version {
            return Err(fluvius_core::Error::Conflict {
                resource: request.resource.to_string(),
                aggregate_id: request.aggregate_id,
                expected: request.expected_version,
                actual,
            });
        }
        Ok(())
    }

    async fn append_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        request.validate()?;
        if request.events.is_empty() {
            self.check_empty_append(&request).await?;
            return Ok(Vec::new());
        }
        let probe = crate::outcome::Probe::of(&request);
        let write = async {
            match &self.queue {
                // The only append in flight: written here, as the writer would write a batch
                // of one, without the hand-off to a writer task and back.
                Some(queue) => match queue.try_alone() {
                    Some(_alone) => self.append_alone(request).await,
                    None => queue.submit(request).await,
                },
                None => self.append_alone(request).await,
            }
        };
        let written = self.bounded("append", write).await;
        // A failure that may have come after the commit: learn the truth before answering.
        let stored = match (written, probe) {
            (Err(e), Some(probe)) if crate::outcome::unclear(&e) => Box::pin(self.resolve(&probe, e)).await,
            (written, _) => written,
        }?;
        if let Some(hints) = &self.hints {
            hints.appended();
        }
        Ok(stored)
    }

    /// One append in a transaction of its own.
    async fn append_alone(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        if request.snapshot.is_none() && request.transactional.is_none() {
            return match self.append_in_one_statement(&request).await {
                Ok(positions) => Ok(codec::stored(request, positions)),
                Err(failure) => Err(self.failed(&request, failure).await),
            };
        }
        // Nothing is committed without the `COMMIT`: a failure before it wrote nothing.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| crate::outcome::before_commit(self.query_error("begin append")(e)))?;
        match self.write_append(&mut tx, &request, None).await {
            Ok(positions) => {
                tx.commit().await.map_err(self.query_error("commit append"))?;
                Ok(codec::stored(request, positions))
            }
            Err(failure) => {
                let _ = tx.rollback().await;
                Err(crate::outcome::before_commit(
                    self.failed(&request, failure).await,
                ))
            }
        }
    }

    /// Write the batch of the group-commit writer in one transaction, each caller answered
    /// after the commit: a lone append in one statement, several in bulk when none has
    /// transactional handlers, else one savepoint per append. Returns whether it wrote the
    /// batch in bulk.
    async fn write_batch(&self, batch: Vec<Pending>) -> bool {
        if batch.len() == 1 {
            for Pending { request, reply } in batch {
                let _ = reply.send(self.append_alone(request).await);
            }
            return false;
        }
        if batch.iter().all(|p| p.request.transactional.is_none()) {
            let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
            // A batch with snapshots is written in a transaction: a failure before its
            // `COMMIT` wrote nothing.
            let requests_without_snapshots = requests.iter().all(|r| r.snapshot.is_none());
            match self.write_bulk(&requests).await {
                Ok((tx, outcomes)) => {
                    let outcomes = batch.into_iter().zip(outcomes).collect();
                    finish_batch(tx, outcomes, &self.target).await;
                    return true;
                }
                // The statement may have committed (the connection broke after sending it):
                // writing the batch again would turn its appends into conflicts. Each caller
                // learns its append's truth instead.
                Err(e) if crate::outcome::unclear(&e) && requests_without_snapshots => {
                    for p in batch {
                        p.answer(Err(crate::outcome::in_doubt(e.to_string())));
                    }
                    return true;
                }
                // Rolled back: typically a writer of another transaction recorded a version
                // or a command id of this batch after our reads. Append by append, each
                // failure is an append's own.
                Err(e) => {
                    tracing::debug!(error = %e, appends = batch.len(), "bulk write failed, writing the batch append by append");
                }
            }
        }
        self.write_in_savepoints(batch).await;
        false
    }

    /// Write a batch in one transaction that reserves the positions of every append first,
    /// one savepoint per append.
    async fn write_in_savepoints(&self, batch: Vec<Pending>) {
        let n = batch.len();
        let total: usize = batch.iter().map(|p| p.request.events.len()).sum();
        let begun = async {
            let mut tx = self.pool.begin().await.map_err(|e| ("begin append", e))?;
            let first: i64 = sqlx::query_scalar("SELECT fluvius_reserve_positions($1)")
                .bind(i32::try_from(total).unwrap_or(i32::MAX))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| ("append (reserve positions)", e))?;
            Ok::<_, (&str, sqlx::Error)>((tx, first))
        };
        let (mut tx, mut next_position) = match begun.await {
            Ok(begun) => begun,
            // Nothing is committed without the `COMMIT`: a failure before it wrote nothing.
            Err((operation, e)) => return refuse_batch(batch, &self.target, operation, &e),
        };
        let mut written = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for pending in batch {
            let first = next_position;
            next_position += pending.request.events.len() as i64;
            match self.write_in_savepoint(&mut tx, &pending.request, first).await {
                Ok(positions) => written.push((pending, positions)),
                Err(SavepointFailure::Append(failure)) => failed.push((pending, failure)),
                // A failed savepoint statement leaves the transaction in doubt: give up on
                // the whole batch (nothing is committed).
                Err(SavepointFailure::Transaction(e)) => {
                    let _ = tx.rollback().await;
                    pending.answer(Err(batch_refused(&self.target, "append (savepoint)", &e, n)));
                    for (p, _) in written {
                        p.answer(Err(batch_refused(&self.target, "append (savepoint)", &e, n)));
                    }
                    for (p, failure) in failed {
                        let error = self.failed(&p.request, failure).await;
                        p.answer(Err(crate::outcome::before_commit(error)));
                    }
                    return;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => {
                for (Pending { request, reply }, positions) in written {
                    let _ = reply.send(Ok(codec::stored(request, positions)));
                }
            }
            Err(e) => {
                for (p, _) in written {
                    p.answer(Err(batch_error(&self.target, "commit append", &e, n)));
                }
            }
        }
        // After the commit, so a command recorded earlier in this batch is seen as a duplicate.
        // Their savepoints were rolled back: nothing of them was written.
        for (p, failure) in failed {
            let error = self.failed(&p.request, failure).await;
            p.answer(Err(crate::outcome::before_commit(error)));
        }
    }

    /// One append of a batch, inside its own savepoint: rolled back alone if it fails.
    async fn write_in_savepoint(
        &self,
        tx: &mut PgConnection,
        request: &AppendRequest,
        first_position: i64,
    ) -> Result<Vec<u64>, SavepointFailure> {
        tx.execute("SAVEPOINT fluvius_append")
            .await
            .map_err(SavepointFailure::Transaction)?;
        match self.write_append(tx, request, Some(first_position)).await {
            Ok(positions) => {
                tx.execute("RELEASE SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Ok(positions)
            }
            Err(failure) => {
                tx.execute("ROLLBACK TO SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                tx.execute("RELEASE SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Err(SavepointFailure::Append(failure))
            }
        }
    }

    /// The error for a failed append: resolving a version mismatch into a conflict or a
    /// duplicate command (read outside the failed transaction).
    async fn failed(&self, request: &AppendRequest, failure: AppendFailure) -> fluvius_core::Error {
        match failure {
            AppendFailure::ConflictOrDuplicate => self.conflict_or_duplicate(request).await,
            AppendFailure::Error(e) => e,
        }
    }

    /// An append's expected version and event count, as bound.
    fn expected_and_count(&self, request: &AppendRequest) -> CoreResult<(i64, i32)> {
        let expected =
            codec::to_i64(request.expected_version, "expected version").map_err(|m| self.data_error(m))?;
        let count = i32::try_from(request.events.len()).map_err(|_| {
            self.data_error(format!(
                "{} events in one append is too many",
                request.events.len()
            ))
        })?;
        Ok((expected, count))
    }

    /// Write one append with no snapshot and no transactional handlers in one statement of
    /// its own ([`INSERT_EVENTS_AND_COMMAND`]), outside any transaction: atomic, and committed
    /// when it returns.
    async fn append_in_one_statement(&self, request: &AppendRequest) -> Result<Vec<u64>, AppendFailure> {
        let Prepared { columns, command, .. } = self.prepare(request)?;
        let (expected, count) = self.expected_and_count(request)?;
        let record = command.as_ref();
        let inserted = bind_append(INSERT_EVENTS_AND_COMMAND, request, expected, count, &columns)
            .bind(record.map(|(r, ..)| r.id).as_slice())
            .bind(record.map(|(r, ..)| r.namespace.as_str()).as_slice())
            .bind(record.map(|(r, ..)| r.resource.as_str()).as_slice())
            .bind(record.map(|(r, ..)| *r.aggregate_id.as_uuid()).as_slice())
            .bind(record.map(|(r, ..)| r.action.as_str()).as_slice())
            .bind(record.map(|(r, ..)| r.args.as_str()).as_slice())
            .bind(record.map(|(_, context, ..)| context.as_str()).as_slice())
            .bind(record.map(|(_, _, before, _)| *before).as_slice())
            .bind(record.map(|(_, _, _, after)| *after).as_slice())
            .bind(record.map(|(r, ..)| r.timestamp).as_slice())
            .fetch_all(&self.pool)
            .await;
        let returned = match inserted {
            // The version check failed: the stream is elsewhere (nothing was written).
            Ok(rows) if rows.is_empty() => return Err(AppendFailure::ConflictOrDuplicate),
            Ok(rows) => rows,
            Err(err) => {
                return Err(match codec::unique_violation(&err) {
                    Some(Some(COMMANDS_KEY)) => match record {
                        Some((r, ..)) => {
                            AppendFailure::Error(fluvius_core::Error::DuplicateCommand { command_id: r.id })
                        }
                        None => self.query_error("append (insert events, record command)")(err).into(),
                    },
                    // A concurrent writer committed this version after the check.
                    Some(c) if c.is_none_or(|c| c == EVENTS_STREAM_KEY) => AppendFailure::ConflictOrDuplicate,
                    _ => self.query_error("append (insert events, record command)")(err).into(),
                });
            }
        };
        // The statement committed: a failure to read the positions back cannot undo it.
        let positions = self.returned_positions(request, &returned).map_err(|e| {
            crate::outcome::in_doubt(format!(
                "the append was committed, but its positions could not be read back: {e}"
            ))
        })?;
        Ok(positions)
    }

    /// Write one append in the open transaction `tx`: its events (with the version check), then
    /// its command row. Positions come from `first_position` on when given (reserved
    /// beforehand), else are reserved here. Returns `(version, position)` of each event
    /// written. On error the caller rolls back (the transaction, or the append's savepoint).
    async fn write_append(
        &self,
        tx: &mut PgConnection,
        request: &AppendRequest,
        first_position: Option<i64>,
    ) -> Result<Vec<u64>, AppendFailure> {
        let Prepared { columns, command, .. } = self.prepare(request)?;
        let (expected, count) = self.expected_and_count(request)?;

        let insert = match first_position {
            None => bind_append(INSERT_EVENTS, request, expected, count, &columns),
            Some(first) => bind_append(INSERT_EVENTS_AT, request, expected, first, &columns),
        };
        let inserted = insert.fetch_all(&mut *tx).await;
        let returned = match inserted {
            Ok(rows) if rows.is_empty() => {
                // The one-time version check failed: the stream is elsewhere.
                return Err(AppendFailure::ConflictOrDuplicate);
            }
            Ok(rows) => rows,
            Err(err) => {
                if codec::unique_violation(&err).is_some_and(|c| c.is_none_or(|c| c == EVENTS_STREAM_KEY)) {
                    // A concurrent writer committed this version after our check.
                    return Err(AppendFailure::ConflictOrDuplicate);
                }
                return Err(self.query_error("append (insert events)")(err).into());
            }
        };

        if let Some((record, context, before, after)) = &command {
            let result = sqlx::query(INSERT_COMMAND)
                .bind(record.id)
                .bind(record.namespace.as_str())
                .bind(record.resource.as_str())
                .bind(record.aggregate_id.as_uuid())
                .bind(record.action.as_str())
                .bind(record.args.as_str())
                .bind(context.as_str())
                .bind(*before)
                .bind(*after)
                .bind(record.timestamp)
                .execute(&mut *tx)
                .await;
            if let Err(err) = result {
                if codec::unique_violation(&err).is_some_and(|c| c.is_none_or(|c| c == COMMANDS_KEY)) {
                    return Err(AppendFailure::Error(fluvius_core::Error::DuplicateCommand {
                        command_id: record.id,
                    }));
                }
                return Err(self.query_error("append (record command)")(err).into());
            }
        }
        if let Some(snapshot) = &request.snapshot {
            self.insert_snapshot(&mut *tx, snapshot).await?;
        }

        let positions = self.returned_positions(request, &returned)?;
        request
            .run_transactional(
                positions.iter().copied(),
                &mut AppendTx::new("postgres", Some(&mut *tx)),
            )
            .await?;
        Ok(positions)
    }

    /// An append's rows, converted for binding (a value that does not fit the schema fails
    /// this append alone).
    fn prepare<'a>(&self, request: &'a AppendRequest) -> CoreResult<Prepared<'a>> {
        let columns = Columns::new(&request.events).map_err(|m| self.data_error(m))?;
        let command = match &request.command {
            Some(record) => Some((
                record,
                codec::encode_context(&record.context).map_err(|m| self.data_error(m))?,
                codec::to_i64(record.version_before, "version").map_err(|m| self.data_error(m))?,
                codec::to_i64(record.version_after, "version").map_err(|m| self.data_error(m))?,
            )),
            None => None,
        };
        Ok(Prepared {
            request,
            columns,
            command,
        })
    }

    /// Check the positions an append got back, inside its transaction (so a mismatch rolls
    /// the append back instead of failing after the commit), in event order.
    /// The positions of `request`'s events from the rows its insert returned (`position,
    /// aggregate_version`), checked by [`Self::checked_positions`].
    fn returned_positions(&self, request: &AppendRequest, rows: &[PgRow]) -> CoreResult<Vec<u64>> {
        let positions = rows
            .iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(0)?)))
            .collect::<sqlx::Result<Vec<(i64, i64)>>>()
            .map_err(self.query_error("append (read positions)"))?;
        self.checked_positions(request, positions)
    }

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
    async fn insert_snapshot(&self, conn: &mut PgConnection, snapshot: &Snapshot) -> CoreResult<()> {
        let version = codec::to_i64(snapshot.version, "snapshot version").map_err(|m| self.data_error(m))?;
        let state_version = i32::try_from(snapshot.state_version).map_err(|_| {
            self.data_error(format!(
                "state version {} does not fit an integer column",
                snapshot.state_version
            ))
        })?;
        sqlx::query(INSERT_SNAPSHOT)
            .bind(snapshot.resource.as_str())
            .bind(snapshot.aggregate_id.as_uuid())
            .bind(version)
            .bind(state_version)
            .bind(snapshot.state.as_str())
            .bind(codec::micros(snapshot.timestamp))
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
            "SELECT aggregate_version, state_version, state::text, recorded_at FROM fluvius_snapshots \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2 AND aggregate_version <= $3 \
             AND ($4::timestamptz IS NULL OR recorded_at <= $4) \
             ORDER BY aggregate_version DESC LIMIT 1",
        )
        .bind(resource)
        .bind(aggregate_id.as_uuid())
        .bind(query.max_version.map_or(i64::MAX, codec::clamp_i64))
        .bind(query.until.map(codec::micros))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("load snapshot"))?;
        row.map(|row| -> Result<Snapshot, String> {
            let state_version: i32 = column(&row, 1)?;
            Ok(Snapshot {
                resource: resource.to_owned(),
                aggregate_id,
                version: codec::to_u64(column(&row, 0)?, "snapshot version")?,
                state_version: u32::try_from(state_version)
                    .map_err(|_| format!("stored state version {state_version} is negative"))?,
                state: Payload::from_json_unchecked(column::<String>(&row, 2)?),
                timestamp: column(&row, 3)?,
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
        // The only whole-stream read in flight runs here (below), as a reader would run a
        // batch of one; others queue for the readers meanwhile.
        let _alone = match &self.reads {
            Some(reads) if query == StreamQuery::default() => match reads.try_alone() {
                Some(guard) => Some(guard),
                None => return reads.submit(resource, aggregate_id).await,
            },
            _ => None,
        };
        let from = query.from_version.map_or(0, codec::clamp_i64);
        let to = query.to_version.map_or(i64::MAX, codec::clamp_i64);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2 \
             AND aggregate_version BETWEEN $3 AND $4 AND ($5::timestamptz IS NULL OR recorded_at <= $5) \
             ORDER BY aggregate_version"
        );
        let rows = sqlx::query(&sql)
            .bind(resource)
            .bind(aggregate_id.as_uuid())
            .bind(from)
            .bind(to)
            .bind(query.until.map(codec::micros))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error("read stream"))?;
        codec::stream_events(&rows, decode_entry, |m| self.data_error(m))
    }

    async fn read_all_impl(&self, after: u64, limit: usize) -> CoreResult<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let horizon = horizon::read(&self.pool)
            .await
            .map_err(self.query_error("read all"))?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE position > $1 AND xact_id < $3::bigint::text::xid8 \
             ORDER BY position LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(codec::clamp_i64(after))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(horizon)
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
            "SELECT id, namespace, resource, aggregate_id, action, args::text, context::text, version_before, \
             version_after, recorded_at FROM fluvius_commands WHERE id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("get command"))?;
        row.as_ref()
            .map(decode_command)
            .transpose()
            .map_err(|m| self.data_error(m))
    }
}

/// One append, converted for binding.
struct Prepared<'a> {
    request: &'a AppendRequest,
    columns: Columns<'a>,
    /// The command record, its context as JSON, its versions before and after.
    command: Option<(&'a CommandRecord, String, i64, i64)>,
}

/// The events of one append, column by column, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<Uuid>,
    namespaces: Vec<&'a str>,
    versions: Vec<i64>,
    keys: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    args: Vec<&'a str>,
    metadata: Vec<String>,
    command_ids: Vec<Uuid>,
    command_names: Vec<&'a str>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    fn new(events: &'a [Event]) -> Result<Self, String> {
        let n = events.len();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            namespaces: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            args: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            command_ids: Vec::with_capacity(n),
            command_names: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
        };
        for e in events {
            c.ids.push(e.id);
            c.namespaces.push(&e.namespace);
            c.versions
                .push(codec::to_i64(e.aggregate_version, "aggregate version")?);
            c.keys.push(&e.key);
            c.schema_versions
                .push(i32::try_from(e.schema_version).map_err(|_| {
                    format!(
                        "schema version {} does not fit an integer column",
                        e.schema_version
                    )
                })?);
            c.payloads.push(e.payload.as_str());
            c.args.push(e.args.as_str());
            c.metadata.push(codec::encode_metadata(&e.metadata)?);
            c.command_ids.push(e.command_id);
            c.command_names.push(&e.command_name);
            c.recorded_at.push(codec::micros(e.timestamp));
        }
        Ok(c)
    }
}

impl<'a> Columns<'a> {
    /// Add the events of `other` after these.
    fn extend(&mut self, other: Columns<'a>) {
        self.ids.extend(other.ids);
        self.namespaces.extend(other.namespaces);
        self.versions.extend(other.versions);
        self.keys.extend(other.keys);
        self.schema_versions.extend(other.schema_versions);
        self.payloads.extend(other.payloads);
        self.args.extend(other.args);
        self.metadata.extend(other.metadata);
        self.command_ids.extend(other.command_ids);
        self.command_names.extend(other.command_names);
        self.recorded_at.extend(other.recorded_at);
    }
}

fn column<'r, T>(row: &'r PgRow, index: usize) -> Result<T, String>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(index).map_err(|e| format!("column {index}: {e}"))
}

fn decode_event(row: &PgRow) -> Result<Event, String> {
    let schema_version: i32 = column(row, 7)?;
    Ok(Event {
        position: codec::to_u64(column(row, 0)?, "position")?,
        id: column(row, 1)?,
        namespace: column::<&str>(row, 2)?.into(),
        resource: column::<&str>(row, 3)?.into(),
        aggregate_id: AggregateId::from_uuid(column(row, 4)?),
        aggregate_version: codec::to_u64(column(row, 5)?, "aggregate version")?,
        key: column::<&str>(row, 6)?.into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| format!("stored schema version {schema_version} is negative"))?,
        payload: Payload::from_json_unchecked(column::<String>(row, 8)?),
        args: Payload::from_json_unchecked(column::<String>(row, 9)?),
        metadata: codec::decode_metadata(column(row, 10)?)?,
        command_id: column(row, 11)?,
        command_name: column::<&str>(row, 12)?.into(),
        timestamp: column(row, 13)?,
    })
}

/// A row of [`EVENT_COLUMNS`] as a log entry (see [`codec::log_entry`]).
fn decode_entry(row: &PgRow) -> Result<LogEntry, String> {
    codec::log_entry(
        decode_event(row),
        || column(row, 0),
        || column(row, 1).ok(),
        || column(row, 6).ok(),
    )
}

/// The stream a row of [`EVENT_COLUMNS`] belongs to, if that much of it reads.
fn stream_of(row: &PgRow) -> Option<(String, AggregateId)> {
    Some((column(row, 3).ok()?, AggregateId::from_uuid(column(row, 4).ok()?)))
}

fn decode_command(row: &PgRow) -> Result<CommandRecord, String> {
    Ok(CommandRecord {
        id: column(row, 0)?,
        namespace: column::<&str>(row, 1)?.into(),
        resource: column::<&str>(row, 2)?.into(),
        aggregate_id: AggregateId::from_uuid(column(row, 3)?),
        action: column::<&str>(row, 4)?.into(),
        args: Payload::from_json_unchecked(column::<String>(row, 5)?),
        context: codec::decode_context(column(row, 6)?)?,
        version_before: codec::to_u64(column(row, 7)?, "version")?,
        version_after: codec::to_u64(column(row, 8)?, "version")?,
        timestamp: column(row, 9)?,
    })
}

impl crate::outcome::Bounded for PostgresLogStore {
    fn target(&self) -> &str {
        &self.target
    }

    fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }
}

impl LogStore for PostgresLogStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, CoreResult<Vec<Event>>> {
        let span = tracing::debug_span!(
            "fluvius.postgres.append",
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
        let span =
            tracing::debug_span!("fluvius.postgres.read_stream", resource, aggregate_id = %aggregate_id);
        Box::pin(
            self.bounded(
                "read stream",
                self.read_stream_impl(resource, aggregate_id, query),
            )
            .instrument(span),
        )
    }

    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, CoreResult<Vec<LogEntry>>> {
        let span = tracing::debug_span!("fluvius.postgres.read_all", after, limit);
        Box::pin(
            self.bounded("read all", self.read_all_impl(after, limit))
                .instrument(span),
        )
    }

    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, CoreResult<Option<CommandRecord>>> {
        let span = tracing::debug_span!("fluvius.postgres.get_command", command_id = %command_id);
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
            tracing::debug_span!("fluvius.postgres.load_snapshot", resource, aggregate_id = %aggregate_id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_drops_password_and_query() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=require&password=x"),
            "postgres://app@db:5432/app"
        );
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
        assert_eq!(redact_url("not a url with secret"), "<PostgreSQL URL>");
    }

    #[test]
    fn describe_never_shows_the_password() {
        let options = PgConnectOptions::from_str("postgres://app:s3cret@db:5433/app").unwrap();
        assert_eq!(
            describe(&options, Some("t1")),
            "postgres://app@db:5433/app (schema t1)"
        );
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
