//! PostgresLogStore: the conformance suite (one schema per store, so tests run in parallel),
//! plus connection failures, recovery after an outage, durability across a process restart and
//! idempotent replay across a restart.
//!
//! Needs `FLUVIUS_TEST_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`). Without it, or
//! when the server does not answer, each test prints "PostgreSQL suite NOT RUN: <reason>" and
//! returns; with `CI=true` they fail instead. The late-commit test lives in its own binary
//! (`postgres_late_commit.rs`): it holds a transaction open, which pauses `read_all` for every
//! other test on the cluster.
#![cfg(feature = "postgres")]

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use fluvius_core::testing;
use fluvius_core::{AggregateId, Command, LogStore};
use fluvius_sql::PostgresLogStore;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::Executor;
use uuid::Uuid;

use common::child::{child_arg, child_value, run_child};
use common::counter::{self, Counter};
use common::pg::{self, Proxy, SchemaGuard};

/// The test server's URL, or end the test (see the file docs).
macro_rules! pg_url_or_return {
    () => {
        match pg::url().await {
            Some(url) => url,
            None => return,
        }
    };
}

mod conformance {
    use super::*;

    fluvius_core::conformance_tests!({
        let url = pg_url_or_return!();
        move || {
            let url = url.clone();
            async move { pg::store(&url).await }
        }
    });
}

mod checkpoint_conformance {
    use super::*;

    fluvius_core::checkpoint_conformance_tests!({
        let url = pg_url_or_return!();
        move || {
            let url = url.clone();
            async move { pg::store(&url).await }
        }
    });
}

// ----- connection errors (no server needed) -----------------------------------------------

#[tokio::test]
async fn unreachable_server_is_a_connect_error_without_the_password() {
    let started = Instant::now();
    let err = PostgresLogStore::builder("postgres://app:hunter2@127.0.0.1:1/appdb")
        .acquire_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
    assert_eq!(err.target(), "postgres://app@127.0.0.1:1/appdb");
    let text = err.full_message();
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let core: fluvius_core::Error = err.into();
    assert_eq!(core.code(), "store");
    let shown = format!("{core} / {core:?}");
    assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
    assert!(shown.contains("postgres://app@127.0.0.1:1/appdb"), "{shown}");
}

#[tokio::test]
async fn invalid_url_is_a_config_error_without_the_password() {
    let err = PostgresLogStore::connect("postgres://app:hunter2@127.0.0.1:notaport/appdb")
        .await
        .unwrap_err();
    assert!(matches!(err, fluvius_sql::Error::Config { .. }), "{err:?}");
    let text = format!("{} / {err:?}", err.full_message());
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    assert!(text.contains("127.0.0.1:notaport"), "{text}");
}

// ----- with a server ------------------------------------------------------------------------

#[tokio::test]
async fn unknown_database_is_a_connect_error() {
    let url = pg_url_or_return!();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .database("fluvius_no_such_db");
    let err = fluvius_sql::PostgresOptions::from_connect_options(options)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
    assert!(err.target().ends_with("/fluvius_no_such_db"), "{}", err.target());
    assert!(
        err.full_message().contains("fluvius_no_such_db"),
        "{}",
        err.full_message()
    );
}

#[tokio::test]
async fn schema_option_isolates_stores() {
    let url = pg_url_or_return!();
    let a = pg::store(&url).await;
    let b = pg::store(&url).await;
    let id = AggregateId::new();
    a.append(testing::request("thing", id, 0, 2)).await.unwrap();
    b.append(testing::request("thing", id, 0, 1)).await.unwrap();
    assert_eq!(a.get_events("thing", id).await.unwrap().len(), 2);
    assert_eq!(b.get_events("thing", id).await.unwrap().len(), 1);
    assert!(
        a.inner().target().contains("(schema fluvius_test_"),
        "{}",
        a.inner().target()
    );
}

