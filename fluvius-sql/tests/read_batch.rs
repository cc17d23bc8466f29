//! Batched stream reads, on SQLite and on PostgreSQL: concurrent whole-stream reads answered by
//! one query each batch return exactly what the same reads return one by one, a read racing
//! appends sees a prefix of its stream, and a failing batch query fails every read of it with
//! the store error.
//!
//! To make a batch form for sure, a test holds the pool's only connection while the reads are
//! queued; the batcher's stats say when they all wait, and that they went in a large batch.
//!
//! The PostgreSQL tests need `FLUVIUS_TEST_PG_URL` (see `postgres.rs`); without it they print
//! "PostgreSQL suite NOT RUN" and pass.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use fluvius_core::testing;
use fluvius_core::{AggregateId, Event, LogStore, StreamQuery};
use fluvius_sql::ReadBatchStats;
use uuid::Uuid;

use common::wait_for;

/// What a comparison looks at: each event's id and version, in order.
fn ids(events: &[Event]) -> Vec<(Uuid, u64)> {
    events.iter().map(|e| (e.id, e.aggregate_version)).collect()
}

type Streams = Vec<(&'static str, AggregateId)>;

/// 50 streams of lengths 0 to 9 on "thing", and for every fifth aggregate id a stream of
/// another resource ("other") under the same id.
async fn fill<S: LogStore>(store: &S) -> Streams {
    let mut streams = Vec::new();
    for i in 0..50u64 {
        let id = AggregateId::new();
        let length = i % 10;
        if length > 0 {
            store
                .append(testing::request("thing", id, 0, length))
                .await
                .expect("append");
        }
        streams.push(("thing", id));
        if i % 5 == 0 {
            store
                .append(testing::request("other", id, 0, 3))
                .await
                .expect("append");
            streams.push(("other", id));
        }
    }
    streams
}

/// Each stream as read one by one through `single`, a store that does not batch reads.
async fn read_one_by_one<S: LogStore>(
    single: &S,
    streams: &Streams,
) -> BTreeMap<(&'static str, AggregateId), Vec<(Uuid, u64)>> {
    let mut expected = BTreeMap::new();
    for (resource, id) in streams {
        let events = single
            .read_stream(resource, *id, StreamQuery::default())
            .await
            .expect("read");
        assert!(events
            .iter()
            .all(|e| e.resource == *resource && e.aggregate_id == *id));
        expected.insert((*resource, *id), ids(&events));
    }
    assert!(expected.values().any(Vec::is_empty), "some streams are empty");
    assert!(expected.values().any(|e| e.len() > 1), "some streams are long");
    expected
}

/// Read the streams 200 times concurrently through `store`, whose only pooled connection is
/// `held`: the reads queue until it is released, and must then come back as `expected`, in few
/// large batches.
async fn check_batched_reads<S, H>(
    store: Arc<S>,
    stats: fn(&S) -> Option<ReadBatchStats>,
    held: H,
    streams: &Streams,
    expected: &BTreeMap<(&'static str, AggregateId), Vec<(Uuid, u64)>>,
) where
    S: LogStore + 'static,
{
    let before = stats(&store).expect("group commit is on");
    let reads = 200;
    let tasks: Vec<_> = (0..reads)
        .map(|i| {
            let store = store.clone();
            let (resource, id) = streams[(i * 7) % streams.len()];
            tokio::spawn(async move {
                let events = store
                    .read_stream(resource, id, StreamQuery::default())
                    .await
                    .expect("batched read");
                (resource, id, events)
            })
        })
        .collect();
    // Every read is queued, but for the few the readers took before they blocked on the pool
    // and the first ones their callers ran alone (on PostgreSQL the first, blocked on the pool
    // too; on SQLite those that found nothing queued, on the writer's connection).
    wait_for(
        || stats(&store).expect("group commit is on"),
        |s| {
            s.waiting + (s.reads - before.reads) + (s.alone - before.alone) >= reads as u64
                && s.waiting >= 150
        },
    )
    .await;
    drop(held);
    for task in tasks {
        let (resource, id, events) = task.await.expect("read task");
        assert_eq!(ids(&events), expected[&(resource, id)], "{resource}/{id}");
        assert!(events
            .iter()
            .all(|e| e.resource == resource && e.aggregate_id == id));
    }
    let after = stats(&store).expect("group commit is on");
    assert_eq!(
        (after.reads - before.reads) + (after.alone - before.alone),
        reads as u64
    );
    assert_eq!(after.waiting, 0);
    assert!(
        after.largest_batch >= 150,
        "the queued reads went in one batch: {after:?}"
    );
    assert!(after.batches - before.batches < reads as u64);
}

/// 16 streams appended to one event at a time while 32 tasks read them over and over: every
/// read is a prefix of the stream as it ends.
async fn check_reads_racing_appends<S>(store: Arc<S>, stats: fn(&S) -> Option<ReadBatchStats>)
where
    S: LogStore + 'static,
{
    let ids_of: Vec<AggregateId> = (0..16).map(|_| AggregateId::new()).collect();
    let writers: Vec<_> = ids_of
        .iter()
        .map(|&id| {
            let store = store.clone();
            tokio::spawn(async move {
                for version in 0..20 {
                    store
                        .append(testing::request("thing", id, version, 1))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            let id = ids_of[i % ids_of.len()];
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..20 {
                    let events = store
                        .read_stream("thing", id, StreamQuery::default())
                        .await
                        .expect("read");
                    seen.push(events);
                    tokio::task::yield_now().await;
                }
                (id, seen)
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut last = BTreeMap::new();
    for &id in &ids_of {
        let events = store
            .read_stream("thing", id, StreamQuery::default())
            .await
            .expect("read");
        assert_eq!(events.len(), 20);
        last.insert(id, ids(&events));
    }
    for reader in readers {
        let (id, seen) = reader.await.expect("reader");
        let full = &last[&id];
        for events in seen {
            assert!(events
                .iter()
                .all(|e| e.aggregate_id == id && e.resource == "thing"));
            let got = ids(&events);
            assert_eq!(got.as_slice(), &full[..got.len()], "a prefix of {id}");
        }
    }
    let stats = stats(&store).expect("group commit is on");
    assert!(stats.reads + stats.alone >= 32 * 20, "{stats:?}");
}

/// Append a stream to `store` (one pooled connection), drop its events table with
/// `drop_events`, then read the stream eight times concurrently while `hold` holds the pool's
/// connection, so the reads queue: each read fails with the store error of its batch (or, for
/// the one read a PostgreSQL caller may send alone, its own query's error).
async fn check_failing_batch<S, T, H>(
    store: &S,
    stats: impl Fn() -> ReadBatchStats,
    drop_events: impl std::future::Future<Output = sqlx::Result<T>>,
    hold: impl std::future::Future<Output = sqlx::Result<H>>,
) where
    S: LogStore + Clone + 'static,
{
    let before = stats();
    let id = AggregateId::new();
    store
        .append(testing::request("thing", id, 0, 2))
        .await
        .expect("append");
    drop_events.await.expect("drop the events table");
    let held = hold.await.expect("hold the pool");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.read_stream("thing", id, StreamQuery::default()).await })
        })
        .collect();
    wait_for(&stats, |s| {
        s.waiting + (s.reads - before.reads) + (s.alone - before.alone) >= 8
    })
    .await;
    drop(held);
    let mut of_a_batch = 0;
    for task in tasks {
        let result = task.await.expect("read task");
        let error = result.expect_err("the table is gone");
        assert!(matches!(error, fluvius_core::Error::Store { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("read stream"), "{message}");
        assert!(message.contains("fluvius_events"), "{message}");
        if message.contains("stream reads") {
            of_a_batch += 1;
        }
    }
    let after = stats();
    let alone = after.alone - before.alone;
    assert!(alone <= 1, "{after:?}");
    assert_eq!(of_a_batch + alone, 8, "{after:?}");
    assert_eq!(after.reads - before.reads, of_a_batch, "{after:?}");
}

/// Append two streams to `store` (one pooled connection), make the bad one's only row
/// undecodable with `corrupt` (raw SQL), then read both streams eight times concurrently while
/// `hold` holds the pool's connection, so the reads queue and go in a batch: the reads of the
/// good stream get its events, those of the bad one the typed error naming the row.
async fn check_poison_row_in_a_batch<S, T, H, C>(
    store: &S,
    stats: impl Fn() -> ReadBatchStats,
    corrupt: impl FnOnce(u64) -> C,
    hold: impl std::future::Future<Output = sqlx::Result<H>>,
) where
    S: LogStore + Clone + 'static,
    C: std::future::Future<Output = sqlx::Result<T>>,
{
    let before = stats();
    let (good, bad) = (AggregateId::new(), AggregateId::new());
    store
        .append(testing::request("thing", good, 0, 2))
        .await
        .expect("append");
    let poisoned = store
        .append(testing::request("thing", bad, 0, 1))
        .await
        .expect("append")
        .remove(0);
    corrupt(poisoned.position).await.expect("corrupt the row");
    let held = hold.await.expect("hold the pool");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let id = if i % 2 == 0 { good } else { bad };
            tokio::spawn(async move { (id, store.read_stream("thing", id, StreamQuery::default()).await) })
        })
        .collect();
    wait_for(&stats, |s| {
        s.waiting + (s.reads - before.reads) + (s.alone - before.alone) >= 8
    })
    .await;
    drop(held);
    for task in tasks {
        match task.await.expect("read task") {
            (id, Ok(events)) => {
                assert_eq!(id, good, "the bad stream read as {events:?}");
                assert_eq!(events.len(), 2);
            }
            (id, Err(error)) => {
                assert_eq!(id, bad, "the good stream failed: {error:?}");
                assert!(
                    matches!(error, fluvius_core::Error::UndecodableEvent { position, event_id: Some(e), .. }
                        if position == poisoned.position && e == poisoned.id),
                    "{error:?}"
                );
            }
        }
    }
    let after = stats();
    assert!(
        after.reads - before.reads >= 7,
        "the reads went in batches: {after:?}"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use fluvius_sql::{GroupCommit, SqliteLogStore};

    fn url_for(path: &std::path::Path) -> String {
        format!("sqlite://{}", path.join("log.db").display())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_batched_match_reads_one_by_one() {
        let dir = common::temp_dir("read-batch");
        let url = url_for(&dir);
        // One connection: held below, it keeps the readers waiting while the reads queue up.
        let store = SqliteLogStore::builder(url.as_str())
            .max_connections(1)
            .open()
            .await
            .expect("open");
        let streams = fill(&store).await;
        let single = SqliteLogStore::builder(url.as_str())
            .group_commit(GroupCommit::off())
            .open()
            .await
            .expect("open");
        assert_eq!(single.read_batch_stats(), None);
        let expected = read_one_by_one(&single, &streams).await;
        let held = hold_pool_and_writer(&store, &url).await.expect("hold the pool");
        let stats = SqliteLogStore::read_batch_stats;
        check_batched_reads(Arc::new(store), stats, held, &streams, &expected).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Hold the pool's only connection, and the write turn too (else a read finding nothing
    /// queued would run alone, on the writer's connection): a lone append, holding the turn,
    /// waits for SQLite's write lock, taken by another connection. Dropping the guard gives
    /// both back, and the append goes on.
    async fn hold_pool_and_writer(store: &SqliteLogStore, url: &str) -> sqlx::Result<impl Sized + use<>> {
        let pooled = store.pool().acquire().await?;
        let (append, locker) = common::sqlite::hold_write_turn(store, url, "thing").await;
        Ok((pooled, locker, append))
    }

    /// With nothing queued and nobody writing, a read runs on the writer's connection: it
    /// needs no pooled connection (the only one is held here), and it reads what was appended.
    #[tokio::test]
    async fn a_read_with_nothing_queued_runs_on_the_writers_connection() {
        let dir = common::temp_dir("read-on-writer");
        for group_commit in [GroupCommit::default(), GroupCommit::off()] {
            let _ = std::fs::remove_file(dir.join("log.db"));
            let store = SqliteLogStore::builder(url_for(&dir))
                .max_connections(1)
                .group_commit(group_commit)
                .open()
                .await
                .expect("open");
            let id = AggregateId::new();
            store
                .append(testing::request("thing", id, 0, 2))
                .await
                .expect("append");
            let held = store.pool().acquire().await.expect("hold the connection");
            for _ in 0..3 {
                let read = store.read_stream("thing", id, StreamQuery::default());
                let events = tokio::time::timeout(std::time::Duration::from_secs(10), read)
                    .await
                    .expect("the read waited for the pool")
                    .expect("read");
                let versions: Vec<u64> = events.iter().map(|e| e.aggregate_version).collect();
                assert_eq!(versions, [1, 2]);
            }
            drop(held);
            if let Some(stats) = store.read_batch_stats() {
                assert_eq!((stats.alone, stats.reads, stats.batches), (3, 0, 0), "{stats:?}");
            }
            store.close().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_racing_appends_see_a_prefix_of_their_stream() {
        let dir = common::temp_dir("read-batch-race");
        let store = SqliteLogStore::open(&url_for(&dir)).await.expect("open");
        check_reads_racing_appends(Arc::new(store), SqliteLogStore::read_batch_stats).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_query_fails_every_read_with_the_store_error() {
        let dir = common::temp_dir("read-batch-error");
        let store = SqliteLogStore::builder(url_for(&dir))
            .max_connections(1)
            .open()
            .await
            .expect("open");
        let drop_events = sqlx::query("DROP TABLE fluvius_events").execute(store.pool());
        let stats = || store.read_batch_stats().expect("group commit is on");
        // (The append `hold_pool_and_writer` starts fails once released: its table is gone.)
        let url = url_for(&dir);
        check_failing_batch(&store, stats, drop_events, hold_pool_and_writer(&store, &url)).await;
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poison_row_fails_only_the_reads_of_its_stream() {
        let dir = common::temp_dir("read-batch-poison");
        let store = SqliteLogStore::builder(url_for(&dir))
            .max_connections(1)
            .open()
            .await
            .expect("open");
        let corrupt = |position: u64| {
            sqlx::query("UPDATE fluvius_events SET metadata = '[1,2]' WHERE position = ?1")
                .bind(position as i64)
                .execute(store.pool())
        };
        let stats = || store.read_batch_stats().expect("group commit is on");
        let url = url_for(&dir);
        check_poison_row_in_a_batch(&store, stats, corrupt, hold_pool_and_writer(&store, &url)).await;
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg::{self, SchemaGuard};
    use fluvius_sql::{GroupCommit, PostgresLogStore, PostgresOptions};

    /// A store in the guard's schema, with `options` on top of the defaults.
    async fn connect(
        guard: &SchemaGuard,
        options: fn(PostgresOptions) -> PostgresOptions,
    ) -> PostgresLogStore {
        options(PostgresLogStore::builder(&guard.url).schema(&guard.schema))
            .connect()
            .await
            .expect("connect")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_batched_match_reads_one_by_one() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        // One connection: held below, it keeps the readers waiting while the reads queue up.
        let store = connect(&guard, |o| o.max_connections(1)).await;
        let streams = fill(&store).await;
        let single = connect(&guard, |o| o.group_commit(GroupCommit::off())).await;
        assert_eq!(single.read_batch_stats(), None);
        let expected = read_one_by_one(&single, &streams).await;
        single.close().await;
        let held = store.pool().acquire().await.expect("hold the connection");
        let stats = PostgresLogStore::read_batch_stats;
        check_batched_reads(Arc::new(store.clone()), stats, held, &streams, &expected).await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_lone_read_runs_on_its_callers_task() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        let store = connect(&guard, |o| o).await;
        let id = AggregateId::new();
        store
            .append(testing::request("thing", id, 0, 3))
            .await
            .expect("append");
        // One at a time: no other read is ever in flight, so none goes through a reader.
        for _ in 0..3 {
            let events = store
                .read_stream("thing", id, StreamQuery::default())
                .await
                .expect("read");
            assert_eq!(
                events.iter().map(|e| e.aggregate_version).collect::<Vec<_>>(),
                [1, 2, 3]
            );
        }
        let stats = store.read_batch_stats().expect("group commit is on");
        assert_eq!((stats.alone, stats.reads, stats.batches), (3, 0, 0), "{stats:?}");
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_racing_appends_see_a_prefix_of_their_stream() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        let store = connect(&guard, |o| o.max_connections(8)).await;
        check_reads_racing_appends(Arc::new(store.clone()), PostgresLogStore::read_batch_stats).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_query_fails_every_read_with_the_store_error() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        let store = connect(&guard, |o| o.max_connections(1)).await;
        let drop_events = sqlx::query("DROP TABLE fluvius_events CASCADE").execute(store.pool());
        let stats = || store.read_batch_stats().expect("group commit is on");
        check_failing_batch(&store, stats, drop_events, store.pool().acquire()).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poison_row_fails_only_the_reads_of_its_stream() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        let store = connect(&guard, |o| o.max_connections(1)).await;
        let corrupt = |position: u64| {
            sqlx::query("UPDATE fluvius_events SET metadata = '[1,2]' WHERE position = $1")
                .bind(position as i64)
                .execute(store.pool())
        };
        let stats = || store.read_batch_stats().expect("group commit is on");
        check_poison_row_in_a_batch(&store, stats, corrupt, store.pool().acquire()).await;
        store.close().await;
    }
}
