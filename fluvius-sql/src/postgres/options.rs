//! How to connect: options, the URL or connect options, redaction, and opening the store.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Executor};
use tracing::Instrument;

use crate::batch::{GroupCommit, Queue, ReadQueue};
use crate::error::{Error, Result};

use super::*;

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

    pub(super) fn with_source(source: Source) -> Self {
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
    /// resolved like one whose connection broke (see the [module docs](crate::postgres#outcomes)): it is
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
    /// the [module docs](crate::postgres#group-commit).
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
    /// twice); the price is that after the
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
pub(super) enum Source {
    Url(String),
    Options(Box<PgConnectOptions>),
}

impl Source {
    pub(super) fn redacted(&self) -> String {
        match self {
            Source::Url(url) => redact_url(url),
            Source::Options(options) => describe(options, None),
        }
    }

    pub(super) fn connect_options(&self) -> Result<PgConnectOptions> {
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

/// Quote an SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A URL with the password (and every query parameter) removed, for messages about a URL that
/// does not parse.
pub(super) fn redact_url(raw: &str) -> String {
    // Parsed by the `url` crate, not split by hand: a password with an unescaped `/` or `@`
    // must not leak through a naive split.
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.set_password(None).is_err() {
                return "<PostgreSQL URL>".to_owned();
            }
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => redact_unparsed(raw),
    }
}

/// A URL the `url` crate refuses (a bad port, say) is still worth showing without its secret:
/// everything up to the *last* `@` is user info, of which only the user name is kept.
fn redact_unparsed(raw: &str) -> String {
    let without_query = raw.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return "<PostgreSQL URL>".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let user = userinfo.split([':', '/']).next().unwrap_or_default();
            format!("{scheme}://{user}@{host_and_path}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// `postgres://user@host:port/database`, plus the schema: never the password.
pub(super) fn describe(options: &PgConnectOptions, schema: Option<&str>) -> String {
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
    pub(super) fn with_hints(mut self) -> Self {
        self.hints = AppendHints::spawn(self.pool.clone());
        self
    }

    /// Start the group-commit writers and the stream readers (when `config` is on and a tokio
    /// runtime is running).
    pub(super) fn with_group_commit(mut self, config: GroupCommit) -> Self {
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
        // A password with an unescaped `/` or `@`: a split on the first `/` used to leak it.
        for url in [
            "postgres://app:pa/ss@db:5432/app",
            "postgres://app:p@ss@db:5432/app",
            "postgres://app:pa%2Fss@db/app",
            "postgres://app:pa/ss@db:notaport/app",
            "postgres://app:p@ss@db:notaport/app",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("ss"), "{url} shown as {shown}");
        }
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
