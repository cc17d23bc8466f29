//! Opening a store: URLs that would misconfigure it silently are refused with a config error,
//! and connection and migration failures say why in their message (and in their ERROR line).
//!
//! The PostgreSQL migration test needs `FLUVIUS_TEST_PG_URL`; everything else needs no server.

mod common;

use std::io::Write;

thread_local! {
    /// What the test subscriber wrote on this thread.
    static LOGGED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into this thread's [`LOGGED`].
struct ThreadBuffer;

impl Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGGED.with(|l| l.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `tracing` logs on this thread while `run` runs, as plain text.
///
/// One global subscriber for the whole test binary, writing per thread: a scoped subscriber
/// (`set_default`) races with tests running on other threads over tracing's per-callsite
/// interest cache, and then misses events now and then.
async fn logged<T>(run: impl std::future::Future<Output = T>) -> (T, String) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| ThreadBuffer)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    LOGGED.with(|l| l.borrow_mut().clear());
    let out = run.await;
    let text = LOGGED.with(|l| String::from_utf8_lossy(&l.borrow()).into_owned());
    (out, text)
}

/// `err`'s own message (not only its sources) and the one ERROR line `log` holds name
/// `cause`, and `full_message` does not repeat it.
fn says_why(err: &fluvius_sql::Error, log: &str, cause: &str) {
    assert!(err.to_string().contains(cause), "{err}");
    let full = err.full_message();
    assert_eq!(full.matches(cause).count(), 1, "{full}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "expected one ERROR line in:\n{log}");
    assert!(errors[0].contains(cause), "{log}");
}

/// `err` is a config error whose message names every one of `expected`.
fn refused_naming(url: &str, err: &fluvius_sql::Error, expected: &[&str]) {
    assert!(
        matches!(err, fluvius_sql::Error::Config { .. }),
        "{url:?}: {err:?}"
    );
    let text = err.to_string();
    for name in expected {
        assert!(text.contains(name), "{url:?}: {text}");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use fluvius_core::{testing, AggregateId, LogStore};
    use fluvius_sql::SqliteLogStore;

    use super::{common, logged, refused_naming, says_why};

    #[tokio::test]
    async fn urls_that_name_no_file_or_no_sqlite_scheme_are_refused() {
        let bare = format!("fluvius-bare-{}.db", uuid::Uuid::new_v4().simple());
        for url in [
            "",
            "sqlite://",
            "sqlite:",
            "sqlite://?mode=rwc",
            &bare,
            "postgres://h/db",
        ] {
            let err = SqliteLogStore::open(url).await.expect_err(url);
            refused_naming(url, &err, &["`sqlite://<path>`", "`sqlite::memory:`"]);
        }
        assert!(
            !std::path::Path::new(&bare).exists(),
            "a bare path created a file"
        );
    }

    #[tokio::test]
    async fn in_memory_urls_are_one_database() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://?mode=memory"] {
            let store = SqliteLogStore::open(url)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let id = AggregateId::new();
            store.append(testing::request("thing", id, 0, 2)).await.unwrap();
            // Read on the pool, after the write: the same database.
            assert_eq!(store.get_events("thing", id).await.unwrap().len(), 2, "{url}");
        }
    }

    #[tokio::test]
    async fn a_connect_failure_says_why() {
        let dir = common::temp_dir("config-connect");
        let url = format!("sqlite://{}", dir.join("no-such-dir").join("log.db").display());
        let (err, log) = logged(SqliteLogStore::open(&url)).await;
        let err = err.unwrap_err();
        assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
        says_why(&err, &log, "unable to open database file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failing_migration_says_why() {
        use sqlx::{Connection, Executor};
        let dir = common::temp_dir("config-migrate");
        let url = format!("sqlite://{}", dir.join("log.db").display());
        // A table of the store's name, of another shape, already in the database.
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        conn.execute("CREATE TABLE fluvius_events (other INTEGER)")
            .await
            .unwrap();
        conn.close().await.unwrap();

        let (err, log) = logged(SqliteLogStore::open(&url)).await;
        let err = err.unwrap_err();
        assert!(matches!(err, fluvius_sql::Error::Migrate { .. }), "{err:?}");
        says_why(&err, &log, "table fluvius_events already exists");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use fluvius_sql::PostgresLogStore;
    use sqlx::{Connection, Executor};

    use super::common::pg::{self, SchemaGuard};
    use super::{logged, refused_naming, says_why};

    #[tokio::test]
    async fn urls_of_other_schemes_are_refused() {
        for url in [
            "mysql://app:hunter2@127.0.0.1:3306/appdb",
            "sqlite://app.db",
            "app.db",
            "/var/lib/app.db",
            "",
        ] {
            let err = PostgresLogStore::connect(url).await.expect_err(url);
            refused_naming(url, &err, &["`postgres://…`", "`postgresql://…`"]);
            assert!(
                !err.full_message().contains("hunter2"),
                "the password leaked: {err}"
            );
        }
        // Both PostgreSQL schemes are taken (here: a closed port, so a connect error).
        for url in [
            "postgres://app@127.0.0.1:1/appdb",
            "postgresql://app@127.0.0.1:1/appdb",
        ] {
            let err = PostgresLogStore::builder(url)
                .acquire_timeout(Duration::from_secs(3))
                .connect()
                .await
                .expect_err(url);
            assert!(
                matches!(err, fluvius_sql::Error::Connect { .. }),
                "{url}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_connect_failure_says_why() {
        let (err, log) = logged(
            PostgresLogStore::builder("postgres://app:hunter2@127.0.0.1:1/appdb")
                .acquire_timeout(Duration::from_secs(3))
                .connect(),
        )
        .await;
        let err = err.unwrap_err();
        assert!(matches!(err, fluvius_sql::Error::Connect { .. }), "{err:?}");
        says_why(&err, &log, "Connection refused");
        assert!(!log.contains("hunter2"), "the password leaked: {log}");
    }

    #[tokio::test]
    async fn a_failing_migration_says_why() {
        let Some(url) = pg::url().await else { return };
        let guard = SchemaGuard::fresh(&url);
        // A table of the store's name, of another shape, already in the schema.
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(
            format!(
                "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".fluvius_events (other int)",
                guard.schema
            )
            .as_str(),
        )
        .await
        .unwrap();
        conn.close().await.unwrap();

        let (err, log) = logged(PostgresLogStore::builder(&url).schema(&guard.schema).connect()).await;
        let err = err.unwrap_err();
        assert!(matches!(err, fluvius_sql::Error::Migrate { .. }), "{err:?}");
        says_why(&err, &log, "already exists");
    }
}
