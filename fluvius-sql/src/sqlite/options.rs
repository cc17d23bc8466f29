//! How to open: options, URL checks, and opening the store.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tracing::Instrument;

use crate::batch::{GroupCommit, Queue, ReadQueue};
use crate::error::{Error, Result};

use super::*;

/// Prepared statements the writer's connection keeps (sqlx's default is 100). A group-commit
/// batch runs four statements whose text depends on its size (the stream versions, the
/// recorded commands, the command rows, the event rows), so batches of up to 64 appends
/// already need some 256; with the default, concurrent appends kept evicting and re-preparing
/// them (preparing a statement of many rows costs about as much as running it).
pub(super) const WRITER_STATEMENT_CACHE: usize = 512;

/// How hard a commit works to reach the disk. See the [module docs](crate::sqlite#durability).
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
    /// [module docs](crate::sqlite#outcomes)). A zero timeout is taken as 1 ms.
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
    /// the [module docs](crate::sqlite#group-commit). With group commit on, concurrent whole-stream
    /// reads share queries too ([batched stream reads](crate::sqlite#batched-stream-reads)).
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

pub(super) fn is_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Refuse a URL without the `sqlite:` scheme (a bare path would silently create a file
/// relative to the working directory) and one that names no file (`""`, `sqlite://`: SQLite
/// would give every pooled connection a private temporary database of its own).
pub(super) fn check_url(url: &str) -> Result<()> {
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
}
