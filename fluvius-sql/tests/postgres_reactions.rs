//! Durable reactions on PostgreSQL: two app instances (two domains, two pools, one schema)
//! share the handlers — every event is handled, no handler ever runs in both instances at
//! once — and when one instance dies (its runtime stops without releasing anything), the
//! other takes its handlers over once the leases expire, from the stored checkpoints. A
//! handler call that lasts several leases keeps its claim (renewed in the background) and is
//! never taken over.
//!
//! Needs `FLUVIUS_TEST_PG_URL` (see `postgres.rs`); prints "NOT RUN" and returns without it.
#![cfg(feature = "postgres")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluvius_core::{AggregateId, Command, DispatchOptions, Domain, Event, HandlerError, LogStore};
use fluvius_sql::PostgresLogStore;
use serde_json::json;
use uuid::Uuid;

use common::counter::Counter;
use common::pg::{self, SchemaGuard};

const HANDLERS: [&str; 4] = ["h1", "h2", "h3", "h4"];
const LEASE: Duration = Duration::from_millis(1500);

/// What every handler invocation recorded, across both instances.
#[derive(Default)]
struct Journal {
    /// (handler, instance, event id), in invocation order.
    calls: Mutex<Vec<(&'static str, &'static str, Uuid)>>,
    /// Per handler: an invocation is running.
    running: HashMap<&'static str, AtomicBool>,
    /// Invocations that started while another of the same handler was running.
    overlaps: AtomicUsize,
}

impl Journal {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            running: HANDLERS.iter().map(|h| (*h, AtomicBool::new(false))).collect(),
            ..Self::default()
        })
    }

    fn instances_of(&self, handler: &str) -> HashSet<&'static str> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.0 == handler).map(|c| c.1).collect()
    }

    fn seen(&self, handler: &str) -> HashSet<Uuid> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.0 == handler).map(|c| c.2).collect()
    }
}

async fn instance(url: &str, schema: &str, name: &'static str, journal: Arc<Journal>) -> Domain {
    // Long enough for a concurrent invocation in the other instance to overlap.
    instance_with(url, schema, name, journal, LEASE, Duration::from_millis(2)).await
}

