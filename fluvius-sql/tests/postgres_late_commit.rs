//! PostgreSQL: a reader of the global log never skips a transaction that commits late.
//!
//! Nor does it wait for transactions that are not its appends (another schema, another
//! database). Its own test binary, because it holds write transactions open on purpose. Needs
//! `FLUVIUS_TEST_PG_URL`, like `postgres.rs`.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use fluvius_core::testing;
use fluvius_core::testing::WithCleanup;
use fluvius_core::{AggregateId, LogStore};
use fluvius_sql::PostgresLogStore;
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

/// Transaction A: one event inserted the way an append does, held open (on the returned
/// connection). Then append B (two events) commits through `store`. Returns A's connection,
/// aggregate and position, and B's events.
async fn hold_a_then_commit_b(
    url: &str,
    store: &WithCleanup<PostgresLogStore>,
) -> (PgConnection, AggregateId, u64, Vec<fluvius_core::Event>) {
    let mut a = PgConnection::connect(url).await.unwrap();
    a.execute(format!("SET search_path TO \"{}\"", schema_of(store.inner())).as_str())
        .await
        .unwrap();
    let a_id = AggregateId::new();
    let a_position = insert_and_hold(&mut a, a_id).await;
    let b = store
        .append(testing::request("thing", AggregateId::new(), 0, 2))
        .await
        .unwrap();
    assert!(b[0].position > a_position, "B's positions come after A's");
    (a, a_id, a_position, b)
}

#[tokio::test]
async fn reader_never_skips_a_late_commit() {
    let Some(url) = pg::url().await else { return };
    let store = pg::store(&url).await;
    let schema_path = format!("SET search_path TO \"{}\"", schema_of(store.inner()));

    // Something already in the log, read by the reader: its checkpoint.
    let early = store
        .append(testing::request("thing", AggregateId::new(), 0, 1))
        .await
        .unwrap();
    let seen = testing::conformance::read_all_settled(&store, 1).await;
    assert_eq!(seen, early);
    let checkpoint = early[0].position;

    // Transaction A takes the next position and does not commit; transaction B (an ordinary
    // append) takes a later position and commits.
    let (mut a, a_id, a_position, b) = hold_a_then_commit_b(&url, &store).await;

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
    let schema = schema_of(store.inner());
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

/// The schema of a test store, from its target description.
fn schema_of(store: &PostgresLogStore) -> String {
    let target = store.target();
    let start = target.find("(schema ").unwrap() + "(schema ".len();
    target[start..target.len() - 1].to_owned()
}

/// A database of its own on the test server, dropped with the guard (also on panic).
struct DatabaseGuard {
    url: String,
    name: String,
}

impl DatabaseGuard {
    async fn create(url: &str) -> Self {
        let name = format!("fluvius_test_db_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(url).await.unwrap();
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        Self {
            url: url.to_owned(),
            name,
        }
    }

    async fn connect(&self) -> PgConnection {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)
            .unwrap()
            .database(&self.name);
        PgConnection::connect_with(&options).await.unwrap()
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = PgConnection::connect(&url).await?;
                    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                        .await
                })
        })
        .join();
    }
}

