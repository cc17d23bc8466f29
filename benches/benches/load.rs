//! Load time of one aggregate against the length of its history, with and without snapshots.
//!
//! ```text
//! cargo bench -p fluvius-benches --bench load
//! FLUVIUS_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p fluvius-benches --bench load
//! ```
//!
//! For each store (memory, SQLite on a file in a temp dir, PostgreSQL in a fresh schema when
//! `FLUVIUS_TEST_PG_URL` is set) and each history length (10, 1 000, 100 000 events, and
//! 100 099 for the longest tail a snapshot every 100 leaves), one
//! aggregate's history is written in appends of 100 events, each carrying the snapshot the
//! pipeline would take with `snapshot_every = 100` (at every multiple of 100). The same history
//! is then loaded by two domains: one with snapshots every 100 events (latest snapshot + the
//! events after it), one with snapshots off (fold every event). Each figure is the median of
//! several loads after one warm-up load; both loads are checked to give the same state.
//! Prints a markdown table, then the ratio without / with snapshots at 100 000 events.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use fluvius_core::prelude::*;
use fluvius_core::{AppendRequest, Metadata, Payload, Snapshot};
use fluvius_sql::{PostgresLogStore, SqliteLogStore, Synchronous};
use serde::{Deserialize, Serialize};

/// The history lengths; the last one leaves 99 events after the latest snapshot (the worst
/// case of a snapshot every 100).
const SIZES: [u64; 4] = [10, 1_000, 100_000, 100_099];
const SNAPSHOT_EVERY: u64 = 100;
/// Events per append while writing the history.
const BATCH: u64 = 100;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    total: i64,
    entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Posted {
    amount: i64,
}

#[aggregate(resource = "ledger")]
impl Ledger {
    #[action(evt_key = "posted")]
    fn post(&self, amount: i64) -> Result<Posted, DomainError> {
        Ok(Posted { amount })
    }

    #[apply("posted")]
    fn posted(&mut self, e: Posted) {
        self.total += e.amount;
        self.entries += 1;
    }
}

fn event(id: AggregateId, version: u64, timestamp: DateTime<Utc>) -> Event {
    let command_id = uuid::Uuid::now_v7();
    Event {
        id: uuid::Uuid::now_v7(),
        position: 0,
        namespace: "bench".into(),
        resource: "ledger".into(),
        aggregate_id: id,
        aggregate_version: version,
        key: "posted".into(),
        schema_version: 1,
        payload: Payload::from_json_unchecked(format!(r#"{{"amount":{}}}"#, version % 97)),
        args: Payload::from_json_unchecked(format!(r#"{{"amount":{}}}"#, version % 97)),
        command_id,
        command_name: "post".into(),
        timestamp,
        metadata: Metadata {
            correlation_id: command_id,
            causation_id: command_id,
            user_id: Some("bench-user".into()),
            tenant_id: None,
            extra: Default::default(),
        },
    }
}

/// Write a history of `n` events in appends of [`BATCH`], with the snapshots the pipeline
/// takes every [`SNAPSHOT_EVERY`] events; returns the final state.
async fn write_history(store: &dyn LogStore, id: AggregateId, n: u64) -> Ledger {
    let start: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().expect("a timestamp");
    let mut state = Ledger::default();
    let mut version = 0;
    while version < n {
        let count = BATCH.min(n - version);
        let events: Vec<Event> = (version + 1..=version + count)
            .map(|v| event(id, v, start + TimeDelta::milliseconds(v as i64)))
            .collect();
        for e in &events {
            state.total += (e.aggregate_version % 97) as i64;
            state.entries += 1;
        }
        let last = events.last().expect("a batch is not empty");
        let snapshot =
            (last.aggregate_version / SNAPSHOT_EVERY > version / SNAPSHOT_EVERY).then(|| Snapshot {
                resource: "ledger".into(),
                aggregate_id: id,
                version: last.aggregate_version,
                state_version: 1,
                state: Payload::from_value(&state).expect("the state serializes"),
                timestamp: last.timestamp,
            });
        let mut request = AppendRequest::new("ledger", id, version, events);
        request.snapshot = snapshot;
        store.append(request).await.expect("append a batch");
        version += count;
    }
    state
}

async fn domain(store: Arc<dyn LogStore>, snapshot_every: u64) -> Domain {
    Domain::builder()
        .aggregate::<Ledger>()
        .snapshot_every::<Ledger>(snapshot_every)
        .logstore_arc(store)
        .without_global_handlers()
        .build()
        .await
        .expect("domain builds")
}

/// The median time of one `load`, after a warm-up load that checks the state.
async fn time_load(domain: &Domain, id: AggregateId, expected: &Ledger) -> Duration {
    let state: Ledger = domain.load(id).await.expect("load");
    assert_eq!(&state, expected, "the load folds the whole history");
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 5 || (samples.len() < 1000 && started.elapsed() < Duration::from_secs(2)) {
        let t = Instant::now();
        let state: Ledger = domain.load(id).await.expect("load");
        samples.push(t.elapsed());
        std::hint::black_box(state);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn fmt(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

struct Row {
    store: &'static str,
    events: u64,
    without: Duration,
    with: Duration,
}

async fn bench_store(name: &'static str, store: Arc<dyn LogStore>, rows: &mut Vec<Row>) {
    let with = domain(store.clone(), SNAPSHOT_EVERY).await;
    let without = domain(store.clone(), 0).await;
    for n in SIZES {
        let id = AggregateId::new();
        let written = Instant::now();
        let expected = write_history(store.as_ref(), id, n).await;
        eprintln!("{name}: wrote {n} events in {}", fmt(written.elapsed()));
        let t_without = time_load(&without, id, &expected).await;
        let t_with = time_load(&with, id, &expected).await;
        rows.push(Row {
            store: name,
            events: n,
            without: t_without,
            with: t_with,
        });
    }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvius-bench-load-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

async fn drop_schema(store: &PostgresLogStore, schema: &str) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    if let Err(e) = sqlx::query(&sql).execute(store.pool()).await {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();

    bench_store("memory", Arc::new(MemoryLogStore::new()), &mut rows).await;

    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("load.db").display());
    let sqlite = SqliteLogStore::builder(url)
        .synchronous(Synchronous::Normal)
        .open()
        .await
        .expect("open SQLite");
    bench_store("SQLite (file)", Arc::new(sqlite.clone()), &mut rows).await;
    sqlite.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    match std::env::var("FLUVIUS_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let schema = format!("fluvius_bench_load_{}", uuid::Uuid::new_v4().simple());
            let pg = PostgresLogStore::builder(url)
                .schema(&schema)
                .connect()
                .await
                .expect("connect PostgreSQL");
            bench_store("PostgreSQL", Arc::new(pg.clone()), &mut rows).await;
            drop_schema(&pg, &schema).await;
            pg.close().await;
        }
        _ => eprintln!(
            "PostgreSQL skipped: set FLUVIUS_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)"
        ),
    }

    println!();
    println!(
        "| store | events | load, no snapshots | load, snapshot every {SNAPSHOT_EVERY} | without / with |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1}× |",
            r.store,
            r.events,
            fmt(r.without),
            fmt(r.with),
            r.without.as_secs_f64() / r.with.as_secs_f64()
        );
    }
    println!();
    for r in rows.iter().filter(|r| r.events == 100_000) {
        println!(
            "{}: at 100 000 events, a load without snapshots takes {:.0}× as long as with a snapshot every {SNAPSHOT_EVERY}",
            r.store,
            r.without.as_secs_f64() / r.with.as_secs_f64()
        );
    }
}
