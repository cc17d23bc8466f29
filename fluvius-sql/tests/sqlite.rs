//! SqliteLogStore: the conformance suite on a file and in memory, plus what only SQLite has
//! (pragmas, durability across a process restart, opening errors).
#![cfg(feature = "sqlite")]

mod common;

use std::path::Path;

use fluvius_core::testing::{self, WithCleanup};
use fluvius_core::{AggregateId, Command, LogStore};
use fluvius_sql::{SqliteLogStore, Synchronous};
use serde_json::json;
use uuid::Uuid;

use common::child::{child_arg, child_value, run_child};
use common::counter::{self, Counter};

fn url_for(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A store on a file in a fresh temp directory, deleted with the store.
async fn file_store() -> WithCleanup<SqliteLogStore> {
    let dir = common::temp_dir("conformance");
    let store = SqliteLogStore::open(&url_for(&dir.join("log.db")))
        .await
        .expect("open a file store");
    WithCleanup::new(store, move || {
        let _ = std::fs::remove_dir_all(&dir);
    })
}

mod file_db {
    fluvius_core::conformance_tests!(super::file_store);
}

mod file_db_checkpoints {
    fluvius_core::checkpoint_conformance_tests!(super::file_store);
}

mod memory_db_checkpoints {
    fluvius_core::checkpoint_conformance_tests!(|| async {
        fluvius_sql::SqliteLogStore::open("sqlite::memory:")
            .await
            .expect("open an in-memory store")
    });
}

mod memory_db {
    fluvius_core::conformance_tests!(|| async {
        fluvius_sql::SqliteLogStore::open("sqlite::memory:")
            .await
            .expect("open an in-memory store")
    });
}

async fn pragma(store: &SqliteLogStore, name: &str) -> String {
    use sqlx::Row;
    let row = sqlx::query(&format!("PRAGMA {name}"))
        .fetch_one(store.pool())
        .await
        .expect("read a pragma");
    row.try_get::<String, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
        .expect("a pragma value")
}

#[tokio::test]
async fn file_database_settings_follow_the_options() {
    let dir = common::temp_dir("pragmas");
    let store = SqliteLogStore::open(&url_for(&dir.join("full.db")))
        .await
        .unwrap();
    assert_eq!(pragma(&store, "journal_mode").await, "wal");
    assert_eq!(pragma(&store, "synchronous").await, "2", "FULL by default");
    assert_eq!(pragma(&store, "foreign_keys").await, "1");
    assert_eq!(pragma(&store, "busy_timeout").await, "5000");
    store.close().await;

    let store = SqliteLogStore::builder(url_for(&dir.join("normal.db")))
        .synchronous(Synchronous::Normal)
        .busy_timeout(std::time::Duration::from_millis(1234))
        .open()
        .await
        .unwrap();
    assert_eq!(pragma(&store, "synchronous").await, "1", "NORMAL on request");
    assert_eq!(pragma(&store, "busy_timeout").await, "1234");
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn memory_databases_are_separate_and_shared_by_their_pool() {
    let a = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    let b = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    let id = AggregateId::new();
    a.append(testing::request("thing", id, 0, 2)).await.unwrap();
    assert_eq!(a.get_events("thing", id).await.unwrap().len(), 2);
    assert!(b.get_events("thing", id).await.unwrap().is_empty());
    // A clone shares the pool, hence the database.
    let a2 = a.clone();
    assert_eq!(a2.read_all(0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn open_failure_names_the_path() {
    let dir = common::temp_dir("missing");
    let path = dir.join("no-such-dir").join("log.db");
    let err = SqliteLogStore::open(&url_for(&path)).await.unwrap_err();
    assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
    assert!(err.target().contains("no-such-dir"), "target: {}", err.target());
    let core: fluvius_core::Error = err.into();
    assert_eq!(core.code(), "store");
    let text = core.to_string();
    assert!(
        text.contains("no-such-dir/log.db") && text.contains("unable to open"),
        "{text}"
    );

    let err = SqliteLogStore::builder(url_for(&dir.join("absent.db")))
        .create_if_missing(false)
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_migrations_the_schema_must_exist() {
    let dir = common::temp_dir("nomigrate");
    let store = SqliteLogStore::builder(url_for(&dir.join("log.db")))
        .run_migrations(false)
        .open()
        .await
        .unwrap();
    let err = store.read_all(0, 10).await.unwrap_err();
    assert_eq!(err.code(), "store");
    assert!(err.to_string().contains("no such table"), "{err}");
    store.migrate().await.unwrap();
    let id = AggregateId::new();
    store.append(testing::request("thing", id, 0, 1)).await.unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_closed_store_fails_with_a_store_error() {
    let store = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    store.close().await;
    let err = store
        .append(testing::request("thing", AggregateId::new(), 0, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store");
    assert!(err.to_string().contains("sqlite::memory:"), "{err}");
}

/// A store at `url` with `group_commit`.
async fn open_with(url: &str, group_commit: fluvius_sql::GroupCommit) -> SqliteLogStore {
    SqliteLogStore::builder(url)
        .group_commit(group_commit)
        .open()
        .await
        .unwrap()
}

/// Group commit on and off, by name.
fn group_commit_modes() -> [(&'static str, fluvius_sql::GroupCommit); 2] {
    [
        ("on", fluvius_sql::GroupCommit::default()),
        ("off", fluvius_sql::GroupCommit::off()),
    ]
}

/// On a file, appends write on the store's own writer connection, not on one of the pool's:
/// with every pool connection taken, appends still go through (with group commit on and off).
#[tokio::test]
async fn appends_on_a_file_do_not_wait_for_a_pool_connection() {
    let dir = common::temp_dir("writer");
    for (name, group_commit) in group_commit_modes() {
        let store = SqliteLogStore::builder(url_for(&dir.join(format!("{name}.db"))))
            .max_connections(1)
            .group_commit(group_commit)
            .open()
            .await
            .unwrap();
        let id = AggregateId::new();
        let held = store.pool().acquire().await.unwrap();
        let mut stored = Vec::new();
        for version in 0..3 {
            let mut request = testing::request("thing", id, version, 1);
            request.command = Some(testing::command_record(&request));
            stored.extend(store.append(request).await.unwrap());
        }
        drop(held);
        assert_eq!(
            store.get_events("thing", id).await.unwrap(),
            stored,
            "group commit {name}"
        );
        store.close().await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Closing a file store closes its writer connection too: an append after fails, and does not
/// open a new one.
#[tokio::test]
async fn a_closed_file_store_fails_appends() {
    let dir = common::temp_dir("closed");
    for (name, group_commit) in group_commit_modes() {
        let url = url_for(&dir.join(format!("{name}.db")));
        let store = open_with(&url, group_commit).await;
        let id = AggregateId::new();
        store.append(testing::request("thing", id, 0, 1)).await.unwrap();
        store.close().await;
        let err = store
            .append(testing::request("thing", id, 1, 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "store", "group commit {name}: {err}");
        let reopened = SqliteLogStore::open(&url).await.unwrap();
        assert_eq!(reopened.get_events("thing", id).await.unwrap().len(), 1);
        reopened.close().await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A lone append dropped while its first query waits for SQLite's write lock (its caller
/// stopped waiting) has sent `BEGIN IMMEDIATE` on the writer's connection and nothing after
/// it: the transaction that `BEGIN` opens once the lock is free must not stay open on the
/// connection. Reads and appends after it go on, and nothing of the dropped append is written
/// (with group commit on and off).
#[tokio::test]
async fn a_lone_append_dropped_inside_its_transaction_leaves_nothing_open() {
    use sqlx::{Connection, Executor};
    let dir = common::temp_dir("dropped");
    for (name, group_commit) in group_commit_modes() {
        let url = url_for(&dir.join(format!("{name}.db")));
        let store = open_with(&url, group_commit).await;
        let id = AggregateId::new();
        // The writer's connection is open.
        let first = store.append(testing::request("thing", id, 0, 1)).await.unwrap();

        let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        locker.execute("BEGIN IMMEDIATE").await.unwrap();
        let mut dropped = testing::request("thing", id, 1, 1);
        let record = testing::command_record(&dropped);
        dropped.command = Some(record.clone());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), store.append(dropped)).await;
        assert!(
            waited.is_err(),
            "group commit {name}: the append waits for the lock"
        );
        // The lock is free: the dropped append's `BEGIN` goes through, and its caller is gone.
        locker.execute("ROLLBACK").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;

        assert_eq!(
            store.get_events("thing", id).await.unwrap(),
            first,
            "group commit {name}"
        );
        let next = store.append(testing::request("thing", id, 1, 1)).await.unwrap();
        assert_eq!(next[0].aggregate_version, 2, "group commit {name}");
        assert_eq!(
            store.get_events("thing", id).await.unwrap(),
            [first, next].concat(),
            "group commit {name}"
        );
        assert_eq!(
            store.get_command(record.id).await.unwrap(),
            None,
            "group commit {name}"
        );
        store.close().await;
        // Nothing was left uncommitted: a new process sees the same.
        let reopened = SqliteLogStore::open(&url).await.unwrap();
        assert_eq!(
            reopened.read_all(0, usize::MAX).await.unwrap().len(),
            2,
            "group commit {name}"
        );
        reopened.close().await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn very_large_batches_span_several_statements_in_one_transaction() {
    let store = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    let id = AggregateId::new();
    let count = fluvius_sql::sqlite::MAX_ROWS_PER_INSERT as u64 * 2 + 7;
    let stored = store
        .append(testing::request("thing", id, 0, count))
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, count);
    assert!(stored.windows(2).all(|w| w[1].position == w[0].position + 1));
    assert_eq!(store.get_events("thing", id).await.unwrap(), stored);

    // A conflicting large batch leaves nothing behind.
    let err = store
        .append(testing::request("thing", id, 1, count))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.read_all(0, usize::MAX).await.unwrap().len() as u64, count);
}

/// A lone append (group commit off) from a writer ahead of the stream: its versions would not
/// collide with any stored one, so only the version check of its events `INSERT` stops it —
/// in one statement and across several. Nothing is written, not even the command record.
#[tokio::test]
async fn a_lone_append_ahead_of_the_stream_is_a_conflict() {
    let store = SqliteLogStore::builder("sqlite::memory:")
        .group_commit(fluvius_sql::GroupCommit::off())
        .open()
        .await
        .unwrap();
    let id = AggregateId::new();
    let seeded = store.append(testing::request("thing", id, 0, 2)).await.unwrap();
    let large = fluvius_sql::sqlite::MAX_ROWS_PER_INSERT as u64 + 1;
    for (expected, count) in [(3, 1), (5, 2), (1, 1), (4, large)] {
        let mut ahead = testing::request("thing", id, expected, count);
        let record = testing::command_record(&ahead);
        ahead.command = Some(record.clone());
        match store.append(ahead).await {
            Err(fluvius_core::Error::Conflict {
                expected: e, actual, ..
            }) => assert_eq!((e, actual), (expected, 2), "conflict reports (expected, actual)"),
            other => panic!("expected a conflict at {expected} ({count} events), got {other:?}"),
        }
        assert_eq!(
            store.get_command(record.id).await.unwrap(),
            None,
            "no command record"
        );
    }
    assert_eq!(store.read_all(0, usize::MAX).await.unwrap(), seeded);
    let next = store.append(testing::request("thing", id, 2, 1)).await.unwrap();
    assert_eq!(next[0].aggregate_version, 3);
}

// ----- across a process restart -----------------------------------------------------------

/// Child half of `events_survive_a_process_restart`: append, print what was stored, and exit
/// at once (no pool shutdown, no checkpoint).
#[test]
#[ignore = "child process of events_survive_a_process_restart; run that test instead"]
fn child_appends_and_exits() {
    let path = child_arg().expect("run by events_survive_a_process_restart, not directly");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteLogStore::open(&path).await.unwrap();
        let id = AggregateId::new();
        let mut req = testing::request("thing", id, 0, 3);
        let record = testing::command_record(&req);
        req.command = Some(record.clone());
        let stored = store.append(req).await.unwrap();
        println!();
        println!("AGGREGATE={id}");
        println!("COMMAND={}", record.id);
        println!("EVENTS={}", serde_json::to_string(&stored).unwrap());
    });
    std::process::exit(0);
}

#[test]
fn events_survive_a_process_restart() {
    let dir = common::temp_dir("restart");
    let url = url_for(&dir.join("log.db"));
    let out = run_child("child_appends_and_exits", &url);
    let id: AggregateId = child_value(&out, "AGGREGATE").parse().unwrap();
    let command: Uuid = child_value(&out, "COMMAND").parse().unwrap();
    let written: Vec<fluvius_core::Event> = serde_json::from_str(&child_value(&out, "EVENTS")).unwrap();
    assert_eq!(written.len(), 3);

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteLogStore::open(&url).await.unwrap();
        assert_eq!(store.get_events("thing", id).await.unwrap(), written);
        assert_eq!(store.read_all(0, 10).await.unwrap(), written);
        let record = store
            .get_command(command)
            .await
            .unwrap()
            .expect("the command record survived");
        assert_eq!(record.version_after, 3);
        // And the log goes on from there.
        let more = store.append(testing::request("thing", id, 3, 1)).await.unwrap();
        assert_eq!(more[0].position, written[2].position + 1);
        store.close().await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Child half of `idempotent_replay_survives_a_restart`: process the command again in a new
/// process and report the response.
#[test]
#[ignore = "child process of idempotent_replay_survives_a_restart; run that test instead"]
fn child_replays_command() {
    let arg = child_arg().expect("run by idempotent_replay_survives_a_restart, not directly");
    let (url, rest) = arg.split_once('|').unwrap();
    let (id, command_id) = rest.split_once('|').unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteLogStore::open(url).await.unwrap();
        let domain = counter::domain(store).await;
        let cmd = Command::new("counter", id.parse().unwrap(), "add", json!({ "by": 5 }))
            .with_id(command_id.parse().unwrap());
        let resp = domain.process_command(cmd).await.unwrap();
        println!();
        println!("REPLAYED={}", resp.replayed);
        println!("VERSION={}", resp.version);
        println!("EVENTS={}", resp.events.len());
    });
}

#[test]
fn idempotent_replay_survives_a_restart() {
    let dir = common::temp_dir("replay");
    let url = url_for(&dir.join("log.db"));
    let id = AggregateId::new();
    let command_id = Uuid::now_v7();
    let first = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteLogStore::open(&url).await.unwrap();
        let domain = counter::domain(store.clone()).await;
        let cmd = Command::new("counter", id, "add", json!({ "by": 5 })).with_id(command_id);
        let resp = domain.process_command(cmd).await.unwrap();
        assert!(!resp.replayed);
        assert_eq!(resp.version, 1);
        drop(domain);
        store.close().await;
        resp
    });

    let out = run_child("child_replays_command", &format!("{url}|{id}|{command_id}"));
    assert_eq!(
        child_value(&out, "REPLAYED"),
        "true",
        "the second run answers from the record"
    );
    assert_eq!(child_value(&out, "VERSION"), "1");
    assert_eq!(
        child_value(&out, "EVENTS"),
        "1",
        "the first response's events, replayed"
    );

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteLogStore::open(&url).await.unwrap();
        let events = store.get_events("counter", id).await.unwrap();
        assert_eq!(events, first.events, "no new events were written");
        let domain = counter::domain(store.clone()).await;
        let state: Counter = domain.load(id).await.unwrap();
        assert_eq!(state.value, 5);
        drop(domain);
        store.close().await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Appends stuck behind SQLite's write lock (held by another connection for longer than the
/// operation timeout) are answered while the lock is still held: `timeout`, `outcome_unknown`
/// or `store`, never a hang. Once the lock is free, an append answered `store` is not in the
/// log, and resending each append (the same request, the same command id) leaves every one
/// stored exactly once (with group commit on and off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_behind_a_held_write_lock_are_bounded_by_the_operation_timeout() {
    use sqlx::{Connection, Executor};
    let dir = common::temp_dir("stuck");
    for (name, group_commit) in group_commit_modes() {
        let url = url_for(&dir.join(format!("{name}.db")));
        let store = SqliteLogStore::builder(&url)
            .group_commit(group_commit)
            .busy_timeout(std::time::Duration::from_secs(30))
            .operation_timeout(std::time::Duration::from_millis(500))
            .open()
            .await
            .unwrap();
        // The writer's connection is open.
        store
            .append(testing::request("thing", AggregateId::new(), 0, 1))
            .await
            .unwrap();

        let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        locker.execute("BEGIN IMMEDIATE").await.unwrap();
        let requests: Vec<_> = (0..3)
            .map(|_| {
                let mut request = testing::request("thing", AggregateId::new(), 0, 1);
                request.command = Some(testing::command_record(&request));
                request
            })
            .collect();
        let answers = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            futures_join(requests.iter().map(|r| store.append(r.clone()))),
        )
        .await;
        // Still holding the lock: every append was answered without it.
        locker.execute("ROLLBACK").await.unwrap();
        let answers =
            answers.unwrap_or_else(|_| panic!("group commit {name}: appends still waiting for the lock"));

        for (request, answer) in requests.iter().zip(&answers) {
            let err = answer.as_ref().expect_err("the lock was held throughout");
            assert!(
                matches!(err.code(), "timeout" | "outcome_unknown" | "store"),
                "group commit {name}: {err}"
            );
            if err.code() == "store" {
                let stored = store.get_events("thing", request.aggregate_id).await.unwrap();
                assert!(
                    stored.is_empty(),
                    "group commit {name}: answered {err} but stored"
                );
            }
        }
        for request in &requests {
            match store.append(request.clone()).await {
                Ok(_) => {}
                Err(e) if e.code() == "duplicate_command" => {}
                Err(e) => panic!("group commit {name}: the resend failed: {e}"),
            }
            let stored = store.get_events("thing", request.aggregate_id).await.unwrap();
            assert_eq!(stored.len(), 1, "group commit {name}");
            assert_eq!(stored[0].id, request.events[0].id, "group commit {name}");
        }
        store.close().await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run the futures concurrently, their results in order.
async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => *slot = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().map(Option::unwrap).collect()
}
