//! PostgreSQL: serialization failures and deadlocks are transient errors, retried by the
//! domain like conflicts; several processes racing on the same aggregates see nothing worse
//! than a retried-out conflict.
//!
//! Needs `FLUVIUS_TEST_PG_URL` (see `postgres.rs`); prints "NOT RUN" and returns without it.
#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_core::{testing, AggregateId, Command, Domain, LogStore};
use fluvius_sql::PostgresLogStore;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use common::child::{child_arg, child_value, run_child};
use common::pg::{self, SchemaGuard};

async fn connect(url: &str, schema: &str) -> PostgresLogStore {
    PostgresLogStore::builder(url)
        .schema(schema)
        .max_connections(6)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {}", e.full_message()))
}

/// A connection of "someone else" with the store's schema on its search path.
async fn raw(url: &str, schema: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
        .await
        .unwrap();
    conn
}

/// Until another backend waits for a lock held by `conn`'s transaction (generous deadline).
async fn until_someone_waits_on(conn: &mut PgConnection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            // pg_locks, not pg_stat_activity: the latter is read once per transaction.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted \
             AND transactionid = pg_current_xact_id()::xid",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the append never waited for the other transaction"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Another transaction records the command id an append is about to use, then inserts the
/// event the append has just inserted: each waits for the other, and PostgreSQL aborts the
/// append (it waited first, so its deadlock check runs first) with `40P01`.
async fn deadlock_an_append(
    other: &mut PgConnection,
    command_id: Uuid,
    stream: AggregateId,
    append: impl std::future::Future<Output = fluvius_core::Result<Vec<fluvius_core::Event>>>,
) -> fluvius_core::Result<Vec<fluvius_core::Event>> {
    other.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context, \
         version_before, version_after, recorded_at) VALUES ($1, 'x', 'counter', $2, 'add', '{}', '{}', 0, 1, now())",
    )
    .bind(command_id)
    .bind(stream.as_uuid())
    .execute(&mut *other)
    .await
    .unwrap();
    let rival = async {
        until_someone_waits_on(other).await;
        sqlx::query(
            "INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key, \
             schema_version, payload, args, metadata, command_id, command_name, recorded_at) \
             SELECT nextval('fluvius_events_position_seq'), $1, 'x', 'counter', $2, 1, 'added', 1, '{}', '{}', '{}', $3, \
             'add', now()",
        )
        .bind(Uuid::now_v7())
        .bind(stream.as_uuid())
        .bind(command_id)
        .execute(&mut *other)
        .await
        .expect("the other transaction survives the deadlock");
        other.execute("ROLLBACK").await.unwrap();
    };
    let (result, ()) = tokio::join!(append, rival);
    result
}

/// A real deadlock during an append is a `transient` error (not a generic `store` one), and
/// the append wrote nothing.
#[tokio::test]
async fn a_deadlocked_append_is_transient_and_writes_nothing() {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let store = connect(&url, &guard.schema).await;
    let mut other = raw(&url, &guard.schema).await;
    let stream = AggregateId::new();
    let mut request = testing::request("counter", stream, 0, 1);
    let record = testing::command_record(&request);
    let command_id = record.id;
    request.command = Some(record);

    let err = deadlock_an_append(&mut other, command_id, stream, store.append(request))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "transient", "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("deadlock"), "{err}");
    assert!(store.get_events("counter", stream).await.unwrap().is_empty());
    assert!(store.get_command(command_id).await.unwrap().is_none());
    let _ = other.close().await;
}

