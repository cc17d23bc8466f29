//! Old-version rows written straight into SQLite and PostgreSQL tables (as an older release
//! would have written them) are read in the current shape by `get_events`, `read_all`, aggregate
//! loads, commands (and so their handlers) and a projection fed from `read_all` — through
//! upcasters registered with `#[upcast]` — while the stored rows stay as they were.
//!
//! The PostgreSQL test needs `FLUVIUS_TEST_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`).
//! Without it, or when the server does not answer, it prints "PostgreSQL suite NOT RUN: <reason>"
//! and returns; with `CI=true` it fails instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::Name;
use fluvius_core::{Metadata, UpcastError};
use fluvius_sql::{PostgresLogStore, SqliteLogStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    first: String,
    last: String,
    tier: String,
    joined: bool,
}

/// Version 3 of `member-joined`. v1 was `{"name": "First Last"}`; v2 split the name; v3 adds
/// the tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberJoined {
    first: String,
    last: String,
    tier: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberRenamed {
    first: String,
}

#[aggregate(resource = "member")]
impl Member {
    #[action(evt_key = "member-joined", version = 3)]
    fn join(&self, first: String, last: String) -> Result<MemberJoined, DomainError> {
        Ok(MemberJoined {
            first,
            last,
            tier: "basic".into(),
        })
    }

    #[action(evt_key = "member-renamed")]
    fn rename(&self, first: String) -> Result<MemberRenamed, DomainError> {
        if !self.joined {
            return Err(DomainError::rejected("not a member"));
        }
        Ok(MemberRenamed { first })
    }

    #[apply("member-joined")]
    fn joined(&mut self, e: MemberJoined) {
        self.first = e.first;
        self.last = e.last;
        self.tier = e.tier;
        self.joined = true;
    }

    #[apply("member-renamed")]
    fn renamed(&mut self, e: MemberRenamed) {
        self.first = e.first;
    }
}

#[upcast("member-joined", from = 1)]
fn split_name(v1: Value) -> Result<Value, UpcastError> {
    let name = v1["name"]
        .as_str()
        .ok_or_else(|| UpcastError::msg("v1 payload has no `name`"))?;
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    Ok(json!({ "first": first, "last": last }))
}

#[upcast("member-joined", from = 2)]
fn add_tier(mut v2: Value) -> Result<Value, UpcastError> {
    v2["tier"] = json!("legacy");
    Ok(v2)
}

/// One old row, as a release before this one wrote it.
struct OldRow {
    aggregate_id: AggregateId,
    schema_version: u32,
    payload: Value,
}

fn old_rows() -> Vec<OldRow> {
    vec![
        OldRow {
            aggregate_id: AggregateId::new(),
            schema_version: 1,
            payload: json!({ "name": "Ada Lovelace" }),
        },
        OldRow {
            aggregate_id: AggregateId::new(),
            schema_version: 2,
            payload: json!({ "first": "Grace", "last": "Hopper" }),
        },
    ]
}

fn metadata_json() -> String {
    serde_json::to_string(&Metadata::default()).unwrap()
}

