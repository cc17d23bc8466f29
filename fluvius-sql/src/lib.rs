//! # fluvius-sql — durable log stores for Fluvius, built on sqlx
//!
//! Two implementations of [`fluvius_core::LogStore`], each behind a cargo feature:
//!
//! - [`SqliteLogStore`] (module [`sqlite`]): the embedded default. One file, WAL journal,
//!   `synchronous = FULL` unless you choose otherwise; `sqlite::memory:` for tests.
//! - [`PostgresLogStore`] (module [`postgres`]): for production, many app instances on one
//!   database. Readers of the global log never skip a transaction that commits late, and
//!   writers are not serialized by a table lock.
//!
//! Both keep the same schema shape (an events table with a global position and a unique
//! `(tenant, resource, aggregate_id, aggregate_version)` key, and a commands table written
//! in the same transaction as the events), run their embedded migrations on open (opt out
//! with `run_migrations(false)`), and pass the conformance suite of
//! `fluvius_core::testing::conformance`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fluvius_core::Error> {
//! use fluvius_core::LogStore;
//! let store = fluvius_sql::SqliteLogStore::open("sqlite://app.db").await?;
//! let all = store.read_all(0, 100).await?;
//! # Ok(()) }
//! ```
//!
//! Errors: opening, connecting and migrating return [`Error`]; the [`LogStore`] methods return
//! [`fluvius_core::Error`] — [`Conflict`](fluvius_core::Error::Conflict) and
//! [`DuplicateCommand`](fluvius_core::Error::DuplicateCommand) where the contract says so,
//! [`Timeout`](fluvius_core::Error::Timeout) for an operation past its operation timeout,
//! [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) for an append the store could not
//! tell was stored, and [`Store`](fluvius_core::Error::Store) (naming the database, never its
//! password, and meaning nothing was written) for everything else the database reports. An [`Error`] converts into [`fluvius_core::Error`], so `?`
//! works in functions returning either.
//!
//! [`LogStore`]: fluvius_core::LogStore
//!
//! Both run [transactional handlers](fluvius_core::transactional) inside the append's
//! transaction; [`AppendTxExt`] hands them the connection to write through.
//!
//! ## Feature flags
//!
//! | feature    | default | what it enables |
//! |------------|---------|-----------------|
//! | `sqlite`   | yes     | [`SqliteLogStore`] (bundled libsqlite3, nothing to install) |
//! | `postgres` | yes     | [`PostgresLogStore`] (PostgreSQL 13 or later) |

mod error;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod append_tx;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod batch;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod group_commit;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod outcome;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[macro_use]
mod store;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use append_tx::AppendTxExt;
pub use error::{Error, Result};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use group_commit::{GroupCommit, GroupCommitStats, ReadBatchStats};

#[cfg(feature = "postgres")]
pub use postgres::{PostgresLogStore, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteLogStore, SqliteOptions, Synchronous};
