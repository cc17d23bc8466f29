//! PostgreSQL: a reader of the global log never skips a transaction that commits late.
//!
//! Its own test binary, because it holds a write transaction open on purpose, which pauses
//! `read_all` for every store on the cluster (see the `postgres` module docs), and cargo runs
//! test binaries one after another. Needs `FLUVIUS_TEST_PG_URL`, like `postgres.rs`.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use fluvius_core::testing;
use fluvius_core::{AggregateId, LogStore};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use common::pg;

/// Insert one event the way an append does, in an open transaction, and return its position.
async fn insert_and_hold(conn: &mut PgConnection, aggregate_id: AggregateId) -> u64 {
    conn.execute("BEGIN").await.unwrap();
    let (position,): (i64,) = sqlx::query_as(
        "INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key, \
         schema_version, payload, args, metadata, command_id, command_name, recorded_at) \
         SELECT fluvius_reserve_positions(1), $1, 'late', 'thing', $2, 1, 'late-event', 1, '{}', '{}', '{}', \
         $3, 'late', now() RETURNING position",
    )
    .bind(Uuid::now_v7())
    .bind(aggregate_id.as_uuid())
    .bind(Uuid::now_v7())
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    u64::try_from(position).unwrap()
}

#[tokio::test]
async fn reader_never_skips_a_late_commit() {
    let Some(url) = pg::url().await else { return };
    let store = pg::store(&url).await;
    let schema_path = format!("SET search_path TO \"{}\"", {
        let target = store.inner().target();
        let start = target.find("(schema ").unwrap() + "(schema ".len();
        target[start..target.len() - 1].to_owned()
    });

    // Something already in the log, read by the reader: its checkpoint.
    let early = store
        .append(testing::request("thing", AggregateId::new(), 0, 1))
        .await
        .unwrap();
    let seen = testing::conformance::read_all_settled(&store, 1).await;
    assert_eq!(seen, early);
    let checkpoint = early[0].position;

    // Transaction A takes the next position and does not commit.
    let mut a = PgConnection::connect(&url).await.unwrap();
    a.execute(schema_path.as_str()).await.unwrap();
    let a_id = AggregateId::new();
    let a_position = insert_and_hold(&mut a, a_id).await;

    // Transaction B (an ordinary append) takes a later position and commits.
    let b = store
        .append(testing::request("thing", AggregateId::new(), 0, 2))
        .await
        .unwrap();
    assert!(b[0].position > a_position, "B's positions come after A's");

    // B's rows are committed and visible to a plain query: a naive reader would take them
    // and move its checkpoint past A's position.
    let mut observer = PgConnection::connect(&url).await.unwrap();
    observer.execute(schema_path.as_str()).await.unwrap();
    let (visible,): (i64,) = sqlx::query_as("SELECT count(*) FROM fluvius_events WHERE position > $1")
        .bind(checkpoint as i64)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(visible, 2, "B is committed; A is not");

    // read_all holds B back while A is open.
    let until = Instant::now() + Duration::from_millis(700);
    let mut polls = 0;
    while Instant::now() < until {
        let page = store.read_all(checkpoint, 100).await.unwrap();
        assert!(
            page.is_empty(),
            "read_all returned {:?} while A was still open",
            page
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(polls > 10);
    // Per-aggregate reads are not held back.
    assert_eq!(store.get_events("thing", b[0].aggregate_id).await.unwrap(), b);

    // A commits: the reader gets A, then B, in order, from its checkpoint.
    a.execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + testing::conformance::SETTLE_TIMEOUT;
    let page = loop {
        let page = store.read_all(checkpoint, 100).await.unwrap();
        if page.len() >= 3 || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let positions: Vec<u64> = page.iter().map(|e| e.position).collect();
    assert_eq!(positions, [a_position, b[0].position, b[1].position]);
    assert_eq!(page[0].aggregate_id, a_id);
    assert_eq!(&page[1..], &b[..]);

    let _ = a.close().await;
    let _ = observer.close().await;
}

#[tokio::test]
async fn a_rolled_back_writer_leaves_a_gap_that_readers_pass() {
    let Some(url) = pg::url().await else { return };
    let store = pg::store(&url).await;
    let id = AggregateId::new();
    let first = store.append(testing::request("thing", id, 0, 1)).await.unwrap();
    // A conflicting append reserves nothing (the version check fails first) ...
    assert!(store
        .append(testing::request("thing", id, 0, 1))
        .await
        .unwrap_err()
        .is_conflict());
    // ... a duplicate command reserves positions and rolls back: a gap.
    let mut req = testing::request("thing", id, 1, 2);
    let record = testing::command_record(&req);
    req.command = Some(record.clone());
    let second = store.append(req).await.unwrap();
    let mut dup = testing::request("thing", AggregateId::new(), 0, 2);
    let mut dup_record = testing::command_record(&dup);
    dup_record.id = record.id;
    dup.command = Some(dup_record);
    assert_eq!(store.append(dup).await.unwrap_err().code(), "duplicate_command");
    let third = store.append(testing::request("thing", id, 3, 1)).await.unwrap();

    let all = testing::conformance::read_all_settled(&store, 4).await;
    let expected: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    assert_eq!(all, expected);
    assert!(
        all[3].position > all[2].position + 1,
        "the rolled-back block left a gap"
    );
}

#[tokio::test]
async fn positions_cannot_be_reserved_after_the_transaction_wrote() {
    let Some(url) = pg::url().await else { return };
    let store = pg::store(&url).await;
    let target = store.inner().target();
    let start = target.find("(schema ").unwrap() + "(schema ".len();
    let schema = &target[start..target.len() - 1];
    let mut conn = PgConnection::connect(&url).await.unwrap();
    conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
        .await
        .unwrap();

    // Allowed: reserving first.
    conn.execute("BEGIN").await.unwrap();
    let (first,): (i64,) = sqlx::query_as("SELECT fluvius_reserve_positions(3)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.execute("ROLLBACK").await.unwrap();
    let (next,): (i64,) = sqlx::query_as("SELECT nextval('fluvius_events_position_seq')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, first + 3, "the block of three was taken at once");

    // Refused: the transaction already has an id, so its positions could sort before those of
    // a transaction that started writing later — the order readers rely on would break.
    conn.execute("BEGIN").await.unwrap();
    conn.execute("SELECT pg_current_xact_id()").await.unwrap();
    let err = sqlx::query("SELECT fluvius_reserve_positions(1)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must run before the transaction writes"),
        "{err}"
    );
    conn.execute("ROLLBACK").await.unwrap();

    // The advisory lock was released: another reservation goes through at once.
    let reserved = tokio::time::timeout(Duration::from_secs(5), async {
        sqlx::query_as::<_, (i64,)>("SELECT fluvius_reserve_positions(1)")
            .fetch_one(&mut conn)
            .await
    })
    .await
    .expect("the advisory lock was left held")
    .unwrap();
    assert!(reserved.0 > next);
    let _ = conn.close().await;
}
