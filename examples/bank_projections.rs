//! Bank read models on SQLite: account balances, an activity timeline and an owner directory,
//! each a `Projection` fed from the log, with its position committed in the same transaction as
//! its rows. The domain writes, the projections follow live; then one is rebuilt from zero and
//! comes out identical.
//!
//! ```text
//! cargo run --example bank_projections
//! ```

use std::path::PathBuf;

use fluvius_core::prelude::*;
use fluvius_core::{BoxFuture, Projection};
use fluvius_sql::sqlite::{advance_projection, reset_projection};
use fluvius_sql::SqliteLogStore;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite};

/// One account's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
    open: bool,
}

/// Payload of `account-opened`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opened {
    owner: String,
}

/// Payload of `money-deposited` and `money-withdrawn`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Amount {
    amount: i64,
}

#[aggregate(resource = "account")]
impl Account {
    /// Open the account.
    #[action(evt_key = "account-opened")]
    fn open(&self, owner: String) -> Result<Opened, DomainError> {
        if self.open {
            return Err(DomainError::new("already_open", "account is already open"));
        }
        Ok(Opened { owner })
    }

    /// Put money in.
    #[action(evt_key = "money-deposited")]
    fn deposit(&self, amount: i64) -> Result<Amount, DomainError> {
        Ok(Amount { amount })
    }

    /// Take money out; never below zero.
    #[action(evt_key = "money-withdrawn")]
    fn withdraw(&self, amount: i64) -> Result<Amount, DomainError> {
        if amount > self.balance {
            return Err(DomainError::new("insufficient_funds", "balance too low"));
        }
        Ok(Amount { amount })
    }

    #[apply("account-opened")]
    fn opened(&mut self, _e: Opened) {
        self.open = true;
    }

    #[apply("money-deposited")]
    fn deposited(&mut self, e: Amount) {
        self.balance += e.amount;
    }

    #[apply("money-withdrawn")]
    fn withdrawn(&mut self, e: Amount) {
        self.balance -= e.amount;
    }
}

type Statement = sqlx::query::Query<'static, Sqlite, SqliteArguments<'static>>;

/// A read model in the log's SQLite database: its table, and the statement (if any) that one
/// event turns into.
struct ReadModel {
    name: &'static str,
    table: &'static str,
    on_event: fn(&Event) -> Result<Option<Statement>, serde_json::Error>,
    store: SqliteLogStore,
}

fn db(e: impl std::fmt::Display) -> Error {
    Error::store("sqlite", e.to_string(), None)
}

impl Projection for ReadModel {
    fn name(&self) -> &str {
        self.name
    }

    fn position(&self) -> BoxFuture<'_, fluvius_core::Result<u64>> {
        Box::pin(async move {
            let cps = self.store.checkpoints().expect("SQLite keeps checkpoints");
            Ok(cps.checkpoint(self.name).await?.unwrap_or(0))
        })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(db)?;
            for event in events {
                if let Some(statement) = (self.on_event)(event).map_err(db)? {
                    statement.execute(&mut *tx).await.map_err(db)?;
                }
            }
            let to = events.last().map_or(from, |e| e.position);
            advance_projection(&mut tx, self.name, from, to).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn clear(&self) -> BoxFuture<'_, fluvius_core::Result<()>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(db)?;
            sqlx::query(&format!("DELETE FROM {}", self.table))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            reset_projection(&mut tx, self.name).await?;
            tx.commit().await.map_err(db)
        })
    }
}

fn balances(e: &Event) -> Result<Option<Statement>, serde_json::Error> {
    let id = e.aggregate_id.to_string();
    Ok(match e.key.as_str() {
        "account-opened" => Some(
            sqlx::query("INSERT INTO balances (account_id, owner, balance) VALUES (?1, ?2, 0)")
                .bind(id)
                .bind(e.payload_as::<Opened>()?.owner),
        ),
        "money-deposited" | "money-withdrawn" => {
            let amount = e.payload_as::<Amount>()?.amount;
            let delta = if e.key == "money-deposited" {
                amount
            } else {
                -amount
            };
            Some(
                sqlx::query("UPDATE balances SET balance = balance + ?2 WHERE account_id = ?1")
                    .bind(id)
                    .bind(delta),
            )
        }
        _ => None,
    })
}

