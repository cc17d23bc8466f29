//! The durable stores in the benchmark report: SQLite on a file with `synchronous = FULL`, and
//! PostgreSQL from `FLUVIUS_TEST_PG_URL` (skipped with a note when unset).
//!
//! Each store gets: single-command latency and commands/s at concurrency 1, 16 and 64 on
//! distinct aggregates; one hot aggregate under 16 writers (conflict rate); direct
//! `LogStore::append` throughput for batches of 1 to 1 000 events; `read_all` events/s. SQLite
//! also gets its floor: the commit of a create command in raw sqlx ([`floor`]).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_benches::BenchUser;
use fluvius_core::{AggregateId, AppendRequest, BoxFuture, Command, CommandRecord, Domain, Event, LogStore};
use uuid::Uuid;

use super::delay::DelayProxy;
use super::Row;

/// A store wrapper that counts appends refused with a version conflict.
pub struct Counting<S> {
    inner: S,
    appends: AtomicU64,
    conflicts: AtomicU64,
}

impl<S: LogStore> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            appends: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.appends.load(Ordering::Relaxed),
            self.conflicts.load(Ordering::Relaxed),
        )
    }
}

impl<S: LogStore> LogStore for Counting<S> {
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, fluvius_core::Result<Vec<Event>>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::Relaxed);
            let result = self.inner.append(request).await;
            if matches!(result, Err(fluvius_core::Error::Conflict { .. })) {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }

    // Everything but appends is the wrapped store's: measured with its snapshots, checkpoints
    // and transactional handlers.
    fluvius_core::forward_log_store!(|s| &s.inner =>
        backend, read_stream, read_all, read_log, get_command,
        load_snapshot, checkpoints, runs_transactional_handlers, head_position);
}

/// Opens a fresh, empty store of one kind for each measurement.
pub trait Opener {
    /// The name in the table, e.g. `sqlite (file, synchronous=FULL)`.
    fn label(&self) -> String;
    /// A fresh, empty store.
    fn open(&self) -> BoxFuture<'_, Arc<dyn LogStore>>;
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Read the whole log with `read_all` in pages of `page`, calling `each` with the number of
/// events read so far after every page: (events read, last position).
pub async fn read_through(store: &dyn LogStore, page: usize, mut each: impl FnMut(usize)) -> (usize, u64) {
    let mut after = 0;
    let mut read = 0;
    loop {
        let events = store.read_all(after, page).await.expect("read_all");
        let Some(last) = events.last() else { break };
        after = last.position;
        read += events.len();
        each(read);
    }
    (read, after)
}

/// `total` create commands (made by `create`) on distinct aggregates from `concurrency`
/// tasks: (elapsed, sorted latencies).
pub async fn distinct(
    domain: Arc<Domain>,
    concurrency: usize,
    total: usize,
    create: fn() -> Command,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let domain = domain.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                let t = Instant::now();
                domain.process_command(create()).await.expect("create");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("bench task"));
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (elapsed, all)
}

/// `total` renames of one aggregate from `concurrency` tasks: (elapsed, failed commands).
async fn hot(domain: Arc<Domain>, concurrency: usize, total: usize) -> (Duration, usize) {
    let id = AggregateId::new();
    domain
        .process_command(BenchUser::create_command(
            id,
            "hot".into(),
            "hot@example.org".into(),
        ))
        .await
        .expect("create the hot aggregate");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let domain = domain.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut failed = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                if domain
                    .process_command(BenchUser::rename_command(id, "renamed".into()))
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        failed += done.expect("bench task");
    }
    (start.elapsed(), failed)
}

/// Sizes of one run.
#[derive(Clone, Copy)]
pub struct Sizes {
    /// Commands per concurrency level.
    pub commands: usize,
    /// Events appended per batch size.
    pub append_events: usize,
}

/// Commands/s on distinct aggregates at concurrency 1, 16 and 64.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub conc1: f64,
    pub conc16: f64,
    pub conc64: f64,
    /// Concurrency 64 vs 1 for creates with domain-assigned ids.
    pub new64_vs_1: f64,
}

