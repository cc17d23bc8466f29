//! A poison event does not stop the world: rows made undecodable by raw SQL (metadata of the
//! wrong shape, on SQLite also a payload that is not JSON) are surfaced per entry by
//! `read_log`, fail `read_all` and the affected loads with a typed error naming the event, are
//! parked for handlers while delivery goes on, and stop projections (visibly, without hanging
//! `wait_idle`) until the row is repaired. A version gap made by raw SQL fails loads with
//! `corrupt_stream`.
//!
//! The PostgreSQL tests need `FLUVIUS_TEST_PG_URL` (see `postgres.rs`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluvius_core::testing::RecordingProjection;
use fluvius_core::{AggregateId, Command, DispatchOptions, Domain, Error, Event, LogEntry, LogStore};
use serde_json::json;
use uuid::Uuid;

use common::counter::{self, Counter};

/// Raw SQL on the events table of one store, behind the store's back.
#[allow(dead_code)] // Each backend's variant exists only with its feature.
enum Raw {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl Raw {
    /// Run one statement (the same SQL on both databases).
    async fn exec(&self, sql: &str) {
        match self {
            #[cfg(feature = "sqlite")]
            Raw::Sqlite(pool) => drop(sqlx::query(sql).execute(pool).await.expect(sql)),
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => drop(sqlx::query(sql).execute(pool).await.expect(sql)),
        }
    }

    /// The text one query answers.
    async fn text(&self, sql: &str) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
        }
    }

    /// Set one JSON column (`metadata`, `payload`) of the row at `position` to `text`.
    async fn set_json(&self, column: &str, position: u64, text: &str) {
        let literal = text.replace('\'', "''");
        self.exec(&format!(
            "UPDATE fluvius_events SET {column} = '{literal}' WHERE position = {position}"
        ))
        .await;
    }

    /// The text of one column of the row at `position`.
    async fn json(&self, column: &str, position: u64) -> String {
        self.text(&format!(
            "SELECT CAST({column} AS TEXT) FROM fluvius_events WHERE position = {position}"
        ))
        .await
    }

    /// Give the row at `position` another aggregate version.
    async fn set_version(&self, position: u64, version: u64) {
        self.exec(&format!(
            "UPDATE fluvius_events SET aggregate_version = {version} WHERE position = {position}"
        ))
        .await;
    }
}

async fn add(domain: &Domain, id: AggregateId) -> Event {
    let response = domain
        .process_command(Command::new("counter", id, "add", json!({ "by": 1 })))
        .await
        .expect("add");
    response.events.into_iter().next().expect("one event")
}

/// Whether `err` is the typed error naming the row at `position` with id `id`.
fn names_row(err: &Error, position: u64, id: Uuid) -> bool {
    matches!(err, Error::UndecodableEvent { position: p, event_id: Some(e), .. } if *p == position && *e == id)
}