/// The domain retries a deadlocked append: the command succeeds on its second attempt.
#[tokio::test]
async fn the_domain_retries_a_deadlocked_command() {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let domain = common::counter::domain(connect(&url, &guard.schema).await).await;
    let mut other = raw(&url, &guard.schema).await;
    let stream = AggregateId::new();
    let command = Command::new("counter", stream, "add", json!({ "by": 1 }));
    let command_id = command.id;

    let events = deadlock_an_append(&mut other, command_id, stream, async {
        domain.process_command(command).await.map(|r| r.events)
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        domain.logstore().get_events("counter", stream).await.unwrap(),
        events
    );
    assert!(domain.logstore().get_command(command_id).await.unwrap().is_some());
    let _ = other.close().await;
}

/// The real errors PostgreSQL raises for a serialization failure (`40001`) convert to
/// `transient`; a unique violation stays a `store` error.
#[tokio::test]
async fn serialization_failures_convert_to_transient() {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let mut a = raw(&url, "public").await;
    let mut b = raw(&url, "public").await;
    a.execute(format!("CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".t (k int PRIMARY KEY, v int); INSERT INTO \"{0}\".t VALUES (1, 0)", guard.schema).as_str())
        .await
        .unwrap();
    let table = format!("\"{}\".t", guard.schema);
    for conn in [&mut a, &mut b] {
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        conn.execute(format!("SELECT * FROM {table}").as_str())
            .await
            .unwrap();
    }
    a.execute(format!("UPDATE {table} SET v = 1 WHERE k = 1").as_str())
        .await
        .unwrap();
    a.execute("COMMIT").await.unwrap();
    let serialization = b
        .execute(format!("UPDATE {table} SET v = 2 WHERE k = 1").as_str())
        .await
        .unwrap_err();
    b.execute("ROLLBACK").await.unwrap();
    let unique = a
        .execute(format!("INSERT INTO {table} VALUES (1, 0)").as_str())
        .await
        .unwrap_err();

    let convert = |source| -> fluvius_core::Error {
        fluvius_sql::Error::Query {
            target: "postgres://test".into(),
            operation: "append",
            source,
        }
        .into()
    };
    let err = convert(serialization);
    assert_eq!(err.code(), "transient", "{err:?}");
    assert!(err.to_string().contains("could not serialize"), "{err}");
    assert_eq!(convert(unique).code(), "store");
    let _ = a.close().await;
    let _ = b.close().await;
}

const CHILDREN: usize = 3;
const AGGREGATES: usize = 100;
const TASKS_PER_CHILD: usize = 12;
const RUN_FOR: Duration = Duration::from_secs(3);

/// Three processes (this binary run again) send concurrent commands to the same 100
/// aggregates in one schema for a few seconds, with group commit on. Every command either
/// succeeds or ends in a conflict the retry policy gave up on; any other error (a deadlock
/// or serialization failure surfacing as `store`, say) fails the test. The log then holds
/// exactly the events of the commands that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_processes_see_only_retried_out_conflicts() {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let store = connect(&url, &guard.schema).await; // migrates once, before the children
    let ids: Vec<String> = (0..AGGREGATES).map(|_| Uuid::new_v4().to_string()).collect();
    let arg = format!("{}|{}", guard.schema, ids.join(","));

    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            let arg = arg.clone();
            std::thread::spawn(move || run_child("racing_child", &arg))
        })
        .collect();
    let mut ok = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for child in children {
        let stdout = child.join().expect("a child thread panicked");
        ok += child_value(&stdout, "OK").parse::<u64>().unwrap();
        for entry in child_value(&stdout, "ERRORS")
            .split(',')
            .filter(|e| !e.is_empty())
        {
            let (code, n) = entry.split_once(':').unwrap();
            *errors.entry(code.to_owned()).or_default() += n.parse::<u64>().unwrap();
        }
    }
    common::announce(&format!(
        "{CHILDREN} processes on {AGGREGATES} aggregates: {ok} commands succeeded, errors {errors:?}"
    ));
    assert!(ok > 0, "no command succeeded");
    let unexpected: Vec<_> = errors.iter().filter(|(code, _)| *code != "conflict").collect();
    assert!(
        unexpected.is_empty(),
        "errors other than retried-out conflicts: {unexpected:?}"
    );

    let mut stored = 0;
    for id in &ids {
        let events = store
            .get_events("counter", AggregateId::from(Uuid::parse_str(id).unwrap()))
            .await
            .unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.aggregate_version).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
        stored += events.len() as u64;
    }
    assert_eq!(stored, ok, "one event per successful command, none lost or extra");
}

/// The child of [`racing_processes_see_only_retried_out_conflicts`]: runs only when started by
/// it, and reports `OK=<n>` and `ERRORS=<code>:<n>,…` on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by racing_processes_see_only_retried_out_conflicts in a child process"]
async fn racing_child() {
    let Some(arg) = child_arg() else { return };
    let url = std::env::var("FLUVIUS_TEST_PG_URL").expect("the parent had a server");
    let (schema, ids) = arg.split_once('|').unwrap();
    let ids: Arc<Vec<AggregateId>> = Arc::new(
        ids.split(',')
            .map(|id| AggregateId::from(Uuid::parse_str(id).unwrap()))
            .collect(),
    );
    let domain: Arc<Domain> = Arc::new(common::counter::domain(connect(&url, schema).await).await);
    let until = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..TASKS_PER_CHILD)
        .map(|task| {
            let (domain, ids) = (domain.clone(), ids.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
                let mut n = task;
                while Instant::now() < until {
                    // A cheap spread over the aggregates, different in every task.
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = ids[(n >> 33) % ids.len()];
                    match domain
                        .process_command(Command::new("counter", id, "add", json!({ "by": 1 })))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(e) => *errors.entry(e.code()).or_default() += 1,
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let mut ok = 0;
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for task in tasks {
        let (n, e) = task.await.unwrap();
        ok += n;
        for (code, count) in e {
            *errors.entry(code).or_default() += count;
        }
    }
    let errors: Vec<String> = errors.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    // On lines of their own (the harness has printed "test racing_child ... " already).
    println!("\nOK={ok}");
    println!("ERRORS={}", errors.join(","));
}