fn activity(e: &Event) -> Result<Option<Statement>, serde_json::Error> {
    let line = match e.key.as_str() {
        "account-opened" => format!("opened for {}", e.payload_as::<Opened>()?.owner),
        "money-deposited" => format!("deposit {}", e.payload_as::<Amount>()?.amount),
        "money-withdrawn" => format!("withdrawal {}", e.payload_as::<Amount>()?.amount),
        _ => return Ok(None),
    };
    Ok(Some(
        sqlx::query("INSERT INTO activity (position, account_id, at, line) VALUES (?1, ?2, ?3, ?4)")
            .bind(e.position as i64)
            .bind(e.aggregate_id.to_string())
            .bind(e.timestamp.to_rfc3339())
            .bind(line),
    ))
}

fn owners(e: &Event) -> Result<Option<Statement>, serde_json::Error> {
    if e.key != "account-opened" {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query("INSERT INTO owners (owner, account_id) VALUES (?1, ?2)")
            .bind(e.payload_as::<Opened>()?.owner)
            .bind(e.aggregate_id.to_string()),
    ))
}

async fn read_model(
    store: &SqliteLogStore,
    name: &'static str,
    table: &'static str,
    ddl: &'static str,
    on_event: fn(&Event) -> Result<Option<Statement>, serde_json::Error>,
) -> Result<ReadModel, Error> {
    sqlx::query(ddl).execute(store.pool()).await.map_err(db)?;
    Ok(ReadModel {
        name,
        table,
        on_event,
        store: store.clone(),
    })
}

async fn dump(store: &SqliteLogStore, table: &str) -> Result<Vec<String>, Error> {
    let rows: Vec<SqliteRow> = sqlx::query(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
        .fetch_all(store.pool())
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<String, _>(i)
                        .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
        .join("examples-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bank_projections.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    println!("store: SQLite {}", path.display());
    let store = SqliteLogStore::open(&format!("sqlite://{}", path.display())).await?;

    let models = [
        ("account-balances", "balances", "CREATE TABLE balances (account_id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)", balances as fn(&Event) -> _),
        ("activity-timeline", "activity", "CREATE TABLE activity (position INTEGER PRIMARY KEY, account_id TEXT NOT NULL, at TEXT NOT NULL, line TEXT NOT NULL)", activity),
        ("owner-directory", "owners", "CREATE TABLE owners (owner TEXT NOT NULL, account_id TEXT NOT NULL, PRIMARY KEY (owner, account_id))", owners),
    ];
    let mut builder = Domain::builder()
        .namespace("bank")
        .aggregate::<Account>()
        .logstore(store.clone())
        .without_global_handlers();
    for (name, table, ddl, on_event) in models {
        builder = builder.projection(read_model(&store, name, table, ddl, on_event).await?);
    }
    let bank = builder.build().await?;

    for (owner, deposits) in [("Alice", [100, 250]), ("Bob", [40, 60]), ("Alice", [5, 5])] {
        let id = AggregateId::new();
        bank.process_command(Account::open_command(id, owner.into()))
            .await?;
        for amount in deposits {
            bank.process_command(Account::deposit_command(id, amount)).await?;
        }
        bank.process_command(Account::withdraw_command(id, 10)).await?;
    }
    bank.wait_idle().await;

    let mut before = Vec::new();
    for (_, table, _, _) in models {
        let rows = dump(&store, table).await?;
        println!("{table}:");
        for row in &rows {
            println!("  {row}");
        }
        before.push(rows);
    }

    for (name, _, _, _) in models {
        bank.rebuild_projection(name).await?;
    }
    bank.wait_idle().await;
    for ((_, table, _, _), rows) in models.iter().zip(&before) {
        if dump(&store, table).await? != *rows {
            return Err(format!("rebuilding {table} gave a different result").into());
        }
    }
    println!("rebuilt all three read models from the log: identical");
    Ok(())
}
