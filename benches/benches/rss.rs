//! Peak resident memory while streaming a long log, in child processes of the report (each
//! starts with a fresh high-water mark): the events of one SQLite file go once through
//! `LogStore::read_all` in pages of 1 000, and once through a SQL projection fed by a
//! `Domain`'s dispatcher (pages of 1 000 as well), which keeps a count per event key in a table
//! and moves its position in the same transaction. Both must stay flat: the peak after a tenth
//! of the events, after half and at the end should be about the same.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fluvius_core::{AggregateId, BoxFuture, DispatchOptions, Domain, Event, LogStore, Projection};
use fluvius_sql::SqliteLogStore;

use super::sql::{read_through, SqliteFiles};
use super::{report_to_parent, run_child, Row};

/// Events per page, for `read_all` and for the dispatcher.
const PAGE: usize = 1_000;
const PROJECTION: &str = "bench-key-counts";

/// How the child streams the log.
const MODES: [(&str, &str); 2] = [
    ("read_all", "LogStore::read_all"),
    (
        "projection",
        "SQL projection via the Domain dispatcher (count per key, position in the same transaction)",
    ),
];

/// Peak resident memory of this process (`VmHWM` in `/proc/self/status`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn store_error(e: impl std::fmt::Display) -> fluvius_core::Error {
    fluvius_core::Error::store("sqlite", e.to_string(), None)
}

/// The peak RSS when the stream first passes a tenth and a half of the log (0 until then).
struct Marks {
    total: usize,
    tenth: AtomicU64,
    half: AtomicU64,
}

impl Marks {
    fn new(total: usize) -> Self {
        Self {
            total,
            tenth: AtomicU64::new(0),
            half: AtomicU64::new(0),
        }
    }

    /// `events` of the log have gone through.
    fn passed(&self, events: usize) {
        for (share, mark) in [(10, &self.tenth), (2, &self.half)] {
            if events >= self.total / share && mark.load(Ordering::Relaxed) == 0 {
                mark.store(peak_rss_kib(), Ordering::Relaxed);
            }
        }
    }
}

/// A read model that stays small however long the log: events counted per key, in a table of
/// the same SQLite file, with the position moved in the same transaction.
struct KeyCounts {
    store: SqliteLogStore,
    marks: Arc<Marks>,
}

impl Projection for KeyCounts {
    fn name(&self) -> &str {
        PROJECTION
    }

    fn position(&self) -> BoxFuture<'_, fluvius_core::Result<u64>> {
        Box::pin(async move {
            let checkpoints = self.store.checkpoints().expect("SQLite keeps checkpoints");
            Ok(checkpoints.checkpoint(PROJECTION).await?.unwrap_or(0))
        })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for event in events {
                *counts.entry(event.key.as_str()).or_default() += 1;
            }
            let mut tx = self.store.pool().begin().await.map_err(store_error)?;
            for (key, n) in counts {
                sqlx::query(
                    "INSERT INTO bench_key_counts (key, events) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET events = events + excluded.events",
                )
                .bind(key)
                .bind(n)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            }
            let to = events.last().map_or(from, |e| e.position);
            fluvius_sql::sqlite::advance_projection(&mut tx, PROJECTION, from, to).await?;
            tx.commit().await.map_err(store_error)?;
            // The log's positions are 1..=total: the position is the count so far.
            self.marks.passed(to as usize);
            Ok(())
        })
    }

    fn clear(&self) -> BoxFuture<'_, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(store_error)?;
            sqlx::query("DELETE FROM bench_key_counts")
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            fluvius_sql::sqlite::reset_projection(&mut tx, PROJECTION).await?;
            tx.commit().await.map_err(store_error)
        })
    }
}

/// `read_all` in pages until the end: the events read.
async fn through_read_all(store: &SqliteLogStore, marks: &Marks) -> usize {
    read_through(store, PAGE, |read| marks.passed(read)).await.0
}

