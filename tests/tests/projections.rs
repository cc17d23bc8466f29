//! Projections on SQLite: three read models of the bank domain (account balances, an activity
//! timeline, an owner directory), each in its own tables with its position committed in the
//! same transaction as its rows. Live follow, rebuild (equal to the live result), atomicity
//! (a page that fails half-way leaves nothing behind), and catch-up after a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::{BoxFuture, DispatchOptions, Projection, RetryPolicy};
use fluvius_sql::sqlite::{advance_projection, reset_projection};
use fluvius_sql::SqliteLogStore;
use fluvius_tests::*;
use sqlx::{Row, SqliteConnection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Balances,
    Activity,
    Owners,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Balances, Kind::Activity, Kind::Owners];

    fn name(self) -> &'static str {
        match self {
            Kind::Balances => "account-balances",
            Kind::Activity => "activity-timeline",
            Kind::Owners => "owner-directory",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Balances => "rm_balances",
            Kind::Activity => "rm_activity",
            Kind::Owners => "rm_owners",
        }
    }

    fn ddl(self) -> &'static str {
        match self {
            Kind::Balances => {
                "CREATE TABLE IF NOT EXISTS rm_balances \
                 (account_id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)"
            }
            Kind::Activity => {
                "CREATE TABLE IF NOT EXISTS rm_activity \
                 (position INTEGER PRIMARY KEY, account_id TEXT NOT NULL, line TEXT NOT NULL)"
            }
            Kind::Owners => {
                "CREATE TABLE IF NOT EXISTS rm_owners \
                 (owner TEXT NOT NULL, account_id TEXT NOT NULL, PRIMARY KEY (owner, account_id))"
            }
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::store("sqlite", e.to_string(), None)
}

/// One read model in the log's own SQLite database.
struct SqlProjection {
    kind: Kind,
    store: SqliteLogStore,
    /// Fail the next page after writing its rows (before the position moves).
    fail_once: Arc<AtomicBool>,
}

impl SqlProjection {
    async fn new(kind: Kind, store: &SqliteLogStore) -> Self {
        sqlx::query(kind.ddl()).execute(store.pool()).await.unwrap();
        Self {
            kind,
            store: store.clone(),
            fail_once: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn apply_one(&self, conn: &mut SqliteConnection, e: &Event) -> Result<(), Error> {
        let id = e.aggregate_id.to_string();
        let decode =
            |e: &Event| -> Result<i64, Error> { Ok(e.payload_as::<Deposited>().map_err(store_err)?.amount) };
        let query = match (self.kind, e.key.as_str()) {
            (Kind::Balances, "account-opened") => {
                let opened: AccountOpened = e.payload_as().map_err(store_err)?;
                sqlx::query("INSERT INTO rm_balances (account_id, owner, balance) VALUES (?1, ?2, 0)")
                    .bind(id)
                    .bind(opened.owner)
            }
            (Kind::Balances, "money-deposited") => {
                sqlx::query("UPDATE rm_balances SET balance = balance + ?2 WHERE account_id = ?1")
                    .bind(id)
                    .bind(decode(e)?)
            }
            (Kind::Balances, "money-withdrawn") => {
                sqlx::query("UPDATE rm_balances SET balance = balance - ?2 WHERE account_id = ?1")
                    .bind(id)
                    .bind(decode(e)?)
            }
            (Kind::Activity, key) if e.resource == "account" => {
                let line = match key {
                    "account-opened" => "opened".to_owned(),
                    "money-deposited" => format!("+{}", decode(e)?),
                    "money-withdrawn" => format!("-{}", decode(e)?),
                    other => other.to_owned(),
                };
                sqlx::query("INSERT INTO rm_activity (position, account_id, line) VALUES (?1, ?2, ?3)")
                    .bind(e.position as i64)
                    .bind(id)
                    .bind(line)
            }
            (Kind::Owners, "account-opened") => {
                let opened: AccountOpened = e.payload_as().map_err(store_err)?;
                sqlx::query("INSERT INTO rm_owners (owner, account_id) VALUES (?1, ?2)")
                    .bind(opened.owner)
                    .bind(id)
            }
            _ => return Ok(()),
        };
        query.execute(&mut *conn).await.map_err(store_err)?;
        Ok(())
    }
}

impl Projection for SqlProjection {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn position(&self) -> BoxFuture<'_, fluvius_core::Result<u64>> {
        Box::pin(async move {
            let cps = self.store.checkpoints().expect("SQLite keeps checkpoints");
            Ok(cps.checkpoint(self.kind.name()).await?.unwrap_or(0))
        })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(store_err)?;
            for e in events {
                self.apply_one(&mut tx, e).await?;
            }
            if self.fail_once.swap(false, Ordering::SeqCst) {
                // The rows above are written but not committed: dropping `tx` rolls them back.
                return Err(store_err("injected failure after writing the rows"));
            }
            let to = events.last().map_or(from, |e| e.position);
            advance_projection(&mut tx, self.kind.name(), from, to).await?;
            tx.commit().await.map_err(store_err)
        })
    }

    fn clear(&self) -> BoxFuture<'_, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(store_err)?;
            sqlx::query(&format!("DELETE FROM {}", self.kind.table()))
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            reset_projection(&mut tx, self.kind.name()).await?;
            tx.commit().await.map_err(store_err)
        })
    }
}

