//! Typed access to the open transaction from a [transactional
//! handler](fluvius_core::transactional).

use fluvius_core::{AppendTx, DomainError};

/// Shortcuts on [`AppendTx`] for the SQL stores: the connection of the append's open
/// transaction, or a clear error when the append runs on another store.
///
/// ```
/// use fluvius_core::{AppendTx, DomainError, Event};
/// use fluvius_sql::AppendTxExt;
///
/// // A uniqueness check: the insert commits or rolls back with the events.
/// fn unique_email<'a>(event: &'a Event, tx: &'a mut AppendTx<'_>) -> fluvius_core::BoxFuture<'a, Result<(), DomainError>> {
///     Box::pin(async move {
///         let email = event.payload.to_value()?["email"].as_str().unwrap_or_default().to_owned();
///         let inserted = sqlx::query("INSERT INTO user_emails (email) VALUES (?1) ON CONFLICT DO NOTHING")
///             .bind(&email)
///             .execute(tx.sqlite()?)
///             .await?;
///         if inserted.rows_affected() == 0 {
///             return Err(DomainError::new("email_taken", format!("{email} is already registered")));
///         }
///         Ok(())
///     })
/// }
/// ```
pub trait AppendTxExt {
    /// The SQLite connection of the append's transaction.
    #[cfg(feature = "sqlite")]
    fn sqlite(&mut self) -> Result<&mut sqlx::SqliteConnection, DomainError>;

    /// The PostgreSQL connection of the append's transaction.
    #[cfg(feature = "postgres")]
    fn postgres(&mut self) -> Result<&mut sqlx::PgConnection, DomainError>;
}

fn wrong_store(backend: &str, wanted: &str) -> DomainError {
    DomainError::new(
        "wrong_store",
        format!("this transactional handler needs a {wanted} transaction, but the append runs on the `{backend}` store"),
    )
}

impl AppendTxExt for AppendTx<'_> {
    #[cfg(feature = "sqlite")]
    fn sqlite(&mut self) -> Result<&mut sqlx::SqliteConnection, DomainError> {
        let backend = self.backend();
        self.connection::<sqlx::SqliteConnection>()
            .ok_or_else(|| wrong_store(backend, "SQLite"))
    }

    #[cfg(feature = "postgres")]
    fn postgres(&mut self) -> Result<&mut sqlx::PgConnection, DomainError> {
        let backend = self.backend();
        self.connection::<sqlx::PgConnection>()
            .ok_or_else(|| wrong_store(backend, "PostgreSQL"))
    }
}