/// Unmeasured commands per task before a measurement: a fresh store opens its pooled
/// connections and prepares its statements on first use, a one-off cost that would otherwise
/// weigh on short runs at high concurrency (up to 16 connections to open) more than at
/// concurrency 1 (one).
const WARM_UP_PER_TASK: usize = 4;

/// [`distinct`] on a fresh store, after a warm-up of [`WARM_UP_PER_TASK`] commands per task:
/// (commands/s, the row's value with p50/p99).
async fn creates(
    opener: &dyn Opener,
    concurrency: usize,
    total: usize,
    create: fn() -> Command,
) -> (f64, String) {
    let domain = Arc::new(fluvius_benches::domain(opener.open().await).await);
    distinct(
        domain.clone(),
        concurrency,
        concurrency * WARM_UP_PER_TASK,
        create,
    )
    .await;
    let (elapsed, latencies) = distinct(domain, concurrency, total, create).await;
    let per_s = latencies.len() as f64 / elapsed.as_secs_f64();
    let value = format!(
        "{per_s:.0} cmds/s; p50 {} p99 {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
    (per_s, value)
}

/// Every SQL measurement for one store kind.
pub async fn measure(rows: &mut Vec<Row>, opener: &dyn Opener, sizes: Sizes) -> Throughput {
    let mut throughput = Throughput::default();
    let label = opener.label();
    let section: &'static str = Box::leak(label.into_boxed_str());

    // Commands on distinct aggregates.
    let mut conc1 = 0.0;
    for concurrency in [1, 16, 64] {
        let (per_s, value) =
            creates(opener, concurrency, sizes.commands, fluvius_benches::create_fresh).await;
        match concurrency {
            1 => {
                conc1 = per_s;
                throughput.conc1 = per_s;
            }
            16 => throughput.conc16 = per_s,
            _ => throughput.conc64 = per_s,
        }
        rows.push(Row {
            section,
            name: format!("process_command, distinct aggregates, concurrency {concurrency}"),
            value,
            ratio: format!("{:.2}x concurrency 1", per_s / conc1),
        });
    }

    // The same creates with ids the domain assigns, and with caller-chosen ids expected to be
    // new (`expect_version(0)`): no read of the (empty) stream first.
    let variants = [
        (
            fluvius_benches::create_new as fn() -> Command,
            "domain-assigned ids",
        ),
        (
            fluvius_benches::create_expecting_new,
            "caller-chosen ids, expect_version(0)",
        ),
    ];
    for (variant, (create, ids)) in variants.into_iter().enumerate() {
        let mut new1 = 0.0;
        for concurrency in [1, 64] {
            let (per_s, value) = creates(opener, concurrency, sizes.commands, create).await;
            if concurrency == 1 {
                new1 = per_s;
            } else if variant == 0 {
                // The summary's ratio is the domain-assigned one.
                throughput.new64_vs_1 = per_s / new1;
            }
            let caller_chosen = if concurrency == 1 {
                conc1
            } else {
                throughput.conc64
            };
            rows.push(Row {
                section,
                name: format!("process_command, new aggregates ({ids}), concurrency {concurrency}"),
                value,
                ratio: format!(
                    "{:.2}x concurrency 1; {:.2}x caller-chosen ids",
                    per_s / new1,
                    per_s / caller_chosen
                ),
            });
        }
    }

    // One hot aggregate.
    {
        let store = Arc::new(Counting::new(opener.open().await));
        let domain = Arc::new(fluvius_benches::domain(store.clone()).await);
        let concurrency = 16;
        let total = sizes.commands / 2;
        let (elapsed, failed) = hot(domain, concurrency, total).await;
        let (appends, conflicts) = store.counts();
        let appends = appends.saturating_sub(1); // the create
        let per_s = (total - failed) as f64 / elapsed.as_secs_f64();
        rows.push(Row {
            section,
            name: format!("process_command, one hot aggregate, concurrency {concurrency}"),
            value: format!(
                "{per_s:.0} cmds/s; {conflicts} conflicts in {appends} appends ({:.0}%), {failed} of {total} \
                 commands failed after retries",
                100.0 * conflicts as f64 / appends.max(1) as f64
            ),
            ratio: format!("{:.2}x distinct at concurrency 1", per_s / conc1),
        });
    }

    // Direct appends, then read_all over what they wrote.
    let store = opener.open().await;
    let mut written = 0usize;
    let mut batch1 = 0.0;
    for batch in [1usize, 10, 100, 1_000] {
        let appends = (sizes.append_events / batch).max(1);
        let requests: Vec<AppendRequest> = (0..appends)
            .map(|_| fluvius_core::testing::request("bench", AggregateId::new(), 0, batch as u64))
            .collect();
        let start = Instant::now();
        for request in requests {
            store.append(request).await.expect("append");
        }
        let elapsed = start.elapsed();
        written += appends * batch;
        let per_s = (appends * batch) as f64 / elapsed.as_secs_f64();
        if batch == 1 {
            batch1 = per_s;
        }
        rows.push(Row {
            section,
            name: format!("LogStore::append, batches of {batch} event(s), sequential"),
            value: format!(
                "{per_s:.0} events/s ({:.0} appends/s)",
                appends as f64 / elapsed.as_secs_f64()
            ),
            ratio: format!("{:.2}x batches of 1", per_s / batch1),
        });
    }
    let start = Instant::now();
    let (read, _) = read_through(&*store, 1_000, |_| {}).await;
    let elapsed = start.elapsed();
    assert_eq!(read, written, "read_all returns every appended event");
    rows.push(Row {
        section,
        name: format!("read_all, pages of 1 000 ({read} events)"),
        value: format!("{:.0} events/s", read as f64 / elapsed.as_secs_f64()),
        ratio: String::new(),
    });
    throughput
}

/// The disk's sync rate: 4 KiB appended to a file in `dir` and `sync_data` (fdatasync), `n`
/// times in a row: the bound on one-at-a-time durable commits (a WAL commit syncs once).
pub fn syncs_per_second(dir: &std::path::Path, n: usize) -> f64 {
    use std::io::Write;
    let path = dir.join("sync-probe");
    let mut file = std::fs::File::create(&path).expect("sync probe file");
    let page = [7u8; 4096];
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    per_s
}

/// The commit of one create command in raw sqlx: its command record and its event — the very
/// rows of one real create, with fresh ids each time — in one transaction, `BEGIN IMMEDIATE`,
/// the `INSERT`s, `COMMIT`, on one pool connection of its own store (the same schema, pragmas
/// and pool settings as the stores measured), held throughout: the best case for sqlx, with
/// no pool round trips and that connection's page cache valid from one commit to the next.
struct RawCommit {
    store: fluvius_sql::SqliteLogStore,
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    command: CommandRecord,
    event: Event,
    context: String,
    metadata: String,
    /// Both `INSERT`s as one query of two statements (one trip to sqlx's worker thread, as
    /// the store sends them) instead of one prepared statement each.
    one_query: bool,
}

const RAW_INSERT_COMMAND: &str = "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, \
     action, args, context, version_before, version_after, recorded_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const RAW_INSERT_EVENT: &str = "INSERT INTO fluvius_events (id, namespace, resource, aggregate_id, \
     aggregate_version, key, schema_version, payload, args, metadata, command_id, command_name, \
     recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Both, as one query (its parameters numbered across the two statements).
static RAW_INSERT_BOTH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{RAW_INSERT_COMMAND}; {RAW_INSERT_EVENT}"));

type RawQuery = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'static>>;

impl RawCommit {
    async fn new(files: &SqliteFiles, one_query: bool) -> Self {
        let store = files.open_sqlite().await;
        let domain = fluvius_benches::domain(store.clone()).await;
        let created = domain
            .process_command(fluvius_benches::create_fresh())
            .await
            .expect("the template create");
        let command = store
            .get_command(created.command_id)
            .await
            .expect("read the command record")
            .expect("the template command record");
        let event = created.events.into_iter().next().expect("the template event");
        let context = serde_json::to_string(&command.context).expect("context");
        let metadata = serde_json::to_string(&event.metadata).expect("metadata");
        let conn = store.pool().acquire().await.expect("a pool connection");
        Self {
            store,
            conn,
            command,
            event,
            context,
            metadata,
            one_query,
        }
    }

    /// `n` commits in a row.
    async fn run(&mut self, n: usize) {
        let (command, event) = (&self.command, &self.event);
        for _ in 0..n {
            let command_id = Uuid::now_v7().to_string();
            let aggregate_id = AggregateId::new().to_string();
            let bind_command = |query: RawQuery| {
                query
                    .bind(command_id.clone())
                    .bind(command.namespace.to_string())
                    .bind(command.resource.to_string())
                    .bind(aggregate_id.clone())
                    .bind(command.action.to_string())
                    .bind(command.args.as_str().to_owned())
                    .bind(self.context.clone())
                    .bind(0_i64)
                    .bind(1_i64)
                    .bind(command.timestamp.timestamp_micros())
            };
            let bind_event = |query: RawQuery| {
                query
                    .bind(Uuid::now_v7().to_string())
                    .bind(event.namespace.to_string())
                    .bind(event.resource.to_string())
                    .bind(aggregate_id.clone())
                    .bind(1_i64)
                    .bind(event.key.to_string())
                    .bind(i64::from(event.schema_version))
                    .bind(event.payload.as_str().to_owned())
                    .bind(event.args.as_str().to_owned())
                    .bind(self.metadata.clone())
                    .bind(command_id.clone())
                    .bind(event.command_name.to_string())
                    .bind(event.timestamp.timestamp_micros())
            };
            let mut tx = sqlx::Connection::begin_with(&mut *self.conn, "BEGIN IMMEDIATE")
                .await
                .expect("begin");
            if self.one_query {
                bind_event(bind_command(sqlx::query(&RAW_INSERT_BOTH)))
                    .execute(&mut *tx)
                    .await
                    .expect("insert both rows");
            } else {
                bind_command(sqlx::query(RAW_INSERT_COMMAND))
                    .execute(&mut *tx)
                    .await
                    .expect("insert the command record");
                bind_event(sqlx::query(RAW_INSERT_EVENT))
                    .execute(&mut *tx)
                    .await
                    .expect("insert the event");
            }
            tx.commit().await.expect("commit");
        }
    }
}

/// One contender of [`floor`].
enum Contender {
    Raw(Box<RawCommit>),
    Fluvius(Domain, fn() -> Command),
}

impl Contender {
    async fn run(&mut self, n: usize) {
        match self {
            Self::Raw(raw) => raw.run(n).await,
            Self::Fluvius(domain, create) => {
                for _ in 0..n {
                    domain.process_command(create()).await.expect("create");
                }
            }
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The floor under one-at-a-time commands on SQLite: the commit of a create command in raw
/// sqlx ([`RawCommit`], its two `INSERT`s one at a time), against `process_command` of
/// creates at concurrency 1 — caller-chosen ids (the empty stream read first, as for any
/// aggregate not cached) and domain-assigned ids (no read: the raw commit plus Fluvius), group
/// commit on and off — and the raw commit with both `INSERT`s as one query. Each contender has
/// its own store; they take turns, `per_round` commits each per round, for `rounds` rounds
/// (so a noisy stretch of the machine touches them alike), and each gets the median of its
/// rounds. Returns the raw commit's commits/s.
pub async fn floor(
    rows: &mut Vec<Row>,
    on: &SqliteFiles,
    off: &SqliteFiles,
    rounds: usize,
    per_round: usize,
) -> f64 {
    let section = "summary: SQLite single-command floor (concurrency 1, median of rounds taken in turn)";
    let mut contenders: Vec<(String, Contender)> = vec![
        (
            "the same commit in raw sqlx: BEGIN IMMEDIATE, 2 prepared INSERTs, COMMIT".into(),
            Contender::Raw(Box::new(RawCommit::new(on, false).await)),
        ),
        (
            "raw sqlx, both INSERTs as one query (one trip to the worker thread, as Fluvius does)".into(),
            Contender::Raw(Box::new(RawCommit::new(on, true).await)),
        ),
    ];
    for (files, mode) in [(on, "on"), (off, "off")] {
        for (create, ids) in [
            (
                fluvius_benches::create_fresh as fn() -> Command,
                "caller-chosen ids",
            ),
            (fluvius_benches::create_new, "domain-assigned ids"),
        ] {
            let domain = fluvius_benches::domain(files.open().await).await;
            contenders.push((
                format!("process_command, {ids}, group commit {mode}"),
                Contender::Fluvius(domain, create),
            ));
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); contenders.len()];
    for _ in 0..rounds {
        for ((_, contender), rates) in contenders.iter_mut().zip(&mut rates) {
            let start = Instant::now();
            contender.run(per_round).await;
            rates.push(per_round as f64 / start.elapsed().as_secs_f64());
        }
    }
    let rates: Vec<f64> = rates.into_iter().map(median).collect();
    let raw = rates[0];
    for ((name, contender), rate) in contenders.iter().zip(&rates) {
        let unit = match contender {
            Contender::Raw(_) => "commits/s",
            Contender::Fluvius(..) => "cmds/s",
        };
        rows.push(Row {
            section,
            name: format!("SQLite FULL: {name} ({rounds} x {per_round})"),
            value: format!("{rate:.0} {unit}"),
            ratio: format!("{:.2}x raw sqlx", rate / raw),
        });
    }
    for (_, contender) in contenders {
        if let Contender::Raw(raw) = contender {
            let RawCommit { store, conn, .. } = *raw;
            drop(conn);
            store.close().await;
        }
    }
    raw
}

/// How close one-at-a-time commands come to the disk's sync rate.
pub fn sync_bound(rows: &mut Vec<Row>, store: &str, syncs: f64, one_at_a_time: f64) {
    rows.push(Row {
        section: "summary: group commit (distinct aggregates, commands/s)",
        name: format!("{store}: concurrency 1 vs the disk's sync rate (4 KiB write + fdatasync)"),
        value: format!("{one_at_a_time:.0} cmds/s vs {syncs:.0} syncs/s"),
        ratio: format!("{:.2}x", one_at_a_time / syncs),
    });
}

/// The key ratios of one store: group commit on vs. off, concurrency 64 vs. 1.
pub fn summary(rows: &mut Vec<Row>, store: &str, off: Throughput, on: Throughput) {
    let section = "summary: group commit (distinct aggregates, commands/s)";
    rows.push(Row {
        section,
        name: format!("{store}: concurrency 64 vs 1, group commit on"),
        value: format!("{:.0} vs {:.0} cmds/s", on.conc64, on.conc1),
        ratio: format!("{:.2}x", on.conc64 / on.conc1),
    });
    rows.push(Row {
        section,
        name: format!("{store}: concurrency 64 vs 1, group commit on, domain-assigned ids"),
        value: "new aggregates, no read before the decision".into(),
        ratio: format!("{:.2}x", on.new64_vs_1),
    });
    rows.push(Row {
        section,
        name: format!("{store}: concurrency 64 vs 1, group commit off"),
        value: format!("{:.0} vs {:.0} cmds/s", off.conc64, off.conc1),
        ratio: format!("{:.2}x", off.conc64 / off.conc1),
    });
    for (conc, a, b) in [
        (1, on.conc1, off.conc1),
        (16, on.conc16, off.conc16),
        (64, on.conc64, off.conc64),
    ] {
        rows.push(Row {
            section,
            name: format!("{store}: group commit on vs off, concurrency {conc}"),
            value: format!("{a:.0} vs {b:.0} cmds/s"),
            ratio: format!("{:.2}x", a / b),
        });
    }
}

/// Fresh SQLite files (WAL, `synchronous = FULL`) in one temp directory, removed on drop.
pub struct SqliteFiles {
    dir: std::path::PathBuf,
    next: AtomicU64,
    group_commit: bool,
}

impl SqliteFiles {
    pub fn new(group_commit: bool) -> Self {
        let base = std::env::var_os("FLUVIUS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
        let dir = base.join(format!("fluvius-bench-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the benchmark directory");
        Self {
            dir,
            next: AtomicU64::new(0),
            group_commit,
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// A fresh, empty store, as itself (for its pool).
    pub async fn open_sqlite(&self) -> fluvius_sql::SqliteLogStore {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let url = format!("sqlite://{}", self.dir.join(format!("bench-{n}.db")).display());
        fluvius_sql::SqliteLogStore::builder(url)
            .group_commit(group_commit(self.group_commit))
            .open()
            .await
            .expect("open SQLite")
    }
}

impl Drop for SqliteFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Opener for SqliteFiles {
    fn label(&self) -> String {
        format!(
            "SQLite file, WAL, synchronous=FULL, group commit {}",
            if self.group_commit { "on" } else { "off" }
        )
    }
    fn open(&self) -> BoxFuture<'_, Arc<dyn LogStore>> {
        Box::pin(async move { Arc::new(self.open_sqlite().await) as Arc<dyn LogStore> })
    }
}

/// Fresh schemas on the PostgreSQL server of `FLUVIUS_TEST_PG_URL`, dropped by [`Self::cleanup`].
pub struct PostgresSchemas {
    url: String,
    schemas: std::sync::Mutex<Vec<String>>,
    group_commit: bool,
    /// Stores connect through this proxy (and the label says what it adds).
    via: Option<(std::net::SocketAddr, &'static str)>,
    /// `PostgresOptions::ping_connections_idle_for`, when not the default.
    ping_idle_for: Option<Duration>,
}

fn group_commit(on: bool) -> fluvius_sql::GroupCommit {
    if on {
        fluvius_sql::GroupCommit::default()
    } else {
        fluvius_sql::GroupCommit::off()
    }
}

impl PostgresSchemas {
    /// `None` (after printing why) when `FLUVIUS_TEST_PG_URL` is unset.
    pub fn from_env(group_commit: bool) -> Option<Self> {
        match std::env::var("FLUVIUS_TEST_PG_URL") {
            Ok(url) if !url.trim().is_empty() => Some(Self {
                url,
                schemas: std::sync::Mutex::new(Vec::new()),
                group_commit,
                via: None,
                ping_idle_for: None,
            }),
            _ => None,
        }
    }

    /// Drop every schema this opener created.
    pub async fn cleanup(&self) {
        use sqlx::{Connection, Executor};
        let schemas = std::mem::take(&mut *self.schemas.lock().expect("schemas"));
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await {
            for schema in schemas {
                let _ = conn
                    .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                    .await;
            }
            let _ = conn.close().await;
        }
    }
}

impl Opener for PostgresSchemas {
    fn label(&self) -> String {
        format!(
            "PostgreSQL (FLUVIUS_TEST_PG_URL, server defaults{}), group commit {}{}",
            self.via.map_or(String::new(), |(_, adds)| format!(", {adds}")),
            if self.group_commit { "on" } else { "off" },
            self.ping_idle_for.map_or(String::new(), |idle| format!(
                ", connections checked after {idle:?} idle"
            ))
        )
    }
    fn open(&self) -> BoxFuture<'_, Arc<dyn LogStore>> {
        let schema = format!("fluvius_bench_{}", Uuid::new_v4().simple());
        let group_commit = group_commit(self.group_commit);
        self.schemas.lock().expect("schemas").push(schema.clone());
        Box::pin(async move {
            let options = match self.via {
                None => fluvius_sql::PostgresLogStore::builder(&self.url),
                Some((proxy, _)) => {
                    let direct =
                        sqlx::postgres::PgConnectOptions::from_str(&self.url).expect("a PostgreSQL URL");
                    fluvius_sql::PostgresOptions::from_connect_options(
                        direct.host(&proxy.ip().to_string()).port(proxy.port()),
                    )
                }
            };
            let options = match self.ping_idle_for {
                Some(idle) => options.ping_connections_idle_for(idle),
                None => options,
            };
            let store = options
                .schema(&schema)
                .max_connections(16)
                .group_commit(group_commit)
                .connect()
                .await
                .expect("connect PostgreSQL");
            Arc::new(store) as Arc<dyn LogStore>
        })
    }
}

/// Commands per second at concurrency 1 and 64 (creates with caller-chosen ids), group commit
/// off and on, with the PostgreSQL server of `FLUVIUS_TEST_PG_URL` behind a [`DelayProxy`]
/// adding `delay` (plus up to 1 ms: tokio's timer) each way, as if it ran on another machine.
/// Concurrency 1 runs a tenth of `commands`. Nothing when the URL is unset or names no TCP
/// address.
pub async fn over_network(rows: &mut Vec<Row>, summary: &mut Vec<Row>, delay: Duration, commands: usize) {
    let Some(direct) = PostgresSchemas::from_env(true) else {
        return;
    };
    let Ok(options) = sqlx::postgres::PgConnectOptions::from_str(&direct.url) else {
        return;
    };
    let Some(server) = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
    else {
        return;
    };
    let proxy = DelayProxy::start(server, delay)
        .await
        .expect("start the delaying proxy");
    let adds: &'static str = Box::leak(
        format!(
            "through a proxy adding {}–{} ms each way",
            delay.as_secs_f64() * 1e3,
            delay.as_secs_f64() * 1e3 + 1.0
        )
        .into_boxed_str(),
    );
    // Group commit off, on, and on with connections checked only after a second idle.
    let mut at = [[0.0; 2]; 3];
    let configurations = [(false, None), (true, None), (true, Some(Duration::from_secs(1)))];
    for (on, (group_commit, ping_idle_for)) in configurations.into_iter().enumerate() {
        let opener = PostgresSchemas {
            group_commit,
            via: Some((proxy.addr, adds)),
            ping_idle_for,
            ..PostgresSchemas::from_env(group_commit).expect("checked above")
        };
        let section: &'static str = Box::leak(opener.label().into_boxed_str());
        for (i, concurrency) in [1, 64].into_iter().enumerate() {
            let total = if concurrency == 1 { commands / 10 } else { commands };
            let (per_s, value) = creates(&opener, concurrency, total, fluvius_benches::create_fresh).await;
            at[on][i] = per_s;
            rows.push(Row {
                section,
                name: format!("process_command, distinct aggregates, concurrency {concurrency}"),
                value,
                ratio: format!("{:.2}x concurrency 1", per_s / at[on][0]),
            });
        }
        opener.cleanup().await;
    }
    let section = "summary: group commit (distinct aggregates, commands/s)";
    for (on, label) in [(1, "on"), (0, "off")] {
        summary.push(Row {
            section,
            name: format!("PostgreSQL {adds}: concurrency 64 vs 1, group commit {label}"),
            value: format!("{:.0} vs {:.0} cmds/s", at[on][1], at[on][0]),
            ratio: format!("{:.2}x", at[on][1] / at[on][0]),
        });
    }
    summary.push(Row {
        section,
        name: format!("PostgreSQL {adds}: group commit on vs off, concurrency 64"),
        value: format!("{:.0} vs {:.0} cmds/s", at[1][1], at[0][1]),
        ratio: format!("{:.2}x", at[1][1] / at[0][1]),
    });
    for (i, concurrency) in [1, 64].into_iter().enumerate() {
        summary.push(Row {
            section,
            name: format!(
                "PostgreSQL {adds}, group commit on: connections checked after 1 s idle vs before every use, concurrency {concurrency}"
            ),
            value: format!("{:.0} vs {:.0} cmds/s", at[2][i], at[1][i]),
            ratio: format!("{:.2}x", at[2][i] / at[1][i]),
        });
    }
}
