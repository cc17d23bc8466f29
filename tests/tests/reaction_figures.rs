//! Figures for durable reactions (not a pass/fail test; run with
//! `cargo test --release -p fluvius-tests --test reaction_figures -- --ignored --nocapture`):
//! the lag from the start of `process_command` to the handler's invocation, and the catch-up
//! rate of a new handler over an existing log, on the memory store and on an SQLite file.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_core::prelude::*;
use fluvius_sql::SqliteLogStore;
use fluvius_tests::*;

fn report(line: String) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn lag(store: Arc<dyn LogStore>, label: &str) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let domain = builder()
        .logstore_arc(store)
        .handler("lag", "money-deposited", move |_e: Arc<Event>| {
            let _ = tx.send(Instant::now());
            async { Ok(()) }
        })
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 0).await;
    let mut lags = Vec::new();
    for i in 0..300 {
        let start = Instant::now();
        domain
            .process_command(Account::deposit_command(id, 1 + i % 3))
            .await
            .unwrap();
        let seen = rx.recv().await.unwrap();
        lags.push(seen - start);
    }
    lags.sort();
    report(format!(
        "{label}: command start -> handler: median {:?}, p99 {:?}",
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100]
    ));
}

async fn catch_up(store: Arc<dyn LogStore>, label: &str, events: u64) {
    let mut written = 0;
    while written < events {
        let id = AggregateId::new();
        let events = (1..=100u64)
            .map(|v| {
                let mut e = Event::example();
                e.resource = "account".into();
                e.aggregate_id = id;
                e.aggregate_version = v;
                e
            })
            .collect();
        let request = fluvius_core::AppendRequest::new("account", id, 0, events);
        store.append(request).await.unwrap();
        written += 100;
    }
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let domain = builder()
        .logstore_arc(store)
        .handler("catch-up", "*", {
            let count = count.clone();
            move |_e: Arc<Event>| {
                count.fetch_add(1, Ordering::Relaxed);
                async { Ok(()) }
            }
        })
        .build()
        .await
        .unwrap();
    domain.wait_idle().await;
    let elapsed = started.elapsed();
    assert_eq!(count.load(Ordering::Relaxed), events);
    report(format!(
        "{label}: catch-up of {events} events: {:?} ({:.0} events/s)",
        elapsed,
        events as f64 / elapsed.as_secs_f64().max(Duration::from_micros(1).as_secs_f64())
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run on demand"]
async fn reaction_figures() {
    lag(Arc::new(MemoryLogStore::new()), "memory").await;
    catch_up(Arc::new(MemoryLogStore::new()), "memory", 50_000).await;
    let dir = std::env::temp_dir().join(format!("fluvius-figures-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.join(name).display());
    lag(
        Arc::new(SqliteLogStore::open(&url("lag.db")).await.unwrap()),
        "sqlite",
    )
    .await;
    catch_up(
        Arc::new(SqliteLogStore::open(&url("catchup.db")).await.unwrap()),
        "sqlite",
        20_000,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