/// A write transaction of someone else, left open: `BEGIN`, then a table created and a row
/// inserted in a schema of its own on `conn` (which may be in another database). Returns its
/// transaction id.
async fn open_stranger(conn: &mut PgConnection) -> i64 {
    let schema = pg::schema_name();
    conn.execute("BEGIN").await.unwrap();
    conn.execute(format!("CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".batch (n int)").as_str())
        .await
        .unwrap();
    conn.execute(format!("INSERT INTO \"{schema}\".batch VALUES (1)").as_str())
        .await
        .unwrap();
    sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// True when `event`'s row is hidden by the cluster-wide horizon (the snapshot's xmin): what
/// `read_all` used to filter on. Shows the stranger really holds that horizon back.
async fn hidden_by_cluster_horizon(observer: &mut PgConnection, position: u64) -> bool {
    sqlx::query_scalar(
        "SELECT NOT (xact_id < pg_snapshot_xmin(pg_current_snapshot())) FROM fluvius_events WHERE position = $1",
    )
    .bind(i64::try_from(position).unwrap())
    .fetch_one(observer)
    .await
    .unwrap()
}

/// Poll `read_all(after)` until it returns at least `n` events; panics after `within`.
async fn read_all_within(
    store: &dyn LogStore,
    after: u64,
    n: usize,
    within: Duration,
) -> Vec<fluvius_core::Event> {
    let deadline = Instant::now() + within;
    loop {
        let page = store.read_all(after, 100).await.unwrap();
        if page.len() >= n {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "read_all returned {} of {n} events after {within:?}",
            page.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Write transactions held open elsewhere on the server — in another schema of the same
/// database and in another database — do not hold back `read_all`, `head_position` or a
/// handler: they see a new event while both strangers are still open. (Each stranger is open
/// for 5 s at most; everything below must happen before that.)
#[tokio::test]
async fn readers_and_handlers_do_not_wait_for_strangers() {
    let Some(url) = pg::url().await else { return };
    let guard = pg::SchemaGuard::fresh(&url);
    let store = PostgresLogStore::builder(&url)
        .schema(&guard.schema)
        .max_connections(4)
        .connect()
        .await
        .unwrap();
    let (tx, mut handled) = tokio::sync::mpsc::unbounded_channel::<Uuid>();
    let domain = fluvius_core::Domain::builder()
        .namespace("counter-test")
        .aggregate::<common::counter::Counter>()
        .logstore(store.clone())
        .without_global_handlers()
        .dispatch(fluvius_core::DispatchOptions::default().poll_interval(Duration::from_millis(50)))
        .handler(
            "listener",
            "*",
            move |event: std::sync::Arc<fluvius_core::Event>| {
                let _ = tx.send(event.id);
                async { Ok::<(), fluvius_core::HandlerError>(()) }
            },
        )
        .build()
        .await
        .unwrap();
    domain.wait_idle().await;

    let other_db = DatabaseGuard::create(&url).await;
    let mut same_db_stranger = PgConnection::connect(&url).await.unwrap();
    let mut other_db_stranger = other_db.connect().await;
    let mut observer = PgConnection::connect(&url).await.unwrap();
    observer
        .execute(format!("SET search_path TO \"{}\"", guard.schema).as_str())
        .await
        .unwrap();
    let opened = Instant::now();
    let stranger_xids = [
        open_stranger(&mut same_db_stranger).await,
        open_stranger(&mut other_db_stranger).await,
    ];

    let response = domain
        .process_command(fluvius_core::Command::new(
            "counter",
            AggregateId::new(),
            "add",
            serde_json::json!({ "by": 1 }),
        ))
        .await
        .unwrap();
    let event = &response.events[0];
    assert!(
        hidden_by_cluster_horizon(&mut observer, event.position).await,
        "the strangers (xids {stranger_xids:?}) hold the cluster-wide horizon back"
    );

    let left = Duration::from_secs(5).saturating_sub(opened.elapsed());
    let page = read_all_within(&store, 0, 1, left).await;
    assert_eq!(page[0].id, event.id);
    assert!(store.head_position().await.unwrap() >= event.position);
    let seen = tokio::time::timeout(
        Duration::from_secs(5).saturating_sub(opened.elapsed()),
        handled.recv(),
    )
    .await
    .expect("the handler saw the event while the strangers were open")
    .unwrap();
    assert_eq!(seen, event.id);
    // Still open: each stranger's transaction is the one that was opened.
    for (conn, xid) in [
        (&mut same_db_stranger, stranger_xids[0]),
        (&mut other_db_stranger, stranger_xids[1]),
    ] {
        let now: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(now, xid, "the stranger's transaction was still open");
        conn.execute("ROLLBACK").await.unwrap();
    }
    let _ = same_db_stranger.close().await;
    let _ = other_db_stranger.close().await;
    let _ = observer.close().await;
    drop(domain);
}

/// With a stranger holding the cluster-wide horizon back, the store's own horizon still
/// respects its own appends: an event committed before a fluvius append A reserved its
/// positions is returned, an append B that commits while A is open is held back, and A then
/// B come once A commits.
#[tokio::test]
async fn own_appends_still_hold_readers_back_when_strangers_do_not() {
    let Some(url) = pg::url().await else { return };
    let store = pg::store(&url).await;
    let mut stranger = PgConnection::connect(&url).await.unwrap();
    open_stranger(&mut stranger).await;

    // C commits after the stranger began: readers see it although the stranger is open.
    let c = store
        .append(testing::request("thing", AggregateId::new(), 0, 1))
        .await
        .unwrap();
    let page = read_all_within(&store, 0, 1, Duration::from_secs(5)).await;
    assert_eq!(page, c);

    // A reserves its positions and stays open; B commits after it.
    let (mut a, a_id, a_position, b) = hold_a_then_commit_b(&url, &store).await;
    for _ in 0..20 {
        assert_eq!(
            store.read_all(0, 100).await.unwrap(),
            c,
            "B returned while A was open"
        );
        assert_eq!(store.head_position().await.unwrap(), c[0].position);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    a.execute("COMMIT").await.unwrap();
    let page = read_all_within(&store, c[0].position, 3, Duration::from_secs(5)).await;
    let positions: Vec<u64> = page.iter().map(|e| e.position).collect();
    assert_eq!(positions, [a_position, b[0].position, b[1].position]);
    assert_eq!(page[0].aggregate_id, a_id);
    assert_eq!(store.head_position().await.unwrap(), b[1].position);
    stranger.execute("ROLLBACK").await.unwrap();
    let _ = stranger.close().await;
    let _ = a.close().await;
}