/// An instance whose claims last `lease` and whose handler calls each take `call`.
async fn instance_with(
    url: &str,
    schema: &str,
    name: &'static str,
    journal: Arc<Journal>,
    lease: Duration,
    call: Duration,
) -> Domain {
    let store = PostgresLogStore::builder(url)
        .schema(schema)
        .max_connections(6)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {}", e.full_message()));
    let mut builder = Domain::builder()
        .namespace("reactions")
        .aggregate::<Counter>()
        .logstore(store)
        .without_global_handlers()
        .dispatch(
            DispatchOptions::default()
                .instance_id(name)
                .lease(lease)
                .poll_interval(Duration::from_millis(50)),
        );
    for handler in HANDLERS {
        let journal = journal.clone();
        builder = builder.handler(handler, "*", move |event: Arc<Event>| {
            let journal = journal.clone();
            async move {
                if journal.running[handler].swap(true, Ordering::SeqCst) {
                    journal.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                journal.calls.lock().unwrap().push((handler, name, event.id));
                tokio::time::sleep(call).await;
                journal.running[handler].store(false, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        });
    }
    builder.build().await.expect("the domain builds")
}

/// Wait (generously) until `owner` holds a live claim on some handler.
async fn holds_a_claim(url: &str, schema: &str, owner: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let query = format!(
        "SELECT count(*) FROM \"{schema}\".fluvius_checkpoints WHERE owner = $1 AND lease_until > now()"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: i64 = sqlx::query_scalar(&query)
            .bind(owner)
            .fetch_one(&mut conn)
            .await
            .expect("count claims");
        if held > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{owner} never claimed a handler");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn add(domain: &Domain, id: AggregateId) {
    domain
        .process_command(Command::new("counter", id, "add", json!({ "by": 1 })))
        .await
        .expect("add");
}

/// Wait (generously) until the log shows `expected` events (a commit shows once every
/// transaction that started before it has ended, in other tests too) and every handler has
/// seen each of them.
async fn all_seen(store: &dyn LogStore, journal: &Journal, expected: usize) -> HashSet<Uuid> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log: HashSet<Uuid> = store
            .read_all(0, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        if log.len() >= expected {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events show",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for handler in HANDLERS {
        while !log.is_subset(&journal.seen(handler)) {
            assert!(Instant::now() < deadline, "{handler} did not see every event");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    log
}

#[test]
fn two_instances_share_handlers_one_at_a_time_and_take_over_when_one_dies() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = main.block_on(pg::url()) else {
        return;
    };
    let guard = SchemaGuard::fresh(&url);
    let schema = guard.schema.clone();
    let journal = Journal::new();
    // Instance A lives on a runtime of its own, so that it can "die": the runtime stops, its
    // tasks vanish mid-flight, nothing is released.
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = runtime_a.block_on(instance(&url, &schema, "a", journal.clone()));
    // Let A claim before B starts (on a busy machine its tasks may be slow to run).
    main.block_on(holds_a_claim(&url, &schema, "a"));
    let b = main.block_on(instance(&url, &schema, "b", journal.clone()));

    main.block_on(async {
        // Writers in both instances, each on aggregates of its own (no conflict retries).
        let ids: Vec<AggregateId> = (0..4).map(|_| AggregateId::new()).collect();
        let writer_a = {
            let (a, ids) = (a.clone(), ids.clone());
            runtime_a.spawn(async move {
                for i in 0..60 {
                    add(&a, ids[i % 2]).await;
                }
            })
        };
        for i in 0..60 {
            add(&b, ids[2 + i % 2]).await;
        }
        writer_a.await.unwrap();
        let log = all_seen(b.logstore().as_ref(), &journal, 120).await;
        assert_eq!(log.len(), 120);
        b.wait_idle().await;
        assert_eq!(
            journal.overlaps.load(Ordering::SeqCst),
            0,
            "a handler ran in both instances at once"
        );
        for handler in HANDLERS {
            assert_eq!(
                journal.instances_of(handler).len(),
                1,
                "{handler}: one instance holds a handler while both are alive"
            );
        }
    });

    // A dies: no release, its leases run out.
    let a_held: Vec<&str> = HANDLERS
        .iter()
        .copied()
        .filter(|h| journal.instances_of(h).contains("a"))
        .collect();
    assert!(!a_held.is_empty(), "a started first and holds handlers");
    std::mem::forget(a);
    runtime_a.shutdown_background();

    main.block_on(async {
        let id = AggregateId::new();
        for _ in 0..20 {
            add(&b, id).await;
        }
        let log = all_seen(b.logstore().as_ref(), &journal, 140).await;
        assert_eq!(log.len(), 140);
        b.wait_idle().await;
        assert_eq!(journal.overlaps.load(Ordering::SeqCst), 0);
        for handler in HANDLERS {
            let checkpoint = b.handler_checkpoint(handler).await.unwrap().unwrap();
            let head = b.logstore().head_position().await.unwrap();
            assert_eq!(checkpoint, head, "{handler}");
        }
        // The events after A's death went to B, including A's former handlers.
        let after: HashSet<Uuid> = b
            .logstore()
            .read_all(0, usize::MAX)
            .await
            .unwrap()
            .iter()
            .skip(120)
            .map(|e| e.id)
            .collect();
        let calls = journal.calls.lock().unwrap();
        for handler in &a_held {
            assert!(
                calls
                    .iter()
                    .filter(|c| c.0 == *handler && after.contains(&c.2))
                    .all(|c| c.1 == "b"),
                "{handler} was taken over by b"
            );
        }
        common::announce(&format!(
            "two instances: a held {a_held:?}, b took them over; {} invocations in all",
            calls.len()
        ));
    });
}

/// Every handler call lasts three leases: the holder renews its claim in the background while
/// the call runs, so the other instance never takes a handler over (no call of a handler overlaps
/// another, none is repeated) and every event is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_call_longer_than_the_lease_is_never_taken_over() {
    let Some(url) = pg::url().await else {
        return;
    };
    let guard = SchemaGuard::fresh(&url);
    let schema = guard.schema.clone();
    let lease = Duration::from_millis(300);
    let call = lease * 3;
    let journal = Journal::new();
    let a = instance_with(&url, &schema, "a", journal.clone(), lease, call).await;
    let b = instance_with(&url, &schema, "b", journal.clone(), lease, call).await;
    let ids = [AggregateId::new(), AggregateId::new()];
    for i in 0..4 {
        let writer = if i % 2 == 0 { &a } else { &b };
        add(writer, ids[i % 2]).await;
    }
    let log = all_seen(a.logstore().as_ref(), &journal, 4).await;
    assert_eq!(log.len(), 4);
    for domain in [&a, &b] {
        tokio::time::timeout(Duration::from_secs(60), domain.wait_idle())
            .await
            .expect("the handlers never caught up");
    }
    assert_eq!(
        journal.overlaps.load(Ordering::SeqCst),
        0,
        "a handler ran in both instances at once"
    );
    let head = a.logstore().head_position().await.unwrap();
    for handler in HANDLERS {
        let calls: Vec<Uuid> = {
            let calls = journal.calls.lock().unwrap();
            calls.iter().filter(|c| c.0 == handler).map(|c| c.2).collect()
        };
        assert_eq!(
            calls.len(),
            log.len(),
            "{handler}: each event once, none taken over"
        );
        assert_eq!(
            journal.instances_of(handler).len(),
            1,
            "{handler} stayed where it was"
        );
        assert_eq!(
            a.handler_checkpoint(handler).await.unwrap(),
            Some(head),
            "{handler}"
        );
    }
}

/// A handler in one instance is woken by `LISTEN/NOTIFY` when another instance appends: its
/// poll interval (and lease) are far longer than the deadline. Prints the lag from the append's
/// return to the handler's invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_handler_when_another_instance_appends() {
    let Some(url) = pg::url().await else {
        return;
    };
    let guard = SchemaGuard::fresh(&url);
    let schema = guard.schema.clone();
    let connect = || async {
        PostgresLogStore::builder(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect: {}", e.full_message()))
    };
    let writer = common::counter::domain(connect().await).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Uuid, Instant)>();
    let reader = Domain::builder()
        .namespace("counter-test")
        .aggregate::<Counter>()
        .logstore(connect().await)
        .without_global_handlers()
        .dispatch(
            DispatchOptions::default()
                .lease(Duration::from_secs(600))
                .poll_interval(Duration::from_secs(200)),
        )
        .handler("listener", "*", move |event: Arc<Event>| {
            let _ = tx.send((event.id, Instant::now()));
            async { Ok::<(), HandlerError>(()) }
        })
        .build()
        .await
        .unwrap();
    // Let the listener connect and the handler go idle.
    reader.wait_idle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut lags = Vec::new();
    for _ in 0..20 {
        let resp = writer
            .process_command(Command::new(
                "counter",
                AggregateId::new(),
                "add",
                json!({ "by": 1 }),
            ))
            .await
            .unwrap();
        let returned = Instant::now();
        let (id, seen_at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("woken by NOTIFY well before the 200 s poll")
            .unwrap();
        assert_eq!(id, resp.events[0].id);
        lags.push(seen_at.saturating_duration_since(returned));
    }
    lags.sort();
    common::announce(&format!(
        "PostgreSQL append -> handler in another instance (LISTEN/NOTIFY): median {:?}, max {:?}",
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    ));
}

/// The notification is sent by the store after the append commits, never from inside the
/// append's transaction: PostgreSQL serializes the commits of notifying transactions across the
/// cluster. So the migrated events table has no trigger (migration `0004` dropped the one that
/// notified).
#[tokio::test]
async fn appends_do_not_notify_inside_their_transaction() {
    let Some(url) = pg::url().await else {
        return;
    };
    let guard = SchemaGuard::fresh(&url);
    let store = PostgresLogStore::builder(&url)
        .schema(&guard.schema)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {}", e.full_message()));
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger \
         WHERE tgrelid = 'fluvius_events'::regclass AND NOT tgisinternal",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(triggers, Vec::<String>::new());
    store.close().await;
}

/// Counts events per aggregate in a table of the store's schema, with its position moved in the
/// same transaction ([`fluvius_sql::postgres::advance_projection`]).
struct PerAggregate {
    store: PostgresLogStore,
}

fn pg_err(e: impl std::fmt::Display) -> fluvius_core::Error {
    fluvius_core::Error::store("postgres", e.to_string(), None)
}

impl fluvius_core::Projection for PerAggregate {
    fn name(&self) -> &str {
        "per-aggregate"
    }

    fn position(&self) -> fluvius_core::BoxFuture<'_, fluvius_core::Result<u64>> {
        Box::pin(async move {
            let cps = self.store.checkpoints().unwrap();
            Ok(cps.checkpoint("per-aggregate").await?.unwrap_or(0))
        })
    }

    fn apply<'a>(
        &'a self,
        from: u64,
        events: &'a [Event],
    ) -> fluvius_core::BoxFuture<'a, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(pg_err)?;
            for e in events {
                sqlx::query(
                    "INSERT INTO rm_per_aggregate (aggregate_id, events) VALUES ($1, 1) \
                     ON CONFLICT (aggregate_id) DO UPDATE SET events = rm_per_aggregate.events + 1",
                )
                .bind(e.aggregate_id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            }
            let to = events.last().map_or(from, |e| e.position);
            fluvius_sql::postgres::advance_projection(&mut tx, "per-aggregate", from, to).await?;
            tx.commit().await.map_err(pg_err)
        })
    }

    fn clear(&self) -> fluvius_core::BoxFuture<'_, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(pg_err)?;
            sqlx::query("DELETE FROM rm_per_aggregate")
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            fluvius_sql::postgres::reset_projection(&mut tx, "per-aggregate").await?;
            tx.commit().await.map_err(pg_err)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_projection_commits_its_position_with_its_rows_and_rebuilds() {
    let Some(url) = pg::url().await else {
        return;
    };
    let guard = SchemaGuard::fresh(&url);
    let schema = guard.schema.clone();
    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {}", e.full_message()));
    sqlx::query("CREATE TABLE rm_per_aggregate (aggregate_id uuid PRIMARY KEY, events bigint NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let domain = Domain::builder()
        .namespace("counter-test")
        .aggregate::<Counter>()
        .logstore(store.clone())
        .without_global_handlers()
        .dispatch(
            DispatchOptions::default()
                .page_size(5)
                .poll_interval(Duration::from_millis(50)),
        )
        .projection(PerAggregate { store: store.clone() })
        .build()
        .await
        .unwrap();
    let ids: Vec<AggregateId> = (0..3).map(|_| AggregateId::new()).collect();
    for i in 0..17 {
        add(&domain, ids[i % 3]).await;
    }
    domain.wait_idle().await;
    let counts = || async {
        let rows: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT aggregate_id, events FROM rm_per_aggregate ORDER BY aggregate_id")
                .fetch_all(store.pool())
                .await
                .unwrap();
        rows
    };
    let live = counts().await;
    assert_eq!(live.iter().map(|r| r.1).sum::<i64>(), 17);
    assert_eq!(live.len(), 3);
    let head = store.head_position().await.unwrap();
    assert_eq!(
        store
            .checkpoints()
            .unwrap()
            .checkpoint("per-aggregate")
            .await
            .unwrap(),
        Some(head)
    );

    domain.rebuild_projection("per-aggregate").await.unwrap();
    domain.wait_idle().await;
    assert_eq!(counts().await, live, "the rebuild equals the live result");
}
