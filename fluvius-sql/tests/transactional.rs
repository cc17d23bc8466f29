//! Transactional handlers on the SQL stores: a uniqueness check across aggregates written in
//! the append's transaction (its row commits or rolls back with the events), under concurrent
//! commands that group commit writes in shared transactions, on SQLite and PostgreSQL.
//!
//! The PostgreSQL half needs `FLUVIUS_TEST_PG_URL` (see `postgres.rs`); it prints "NOT RUN"
//! and returns without it (and fails under `CI=true`).
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use fluvius_core::prelude::*;
use fluvius_core::{AppendTx, BoxFuture, LogStore};
use fluvius_sql::AppendTxExt;
use serde::{Deserialize, Serialize};

/// A user, registered once with an e-mail that no other user has.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    email: Option<String>,
}

/// The payload of `user-registered`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    email: String,
}

#[aggregate(resource = "user")]
impl User {
    #[action(evt_key = "user-registered", resources = ["user"])]
    async fn register(&self, email: String) -> Result<Registered, DomainError> {
        if self.email.is_some() {
            return Err(DomainError::rejected("already registered"));
        }
        Ok(Registered { email })
    }

    #[apply("user-registered")]
    fn registered(&mut self, e: Registered) {
        self.email = Some(e.email);
    }
}

/// Which SQL dialect the handler speaks.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Claim the event's e-mail in `user_emails` inside the append's transaction; a taken e-mail
/// refuses the command. An e-mail of `"broken@sql"` runs a failing statement instead (a SQL
/// error inside the transaction must fail its own command only).
fn claim_email<'a>(
    dialect: Dialect,
    event: &'a Event,
    tx: &'a mut AppendTx<'_>,
) -> BoxFuture<'a, Result<(), DomainError>> {
    Box::pin(async move {
        let email = event.payload.decode::<Registered>()?.email;
        let (insert, broken) = match dialect {
            Dialect::Sqlite => (
                "INSERT INTO user_emails (email, user_id) VALUES (?1, ?2) ON CONFLICT (email) DO NOTHING",
                "INSERT INTO no_such_table VALUES (?1)",
            ),
            Dialect::Postgres => (
                "INSERT INTO user_emails (email, user_id) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING",
                "INSERT INTO no_such_table VALUES ($1)",
            ),
        };
        let sql = if email == "broken@sql" { broken } else { insert };
        let user = event.aggregate_id.to_string();
        let inserted = match dialect {
            Dialect::Sqlite => sqlx::query(sql)
                .bind(&email)
                .bind(&user)
                .execute(tx.sqlite()?)
                .await?
                .rows_affected(),
            Dialect::Postgres => sqlx::query(sql)
                .bind(&email)
                .bind(&user)
                .execute(tx.postgres()?)
                .await?
                .rows_affected(),
        };
        if inserted == 0 {
            return Err(DomainError::new(
                "email_taken",
                format!("{email} is already registered"),
            ));
        }
        Ok(())
    })
}

async fn domain(store: Arc<dyn LogStore>, dialect: Dialect) -> Domain {
    Domain::builder()
        .aggregate::<User>()
        .logstore_arc(store)
        .without_global_handlers()
        .transactional_handler(
            "unique-email",
            "user-registered",
            move |event: &Event, tx: &mut AppendTx<'_>| claim_email(dialect, event, tx),
        )
        .build()
        .await
        .expect("build the domain")
}