#[tokio::test]
async fn migrations_can_be_run_later_and_twice() {
    let url = pg_url_or_return!();
    let schema = pg::schema_name();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .run_migrations(false)
        .connect()
        .await
        .unwrap();
    let err = store.read_all(0, 10).await.unwrap_err();
    assert_eq!(err.code(), "store");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("fluvius_events"), "{chain}");
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store
        .append(testing::request("thing", AggregateId::new(), 0, 1))
        .await
        .unwrap();

    // A second store on a pool the application built, same schema.
    let set_path = format!("SET search_path TO \"{schema}\"");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let set_path = set_path.clone();
            Box::pin(async move { conn.execute(set_path.as_str()).await.map(drop) })
        })
        .connect(&url)
        .await
        .unwrap();
    let shared = PostgresLogStore::from_pool(pool).await.unwrap();
    assert_eq!(testing::conformance::read_all_settled(&shared, 1).await.len(), 1);
    shared.close().await;
    store.close().await;
}

/// Options for a store in a fresh schema (dropped with the guard) whose connections carry a
/// fresh `application_name` (returned), so a test can find them in `pg_stat_activity`.
fn named_in_fresh_schema(url: &str) -> (SchemaGuard, String, fluvius_sql::PostgresOptions) {
    let schema = pg::schema_name();
    let app = format!("fluvius-test-{}", Uuid::new_v4().simple());
    let options = PostgresLogStore::builder(url)
        .schema(&schema)
        .application_name(&app);
    let guard = SchemaGuard {
        url: url.to_owned(),
        schema,
    };
    (guard, app, options)
}