/// The three read models, as sorted text rows.
async fn read_models(store: &SqliteLogStore) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for kind in Kind::ALL {
        let rows = sqlx::query(&format!("SELECT * FROM {} ORDER BY 1, 2", kind.table()))
            .fetch_all(store.pool())
            .await
            .unwrap();
        let text = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<String, _>(i)
                            .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        out.insert(kind.table(), text);
    }
    out
}

/// What the balances should be, folded from the log.
fn expected_balances(log: &[Event]) -> Vec<String> {
    let mut balances: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for e in log {
        let id = e.aggregate_id.to_string();
        match e.key.as_str() {
            "account-opened" => {
                let owner = e.payload_as::<AccountOpened>().unwrap().owner;
                balances.insert(id, (owner, 0));
            }
            "money-deposited" => {
                balances.get_mut(&id).unwrap().1 += e.payload_as::<Deposited>().unwrap().amount
            }
            "money-withdrawn" => {
                balances.get_mut(&id).unwrap().1 -= e.payload_as::<Withdrawn>().unwrap().amount
            }
            _ => {}
        }
    }
    balances
        .into_iter()
        .map(|(id, (owner, balance))| format!("{id}|{owner}|{balance}"))
        .collect()
}

fn temp_db() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("fluvius-projections-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("bank.db").display());
    (dir, url)
}

async fn bank(store: &SqliteLogStore, fail_balances_once: bool) -> Domain {
    let mut builder = builder().logstore(store.clone()).dispatch(
        DispatchOptions::default()
            // A stable instance id: a restarted process takes its claims back at once.
            .instance_id("bank-app")
            .poll_interval(Duration::from_millis(50))
            .page_size(7)
            .retry(RetryPolicy {
                max_attempts: 5,
                base_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
            }),
    );
    for kind in Kind::ALL {
        let projection = SqlProjection::new(kind, store).await;
        if kind == Kind::Balances && fail_balances_once {
            projection.fail_once.store(true, Ordering::SeqCst);
        }
        builder = builder.projection(projection);
    }
    builder.build().await.unwrap()
}

async fn traffic(domain: &Domain, owners: &[&str]) {
    for (i, owner) in owners.iter().enumerate() {
        let id = AggregateId::new();
        domain
            .process_command(Account::open_account_command(id, (*owner).into()))
            .await
            .unwrap();
        for amount in 1..=(3 + i as i64) {
            domain
                .process_command(Account::deposit_command(id, amount * 10))
                .await
                .unwrap();
        }
        domain
            .process_command(Account::withdraw_command(id, 5))
            .await
            .unwrap();
    }
    create_user(domain, "not-an-account").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_projections_follow_the_log_rebuild_to_the_same_state_and_resume_after_restart() {
    let (dir, url) = temp_db();
    let store = SqliteLogStore::open(&url).await.unwrap();
    // The balances projection fails its first page after writing rows: the transaction rolls
    // back with the position, and the retry applies the page once (no double-counted money).
    let domain = bank(&store, true).await;
    traffic(&domain, &["ann", "bob", "ann"]).await;
    domain.wait_idle().await;

    let log = all_events(&domain).await;
    let live = read_models(&store).await;
    assert_eq!(live["rm_balances"], expected_balances(&log));
    let activity: Vec<&Event> = log.iter().filter(|e| e.resource == "account").collect();
    assert_eq!(live["rm_activity"].len(), activity.len());
    assert!(
        live["rm_activity"][0].ends_with("|opened"),
        "{:?}",
        live["rm_activity"]
    );
    let ann_accounts = live["rm_owners"].iter().filter(|r| r.starts_with("ann|")).count();
    assert_eq!((live["rm_owners"].len(), ann_accounts), (3, 2));
    let head = log.last().unwrap().position;
    for kind in Kind::ALL {
        assert_eq!(
            store
                .checkpoints()
                .unwrap()
                .checkpoint(kind.name())
                .await
                .unwrap(),
            Some(head),
            "{}",
            kind.name()
        );
    }

    // Rebuild: clear and replay gives the same read models.
    for kind in Kind::ALL {
        domain.rebuild_projection(kind.name()).await.unwrap();
    }
    domain.wait_idle().await;
    assert_eq!(read_models(&store).await, live, "rebuild equals the live result");
    assert!(domain.rebuild_projection("nope").await.is_err());

    // Restart: a new process on the same file continues from the stored positions.
    drop(domain);
    store.close().await;
    let store = SqliteLogStore::open(&url).await.unwrap();
    let domain = bank(&store, false).await;
    traffic(&domain, &["cy"]).await;
    domain.wait_idle().await;
    let log = all_events(&domain).await;
    let after = read_models(&store).await;
    assert_eq!(after["rm_balances"], expected_balances(&log));
    assert_eq!(
        after["rm_activity"].len(),
        log.iter().filter(|e| e.resource == "account").count()
    );
    assert_eq!(after["rm_owners"].len(), 4);
    drop(domain);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn projection_names_must_not_clash_with_handlers() {
    let store = SqliteLogStore::open("sqlite::memory:").await.unwrap();
    let err = builder()
        .logstore(store.clone())
        .handler("account-balances", "*", Seen::new().handler())
        .projection(SqlProjection::new(Kind::Balances, &store).await)
        .build()
        .await
        .err()
        .expect("a clash is refused");
    assert_eq!(err.code(), "config");
    assert!(err.to_string().contains("account-balances"), "{err}");
}