async fn insert_sqlite(store: &SqliteLogStore, row: &OldRow) {
    sqlx::query(
        "INSERT INTO fluvius_events (id, namespace, resource, aggregate_id, aggregate_version, key, \
         schema_version, payload, args, metadata, command_id, command_name, recorded_at) \
         VALUES (?1, 'default', 'member', ?2, 1, 'member-joined', ?3, ?4, 'null', ?5, ?6, 'join', ?7)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(row.aggregate_id.to_string())
    .bind(i64::from(row.schema_version))
    .bind(row.payload.to_string())
    .bind(metadata_json())
    .bind(Uuid::now_v7().to_string())
    .bind(chrono::Utc::now().timestamp_micros())
    .execute(store.pool())
    .await
    .expect("insert an old row into SQLite");
}

async fn insert_postgres(store: &PostgresLogStore, row: &OldRow) {
    sqlx::query(
        "INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key, \
         schema_version, payload, args, metadata, command_id, command_name, recorded_at) \
         VALUES (fluvius_reserve_positions(1), $1, 'default', 'member', $2, 1, 'member-joined', $3, $4::json, \
         'null', $5::json, $6, 'join', now())",
    )
    .bind(Uuid::now_v7())
    .bind(row.aggregate_id.as_uuid())
    .bind(row.schema_version as i32)
    .bind(row.payload.to_string())
    .bind(metadata_json())
    .bind(Uuid::now_v7())
    .execute(store.pool())
    .await
    .expect("insert an old row into PostgreSQL");
}

/// Everything in the log (waiting, on PostgreSQL, for `read_all` to show `count` events).
async fn read_all_settled(store: &dyn LogStore, count: usize) -> Vec<Event> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = store.read_all(0, 1000).await.unwrap();
        if all.len() >= count || std::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The checks, on a store that already holds `rows` (written raw).
async fn old_rows_read_in_the_current_shape(store: Arc<dyn LogStore>, rows: &[OldRow]) {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = handled.clone();
    let domain = Domain::builder()
        .aggregate::<Member>()
        .logstore_arc(store.clone())
        .global_handlers_filter(|_| false)
        .handler("collect", "member-*", move |e: Arc<Event>| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((e.key.clone(), e.schema_version, e.payload.to_value().unwrap()));
                Ok(())
            }
        })
        .build()
        .await
        .expect("domain builds with the #[upcast] upcasters");
    domain
        .check_schema_versions()
        .await
        .expect("every stored version can be lifted");

    let expected = [
        json!({ "first": "Ada", "last": "Lovelace", "tier": "legacy" }),
        json!({ "first": "Grace", "last": "Hopper", "tier": "legacy" }),
    ];
    for (row, want) in rows.iter().zip(&expected) {
        // get_events
        let events = domain
            .logstore()
            .get_events("member", row.aggregate_id)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].schema_version, 3);
        assert_eq!(&events[0].payload.to_value().unwrap(), want);
        // load
        let member: Member = domain.load(row.aggregate_id).await.unwrap();
        assert_eq!(
            (
                member.first.as_str(),
                member.last.as_str(),
                member.tier.as_str(),
                member.joined
            ),
            (
                want["first"].as_str().unwrap(),
                want["last"].as_str().unwrap(),
                "legacy",
                true
            )
        );
    }

    // read_all, and a projection (name by aggregate) fed from it.
    let all = read_all_settled(domain.logstore().as_ref(), rows.len()).await;
    assert_eq!(all.len(), rows.len());
    assert!(
        all.iter().all(|e| e.schema_version == 3),
        "read_all lifts every event"
    );
    let mut names = HashMap::new();
    for e in &all {
        let joined: MemberJoined = e.payload.decode().expect("the projection reads the v3 shape");
        names.insert(
            e.aggregate_id,
            format!("{} {} ({})", joined.first, joined.last, joined.tier),
        );
    }
    assert_eq!(names[&rows[0].aggregate_id], "Ada Lovelace (legacy)");
    assert_eq!(names[&rows[1].aggregate_id], "Grace Hopper (legacy)");

    // A command decides on the upcast state (rename needs a joined member); its handler runs.
    let resp = domain
        .process_command(Member::rename_command(rows[0].aggregate_id, "Augusta".into()))
        .await
        .expect("the old member can be renamed");
    assert_eq!(resp.version, 2);
    domain.wait_idle().await;
    assert_eq!(
        *handled.lock().unwrap(),
        vec![
            // A new handler catches up from the start of the log: the old rows reach it lifted.
            (
                Name::from("member-joined"),
                3,
                json!({ "first": "Ada", "last": "Lovelace", "tier": "legacy" })
            ),
            (
                Name::from("member-joined"),
                3,
                json!({ "first": "Grace", "last": "Hopper", "tier": "legacy" })
            ),
            (Name::from("member-renamed"), 1, json!({ "first": "Augusta" })),
        ]
    );
    let member: Member = domain.load(rows[0].aggregate_id).await.unwrap();
    assert_eq!(
        (member.first.as_str(), member.last.as_str()),
        ("Augusta", "Lovelace")
    );

    // The stored rows are untouched.
    for row in rows {
        let raw = store.get_events("member", row.aggregate_id).await.unwrap();
        assert_eq!(raw[0].schema_version, row.schema_version);
        assert_eq!(raw[0].payload.to_value().unwrap(), row.payload);
    }
}

#[tokio::test]
async fn old_rows_in_sqlite_are_read_in_the_current_shape() {
    let store = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    let rows = old_rows();
    for row in &rows {
        insert_sqlite(&store, row).await;
    }
    old_rows_read_in_the_current_shape(Arc::new(store), &rows).await;
}

/// The test server's URL, or `None` (printed) when it is not configured or not reachable;
/// panics under `CI=true`.
async fn pg_url() -> Option<String> {
    let reason = match std::env::var("FLUVIUS_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => match PostgresLogStore::builder(&url)
            .acquire_timeout(Duration::from_secs(5))
            .run_migrations(false)
            .connect()
            .await
        {
            Ok(store) => {
                store.close().await;
                return Some(url);
            }
            Err(e) => format!("cannot connect: {e}"),
        },
        _ => "FLUVIUS_TEST_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)".to_owned(),
    };
    let message = format!("PostgreSQL suite NOT RUN: {reason}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} — CI=true requires the PostgreSQL suite");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
    None
}

/// Drops the test schema when the test ends, also when it panics.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test schema")
                .block_on(async {
                    use sqlx::{Connection, Executor};
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = conn
                            .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                            .await;
                    }
                })
        })
        .join();
    }
}

#[tokio::test]
async fn old_rows_in_postgres_are_read_in_the_current_shape() {
    let Some(url) = pg_url().await else { return };
    let schema = format!("fluvius_upcast_{}", Uuid::new_v4().simple());
    let _guard = DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let store = PostgresLogStore::builder(&url)
        .schema(&schema)
        .connect()
        .await
        .expect("connect the test store");
    let rows = old_rows();
    for row in &rows {
        insert_postgres(&store, row).await;
    }
    old_rows_read_in_the_current_shape(Arc::new(store), &rows).await;
}