/// The projection from position 0 until `wait_idle`: the events it counted.
async fn through_projection(store: &SqliteLogStore, marks: Arc<Marks>) -> usize {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_key_counts (key TEXT PRIMARY KEY, events INTEGER NOT NULL)",
    )
    .execute(store.pool())
    .await
    .expect("create the projection's table");
    let domain = Domain::builder()
        .logstore(store.clone())
        .without_global_handlers()
        .dispatch(DispatchOptions::default().page_size(PAGE))
        .projection(KeyCounts {
            store: store.clone(),
            marks,
        })
        .build()
        .await
        .expect("domain with the projection");
    domain.wait_idle().await;
    let (counted,): (i64,) = sqlx::query_as("SELECT COALESCE(SUM(events), 0) FROM bench_key_counts")
        .fetch_one(store.pool())
        .await
        .expect("read the projection");
    counted as usize
}

/// In a child process: stream every event of the SQLite database at `url` in `mode`, and
/// report the peak RSS after opening, after a tenth and a half of the events, and at the end.
pub async fn child(url: &str, total: usize, mode: &str) {
    let store = SqliteLogStore::open(url).await.expect("open SQLite");
    let opened = peak_rss_kib();
    let marks = Arc::new(Marks::new(total));
    let start = Instant::now();
    let events = match mode {
        "read_all" => through_read_all(&store, &marks).await,
        "projection" => through_projection(&store, marks.clone()).await,
        other => panic!("unknown RSS mode {other}"),
    };
    let secs = start.elapsed().as_secs_f64();
    report_to_parent(&[
        ("opened", opened as f64),
        ("tenth", marks.tenth.load(Ordering::Relaxed) as f64),
        ("half", marks.half.load(Ordering::Relaxed) as f64),
        ("end", peak_rss_kib() as f64),
        ("events", events as f64),
        ("secs", secs),
    ]);
}

/// Fill an SQLite file with `total` events (batches of 1 000, `synchronous = NORMAL`: the fill
/// is not measured), then stream them in a child process per mode and report its peak RSS.
pub async fn measure(rows: &mut Vec<Row>, files: &SqliteFiles, total: usize) {
    let url = format!("sqlite://{}", files.dir().join("rss.db").display());
    {
        let store = SqliteLogStore::builder(&url)
            .synchronous(fluvius_sql::Synchronous::Normal)
            .open()
            .await
            .expect("open SQLite");
        let mut written = 0;
        while written < total {
            let n = (total - written).min(PAGE);
            store
                .append(fluvius_core::testing::request(
                    "rss",
                    AggregateId::new(),
                    0,
                    n as u64,
                ))
                .await
                .expect("append");
            written += n;
        }
        store.close().await;
    }
    let section = "memory: peak RSS streaming the log (SQLite file, child process, pages of 1 000)";
    for (mode, what) in MODES {
        let name = format!(
            "{what}: peak RSS (VmHWM) after open / {} / {} / all {total} events",
            total / 10,
            total / 2
        );
        let (value, ratio) = match run_child(&["rss", &url, &total.to_string(), mode]) {
            Ok(r) => (
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} MiB ({:.0} events in {:.1} s, {:.0} events/s)",
                    r.get("opened") / 1024.0,
                    r.get("tenth") / 1024.0,
                    r.get("half") / 1024.0,
                    r.get("end") / 1024.0,
                    r.get("events"),
                    r.get("secs"),
                    r.get("events") / r.get("secs")
                ),
                format!(
                    "growth over the last 90%: {:.1} MiB ({:.2}x the peak at 10%); over the last 50%: {:.1} MiB",
                    (r.get("end") - r.get("tenth")).max(0.0) / 1024.0,
                    r.get("end") / r.get("tenth").max(1.0),
                    (r.get("end") - r.get("half")).max(0.0) / 1024.0
                ),
            ),
            Err(e) => (format!("child failed: {e}"), String::new()),
        };
        rows.push(Row {
            section,
            name,
            value,
            ratio,
        });
    }
}
