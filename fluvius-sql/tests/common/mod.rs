//! Shared by the fluvius-sql integration tests. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod child;
pub mod counter;
#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::io::Write;
use std::time::{Duration, Instant};

/// Write a line to the real stderr, past the test harness's output capture (which only
/// intercepts `print!` / `eprint!`), so it shows even for a passing test.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvius-sql-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("cannot create a temp dir");
    dir
}

/// Wait (without asserting on time) until `stats()` satisfies `done`; panics after a generous
/// deadline so a stuck writer or reader fails the test instead of hanging it.
pub async fn wait_for<T: std::fmt::Debug>(stats: impl Fn() -> T, done: impl Fn(&T) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&stats()) {
        assert!(Instant::now() < deadline, "never got there: {:?}", stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
