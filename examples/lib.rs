//! Shared parts of the runnable examples (see the `[[example]]` targets): their aggregates (in
//! [`domain`], so the tests in `examples/tests` can check them with the given/when/then harness)
//! and choosing a store from the command line.

use std::path::PathBuf;
use std::sync::Arc;

use fluvius_core::{LogStore, MemoryLogStore};

/// The aggregates of the examples.
pub mod domain {
    pub mod bank_account;
    pub mod light_switch;
}

/// Pick the log store for an example:
/// `--memory` → [`MemoryLogStore`]; `DATABASE_URL=postgres://…` → PostgreSQL;
/// otherwise an embedded SQLite file `target/examples-data/<name>.db`, created fresh.
pub async fn store_from_args(name: &str) -> Result<Arc<dyn LogStore>, fluvius_core::Error> {
    store_from_args_with(name, &[]).await
}

/// [`store_from_args`], then run the `setup` statements (e.g. `CREATE TABLE IF NOT EXISTS …`
/// for a table the example writes from a transactional handler) on a SQL store.
pub async fn store_from_args_with(
    name: &str,
    setup: &[&str],
) -> Result<Arc<dyn LogStore>, fluvius_core::Error> {
    if std::env::args().any(|a| a == "--memory") {
        println!("store: memory");
        return Ok(Arc::new(MemoryLogStore::new()));
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if url.starts_with("postgres") {
            println!("store: PostgreSQL");
            let store = fluvius_sql::PostgresLogStore::connect(&url).await?;
            for sql in setup {
                sqlx::query(sql)
                    .execute(store.pool())
                    .await
                    .map_err(|e| fluvius_core::Error::store("postgres", e.to_string(), None))?;
            }
            return Ok(Arc::new(store));
        }
    }
    let dir = data_dir();
    std::fs::create_dir_all(&dir).map_err(|e| fluvius_core::Error::store("sqlite", e.to_string(), None))?;
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    println!("store: SQLite {}", path.display());
    let store = fluvius_sql::SqliteLogStore::open(&format!("sqlite://{}", path.display())).await?;
    for sql in setup {
        sqlx::query(sql)
            .execute(store.pool())
            .await
            .map_err(|e| fluvius_core::Error::store("sqlite", e.to_string(), None))?;
    }
    Ok(Arc::new(store))
}

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("examples-data")
}