/// Poll until `done` (no time asserted: a generous deadline only turns a hang into a failure).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The whole story on one store: three counters, the second one's only row made undecodable
/// by `corrupt` (column, text); then repaired.
async fn poison_row_is_surfaced_parked_and_stops_projections(
    store: Arc<dyn LogStore>,
    raw: &Raw,
    column: &str,
    bad_text: &str,
) {
    let writer = counter::domain(store.clone()).await;
    let (a, b, c) = (AggregateId::new(), AggregateId::new(), AggregateId::new());
    let a1 = add(&writer, a).await;
    let bad = add(&writer, b).await;
    let a2 = add(&writer, a).await;
    let c1 = add(&writer, c).await;
    let all = [a1.position, bad.position, a2.position, c1.position];
    let good = raw.json(column, bad.position).await;
    raw.set_json(column, bad.position, bad_text).await;

    // The global log: read_all fails with the typed error naming the row; read_log reads past it.
    let err = store
        .read_all(0, 100)
        .await
        .expect_err("read_all meets the bad row");
    assert!(names_row(&err, bad.position, bad.id), "{err:?}");
    assert_eq!(err.code(), "undecodable_event");
    let entries = store.read_log(0, 100).await.expect("read_log reads every entry");
    assert_eq!(entries.iter().map(LogEntry::position).collect::<Vec<_>>(), all);
    match &entries[1] {
        LogEntry::Undecodable(entry) => {
            assert_eq!((entry.position, entry.event_id), (bad.position, Some(bad.id)));
            assert_eq!(entry.key.as_deref(), Some("added"));
            assert!(names_row(&entry.error, bad.position, bad.id), "{:?}", entry.error);
        }
        other => panic!("the bad row read as {other:?}"),
    }
    assert!(entries
        .iter()
        .enumerate()
        .all(|(i, e)| i == 1 || matches!(e, LogEntry::Decoded(_))));

    // Loads: the affected aggregate fails with the error naming the event; the others load.
    let err = writer.load::<Counter>(b).await.expect_err("b does not load");
    assert!(names_row(&err, bad.position, bad.id), "{err:?}");
    assert_eq!(writer.load::<Counter>(a).await.unwrap().value, 2);
    assert_eq!(writer.load::<Counter>(c).await.unwrap().value, 1);

    // A handler gets the rest and parks the bad row; a projection stops before it; wait_idle
    // returns.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_handler = seen.clone();
    let projection = RecordingProjection::new("read-model");
    let reactor = Domain::builder()
        .namespace("counter-test")
        .aggregate::<Counter>()
        .logstore_arc(store.clone())
        .without_global_handlers()
        .dispatch(DispatchOptions::default().poll_interval(Duration::from_millis(20)))
        .handler("audit", "*", move |event| {
            seen_by_handler.lock().unwrap().push(event.position);
            async { Ok(()) }
        })
        .projection(projection.clone())
        .build()
        .await
        .expect("the reactor builds");
    tokio::time::timeout(Duration::from_secs(60), reactor.wait_idle())
        .await
        .expect("wait_idle returns despite the poison row");
    assert_eq!(*seen.lock().unwrap(), [a1.position, a2.position, c1.position]);
    let parked = reactor.parked(Some("audit")).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].position, parked[0].event_id), (bad.position, bad.id));
    assert!(
        parked[0].error.contains("cannot be decoded"),
        "{}",
        parked[0].error
    );
    assert_eq!(
        reactor.handler_checkpoint("audit").await.unwrap(),
        Some(c1.position)
    );
    assert_eq!(reactor.handler_stats()[0].parked, 1);
    assert_eq!(
        projection.applied(),
        [a1.position],
        "the projection does not skip"
    );
    let status = reactor.projection_status();
    let stop = status[0]
        .stopped
        .as_ref()
        .expect("the projection says it stopped");
    assert_eq!((stop.position, stop.event_id), (bad.position, Some(bad.id)));
    assert_eq!(status[0].position, a1.position);

    // A command on the affected aggregate (cold cache) fails with the same error, writing nothing.
    let err = reactor
        .process_command(Command::new("counter", b, "add", json!({ "by": 1 })))
        .await
        .expect_err("a command on b cannot load it");
    assert!(names_row(&err, bad.position, bad.id), "{err:?}");
    assert_eq!(store.head_position().await.unwrap(), c1.position);

    // Repaired: the parked event is delivered on retry, and the projection goes on by itself.
    raw.set_json(column, bad.position, &good).await;
    assert!(reactor.retry_parked("audit", bad.position).await.unwrap());
    assert!(reactor.parked(Some("audit")).await.unwrap().is_empty());
    assert!(seen.lock().unwrap().contains(&bad.position));
    eventually("the projection resumes", || {
        projection.applied() == all && reactor.projection_status()[0].stopped.is_none()
    })
    .await;
    assert_eq!(reactor.load::<Counter>(b).await.unwrap().value, 1);

    // A version gap: a typed corrupt_stream error, never a silent fold.
    raw.set_version(a2.position, 5).await;
    let err = writer.load::<Counter>(a).await.expect_err("a gap does not fold");
    match &err {
        Error::CorruptStream {
            aggregate_id,
            message,
            ..
        } => {
            assert_eq!(*aggregate_id, a);
            assert!(message.contains("version 5 follows version 1"), "{message}");
        }
        other => panic!("not corrupt_stream: {other:?}"),
    }
    assert_eq!(err.code(), "corrupt_stream");
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use fluvius_core::testing::WithCleanup;
    use fluvius_sql::SqliteLogStore;

    async fn store() -> (Arc<WithCleanup<SqliteLogStore>>, Raw) {
        let dir = common::temp_dir("poison");
        let store = SqliteLogStore::open(&format!("sqlite://{}", dir.join("log.db").display()))
            .await
            .expect("open a file store");
        let raw = Raw::Sqlite(store.pool().clone());
        let store = WithCleanup::new(store, move || {
            let _ = std::fs::remove_dir_all(&dir);
        });
        (Arc::new(store), raw)
    }

    #[tokio::test]
    async fn metadata_of_the_wrong_shape() {
        let (store, raw) = store().await;
        poison_row_is_surfaced_parked_and_stops_projections(store, &raw, "metadata", "[1,2]").await;
    }

    #[tokio::test]
    async fn payload_that_is_not_json() {
        let (store, raw) = store().await;
        poison_row_is_surfaced_parked_and_stops_projections(store, &raw, "payload", "{\"by\": 1").await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg;

    #[tokio::test]
    async fn metadata_of_the_wrong_shape() {
        let Some(url) = pg::url().await else { return };
        let store = pg::store(&url).await;
        let raw = Raw::Postgres(store.inner().pool().clone());
        poison_row_is_surfaced_parked_and_stops_projections(Arc::new(store), &raw, "metadata", "[1,2]").await;
    }
}