/// Terminate the server processes of the connections named `app`; how many there were.
async fn terminate_backends(url: &str, app: &str) -> usize {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let killed: Vec<(bool,)> =
        sqlx::query_as("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(app)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    killed.len()
}

#[tokio::test]
async fn terminated_connections_are_replaced() {
    let url = pg_url_or_return!();
    let (_guard, app, options) = named_in_fresh_schema(&url);
    let store = options.connect().await.unwrap();
    let id = AggregateId::new();
    store.append(testing::request("thing", id, 0, 1)).await.unwrap();

    let killed = terminate_backends(&url, &app).await;
    assert!(killed > 0, "the store had a connection to terminate");

    store.append(testing::request("thing", id, 1, 1)).await.unwrap();
    assert_eq!(store.get_events("thing", id).await.unwrap().len(), 2);
    store.close().await;
}

/// With `ping_connections_idle_for`, a connection used recently is handed out without the
/// ping: after the server drops it, the next operation fails with a store error (which the
/// default's ping would have prevented, see `terminated_connections_are_replaced`), and the
/// one after runs on a new connection.
#[tokio::test]
async fn unchecked_connections_fail_once_after_the_server_drops_them() {
    let url = pg_url_or_return!();
    let (_guard, app, options) = named_in_fresh_schema(&url);
    let store = options
        .max_connections(1)
        .group_commit(fluvius_sql::GroupCommit::off())
        .ping_connections_idle_for(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let id = AggregateId::new();
    store.append(testing::request("thing", id, 0, 1)).await.unwrap();
    // Let the append's notification go out, so the one connection is idle in the pool.
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(
        terminate_backends(&url, &app).await,
        1,
        "the store's one connection"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let err = store.get_events("thing", id).await.unwrap_err();
    assert_eq!(err.code(), "store", "{err:?}");
    assert_eq!(store.get_events("thing", id).await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn store_recovers_when_the_database_comes_back() {
    let url = pg_url_or_return!();
    let schema = pg::schema_name();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut proxy = Proxy::start(&url).await;
    let options = proxy.connect_options(&url).password("not-shown-anywhere");
    let store = fluvius_sql::PostgresOptions::from_connect_options(options)
        .schema(&schema)
        .acquire_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let id = AggregateId::new();
    store.append(testing::request("thing", id, 0, 1)).await.unwrap();

    // The database goes away.
    proxy.stop().await;
    let err = store
        .append(testing::request("thing", id, 1, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store", "{err:?}");
    let text = format!("{err} / {err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", proxy.addr.port())),
        "{text}"
    );
    assert!(
        !text.contains("not-shown-anywhere"),
        "the password leaked: {text}"
    );
    let err = store.get_events("thing", id).await.unwrap_err();
    assert_eq!(err.code(), "store", "{err:?}");

    // It comes back: the same store works again.
    proxy.restart().await;
    store.append(testing::request("thing", id, 1, 1)).await.unwrap();
    let events = store.get_events("thing", id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.aggregate_version).collect::<Vec<_>>(),
        [1, 2]
    );
    store.close().await;
}

// ----- across a process restart -----------------------------------------------------------

/// Child half of `events_survive_a_process_restart`.
#[test]
#[ignore = "child process of events_survive_a_process_restart; run that test instead"]
fn child_appends_and_exits() {
    let arg = child_arg().expect("run by events_survive_a_process_restart, not directly");
    let (url, schema) = arg.split_once('|').unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = PostgresLogStore::builder(url)
            .schema(schema)
            .connect()
            .await
            .unwrap();
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

#[tokio::test]
async fn events_survive_a_process_restart() {
    let url = pg_url_or_return!();
    let schema = pg::schema_name();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let arg = format!("{url}|{schema}");
    let out = tokio::task::spawn_blocking(move || run_child("child_appends_and_exits", &arg))
        .await
        .unwrap();
    let id: AggregateId = child_value(&out, "AGGREGATE").parse().unwrap();
    let command: Uuid = child_value(&out, "COMMAND").parse().unwrap();
    let written: Vec<fluvius_core::Event> = serde_json::from_str(&child_value(&out, "EVENTS")).unwrap();
    assert_eq!(written.len(), 3);

    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    assert_eq!(store.get_events("thing", id).await.unwrap(), written);
    assert_eq!(testing::conformance::read_all_settled(&store, 3).await, written);
    let record = store
        .get_command(command)
        .await
        .unwrap()
        .expect("the command record survived");
    assert_eq!(record.version_after, 3);
    let more = store.append(testing::request("thing", id, 3, 1)).await.unwrap();
    assert!(more[0].position > written[2].position);
    store.close().await;
}

/// Child half of `idempotent_replay_survives_a_restart`.
#[test]
#[ignore = "child process of idempotent_replay_survives_a_restart; run that test instead"]
fn child_replays_command() {
    let arg = child_arg().expect("run by idempotent_replay_survives_a_restart, not directly");
    let parts: Vec<&str> = arg.split('|').collect();
    let [url, schema, id, command_id] = parts[..] else {
        panic!("bad child argument {arg}")
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = PostgresLogStore::builder(url)
            .schema(schema)
            .connect()
            .await
            .unwrap();
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

#[tokio::test]
async fn idempotent_replay_survives_a_restart() {
    let url = pg_url_or_return!();
    let schema = pg::schema_name();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let id = AggregateId::new();
    let command_id = Uuid::now_v7();
    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    let domain = counter::domain(store.clone()).await;
    let cmd = Command::new("counter", id, "add", json!({ "by": 5 })).with_id(command_id);
    let first = domain.process_command(cmd).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.version, 1);
    drop(domain);
    store.close().await;

    let arg = format!("{url}|{schema}|{id}|{command_id}");
    let out = tokio::task::spawn_blocking(move || run_child("child_replays_command", &arg))
        .await
        .unwrap();
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

    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        store.get_events("counter", id).await.unwrap(),
        first.events,
        "no new events"
    );
    let domain = counter::domain(store.clone()).await;
    let state: Counter = domain.load(id).await.unwrap();
    assert_eq!(state.value, 5);
    drop(domain);
    store.close().await;
}