/// The e-mail claims in the table, by e-mail.
async fn claims(pool: &Pool) -> HashMap<String, String> {
    const SELECT: &str = "SELECT email, user_id FROM user_emails";
    let rows: Vec<(String, String)> = match pool {
        Pool::Sqlite(p) => sqlx::query_as(SELECT).fetch_all(p).await.unwrap(),
        Pool::Postgres(p) => sqlx::query_as(SELECT).fetch_all(p).await.unwrap(),
    };
    rows.into_iter().collect()
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// 24 concurrent registrations: 8 race for one e-mail, 15 have their own, one breaks its SQL.
/// Exactly one racer wins; the losers and the broken one are refused with nothing stored;
/// everyone else commits, and the claims table matches the log exactly.
async fn uniqueness_under_concurrency(store: Arc<dyn LogStore>, dialect: Dialect, pool: Pool) {
    let domain = domain(store.clone(), dialect).await;
    let racers: Vec<AggregateId> = (0..8).map(|_| AggregateId::new()).collect();
    let loners: Vec<AggregateId> = (0..15).map(|_| AggregateId::new()).collect();
    let broken = AggregateId::new();
    let mut commands: Vec<(AggregateId, String)> =
        racers.iter().map(|id| (*id, "shared@x".to_owned())).collect();
    commands.extend(
        loners
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, format!("user{i}@x"))),
    );
    commands.push((broken, "broken@sql".to_owned()));
    let barrier = Arc::new(tokio::sync::Barrier::new(commands.len()));
    let tasks: Vec<_> = commands
        .into_iter()
        .map(|(id, email)| {
            let (domain, barrier) = (domain.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (
                    id,
                    domain.process_command(User::register_command(id, email)).await,
                )
            })
        })
        .collect();
    let mut results = HashMap::new();
    for task in tasks {
        let (id, result) = task.await.expect("a command task panicked");
        results.insert(id, result);
    }

    let winners: Vec<_> = racers.iter().filter(|id| results[id].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one racer registers shared@x");
    for id in racers.iter().filter(|id| !winners.contains(id)) {
        match &results[id] {
            Err(Error::RefusedByHandler { handler, reason }) => {
                assert_eq!(handler, "unique-email");
                assert_eq!(reason.code(), "email_taken");
            }
            other => panic!("a losing racer: expected RefusedByHandler, got {other:?}"),
        }
    }
    for id in &loners {
        let response = results[id]
            .as_ref()
            .unwrap_or_else(|e| panic!("a loner failed: {e} ({e:?})"));
        assert_eq!(response.version, 1);
    }
    match &results[&broken] {
        Err(e @ Error::RefusedByHandler { reason, .. }) => {
            assert!(
                reason.message().contains("no_such_table"),
                "the SQL error is reported: {e}"
            );
        }
        other => panic!("the broken handler: expected RefusedByHandler, got {other:?}"),
    }

    // The claims and the log agree: one claim per stored registration, by the same user.
    let claims = claims(&pool).await;
    assert_eq!(
        claims.len(),
        16,
        "15 loners and one racer hold a claim: {claims:?}"
    );
    assert_eq!(claims["shared@x"], winners[0].to_string());
    let mut registered = 0;
    for (id, result) in &results {
        let events = store.get_events("user", *id).await.unwrap();
        assert_eq!(
            events.len(),
            usize::from(result.is_ok()),
            "only accepted commands are stored"
        );
        registered += events.len();
    }
    assert_eq!(registered, claims.len());

    // A refused user can register with a free e-mail afterwards.
    let loser = racers.iter().find(|id| !winners.contains(id)).unwrap();
    let response = domain
        .process_command(User::register_command(*loser, "mine@x".into()))
        .await
        .expect("a free e-mail registers");
    assert_eq!(response.version, 1);
    let user: User = domain.load(*loser).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("mine@x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_unique_email() {
    let dir = common::temp_dir("transactional");
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let store = fluvius_sql::SqliteLogStore::open(&url).await.unwrap();
    sqlx::query("CREATE TABLE user_emails (email TEXT PRIMARY KEY, user_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let pool = Pool::Sqlite(store.pool().clone());
    uniqueness_under_concurrency(Arc::new(store), Dialect::Sqlite, pool).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unique_email() {
    let Some(url) = common::pg::url().await else {
        return;
    };
    let store = common::pg::store(&url).await;
    sqlx::query("CREATE TABLE user_emails (email TEXT PRIMARY KEY, user_id TEXT NOT NULL)")
        .execute(store.inner().pool())
        .await
        .unwrap();
    let pool = Pool::Postgres(store.inner().pool().clone());
    uniqueness_under_concurrency(Arc::new(store), Dialect::Postgres, pool).await;
}

/// The handler asks for the wrong store's connection: a clear refusal, nothing stored.
#[tokio::test]
async fn wrong_connection_type_is_a_clear_refusal() {
    let store: Arc<dyn LogStore> = Arc::new(
        fluvius_sql::SqliteLogStore::open("sqlite::memory:")
            .await
            .unwrap(),
    );
    let domain = domain(store.clone(), Dialect::Postgres).await;
    let id = AggregateId::new();
    match domain
        .process_command(User::register_command(id, "a@x".into()))
        .await
    {
        Err(Error::RefusedByHandler { reason, .. }) => {
            assert_eq!(reason.code(), "wrong_store");
            assert!(reason.message().contains("`sqlite`"), "{}", reason.message());
        }
        other => panic!("expected RefusedByHandler, got {other:?}"),
    }
    assert!(store.get_events("user", id).await.unwrap().is_empty());
}
