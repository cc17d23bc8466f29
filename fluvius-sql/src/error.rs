//! The one error type of `fluvius-sql`.

use std::fmt::Write as _;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while opening a store or talking to its database.
///
/// Every variant names its `target`: the database, as `sqlite:<path>` or
/// `postgres://user@host:port/database`, never with a password. Converts into
/// [`fluvius_core::Error::Store`] (or, for a transient failure,
/// [`fluvius_core::Error::Transient`]; see the `From` impl), which is what the
/// [`LogStore`](fluvius_core::LogStore) methods return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or an option is invalid.
    #[error("invalid configuration for {target}: {message}")]
    Config {
        /// The database.
        target: String,
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database could not be opened or reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The database.
        target: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The embedded migrations failed.
    #[error("migrating {target} failed: {source}")]
    Migrate {
        /// The database.
        target: String,
        /// The underlying error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed (connection lost, disk full, timeout, …).
    #[error("{operation} on {target} failed")]
    Query {
        /// The database.
        target: String,
        /// What the store was doing, e.g. `"append"`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row or a value to store does not fit the schema (e.g. a version above
    /// `i64::MAX`, or a row whose JSON does not parse).
    #[error("invalid data in {target}: {message}")]
    Data {
        /// The database.
        target: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The database the error is about (never with a password).
    pub fn target(&self) -> &str {
        match self {
            Error::Config { target, .. }
            | Error::Connect { target, .. }
            | Error::Migrate { target, .. }
            | Error::Query { target, .. }
            | Error::Data { target, .. } => target,
        }
    }

    /// The error and its causes, joined by `": "`; a cause whose text the message already
    /// holds is not repeated.
    pub fn full_message(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            let text = err.to_string();
            if !out.contains(&text) {
                let _ = write!(out, ": {text}");
            }
            source = err.source();
        }
        out
    }
}

impl From<Error> for fluvius_core::Error {
    /// An [`fluvius_core::Error::Store`] whose `backend` is the target, whose message carries
    /// the whole cause chain (so `{err}` alone says what the database said), and whose source
    /// is the original error, for downcasting. A statement that failed only because of other
    /// writers and was rolled back — PostgreSQL's serialization failure (`40001`) or deadlock
    /// (`40P01`), SQLite's `SQLITE_BUSY` / `SQLITE_LOCKED` after the busy timeout — is an
    /// [`fluvius_core::Error::Transient`] instead, with the same backend, message and source.
    /// A [`Error::Config`] (a URL or option refused before anything was opened) is a
    /// [`fluvius_core::Error::Config`] with the same message, so its code stays `config`.
    fn from(err: Error) -> Self {
        if let Error::Config { .. } = &err {
            return fluvius_core::Error::Config(err.full_message());
        }
        let transient = matches!(&err, Error::Query { source, .. } if is_transient(source));
        let (backend, message) = (err.target().to_owned(), err.full_message());
        if transient {
            fluvius_core::Error::Transient {
                backend: backend.into(),
                message,
                source: Some(Box::new(err)),
            }
        } else {
            fluvius_core::Error::store(backend, message, Some(Box::new(err)))
        }
    }
}

/// Whether a database error means "rolled back because of concurrent writers, try again":
/// PostgreSQL's serialization failure (`40001`) and deadlock (`40P01`), which abort the
/// statement's transaction (a `COMMIT` failing with `40001` has rolled back), and SQLite's
/// `SQLITE_BUSY` / `SQLITE_LOCKED` (with their extended codes), returned once the busy timeout
/// has passed, before the statement changed anything (a transaction left open by a failed
/// `COMMIT` is rolled back by the store).
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code(), "40001" | "40P01");
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        const SQLITE_BUSY: i32 = 5;
        const SQLITE_LOCKED: i32 = 6;
        let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        return matches!(primary, Some(SQLITE_BUSY | SQLITE_LOCKED));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_keeps_its_code_in_the_core_error() {
        let err = Error::Config {
            target: "postgres://app@db/app".into(),
            message: "unsupported scheme `mysql`".into(),
            source: None,
        };
        let core: fluvius_core::Error = err.into();
        assert_eq!(core.code(), "config");
        assert!(core.to_string().contains("unsupported scheme `mysql`"), "{core}");
    }
}
