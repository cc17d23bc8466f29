//! The write transaction of an append or a group-commit batch.

use sqlx::{Executor, Sqlite, SqliteConnection, Transaction};

use crate::batch::BatchTx;

/// The write transaction of an append or a group-commit batch, taken while holding the write
/// turn.
///
/// On the writer's connection (a file database) nothing is sent when it is created: the
/// transaction's first query starts with `BEGIN IMMEDIATE; ` ([`begin_prefix`]), so beginning
/// costs no trip of its own to sqlx's worker thread (on a busy runtime that trip, not SQLite,
/// is most of what a short statement costs). The writer's slot is marked suspect from the
/// moment `BEGIN` goes out until `COMMIT` or `ROLLBACK` has returned: should the future holding
/// the transaction be dropped in between (a caller that stopped waiting for its lone append),
/// the next writer opens a new connection — closing the old one rolls back whatever it left
/// open — instead of finding a transaction open, and no read uses that connection meanwhile.
///
/// An in-memory database's transaction is sqlx's, begun at once on its pool's one connection
/// (which rolls back by itself when dropped).
///
/// [`begin_prefix`]: WriteTx::begin_prefix
pub(super) enum WriteTx<'t> {
    /// On the writer's connection; `begun` once `BEGIN IMMEDIATE` was put in front of a query.
    Writer {
        conn: &'t mut SqliteConnection,
        suspect: &'t mut bool,
        begun: bool,
    },
    /// On an in-memory database's pool connection.
    Pool(Transaction<'static, Sqlite>),
}

impl<'t> WriteTx<'t> {
    /// A transaction on the writer's connection, not begun yet.
    pub(super) fn writer(conn: &'t mut SqliteConnection, suspect: &'t mut bool) -> Self {
        Self::Writer {
            conn,
            suspect,
            begun: false,
        }
    }

    /// What the next query must start with: `BEGIN IMMEDIATE; ` when nothing was sent on the
    /// writer's connection yet, else nothing. The caller sends that query next.
    pub(super) fn begin_prefix(&mut self) -> &'static str {
        match self {
            Self::Writer { suspect, begun, .. } if !*begun => {
                *begun = true;
                **suspect = true;
                "BEGIN IMMEDIATE; "
            }
            _ => "",
        }
    }

    /// What a query may end with to commit the transaction in the same trip: `; COMMIT` on
    /// the writer's connection (then call [`committed`](Self::committed) once the query
    /// succeeded), nothing on an in-memory database's (sqlx's transaction commits itself).
    pub(super) fn commit_suffix(&self) -> &'static str {
        match self {
            Self::Writer { begun: true, .. } => "; COMMIT",
            _ => "",
        }
    }

    /// The query ending with [`commit_suffix`](Self::commit_suffix) succeeded: the
    /// transaction is committed, and [`commit`](Self::commit) has nothing left to do.
    pub(super) fn committed(&mut self) {
        if let Self::Writer { suspect, begun, .. } = self {
            *begun = false;
            **suspect = false;
        }
    }

    /// Send `BEGIN IMMEDIATE` on its own, unless the transaction has begun.
    pub(super) async fn begin(&mut self) -> sqlx::Result<()> {
        let prefix = self.begin_prefix();
        if !prefix.is_empty() {
            self.conn().execute("BEGIN IMMEDIATE").await?;
        }
        Ok(())
    }

    /// The connection, for the statements after the transaction's first query (or after
    /// [`begin`](Self::begin)).
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Writer { conn, .. } => conn,
            Self::Pool(tx) => tx,
        }
    }

    /// Commit (nothing to do if nothing was sent).
    pub(super) async fn commit(self) -> sqlx::Result<()> {
        match self {
            Self::Writer { begun: false, .. } => Ok(()),
            Self::Writer { conn, suspect, .. } => {
                conn.execute("COMMIT").await?;
                *suspect = false;
                Ok(())
            }
            Self::Pool(tx) => tx.commit().await,
        }
    }

    /// Roll back (nothing to do if nothing was sent). SQLite saying no transaction is active
    /// means its first query failed at `BEGIN`: the connection is clean all the same.
    pub(super) async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Self::Writer { begun: false, .. } => Ok(()),
            Self::Writer { conn, suspect, .. } => match conn.execute("ROLLBACK").await {
                Ok(_) => {
                    *suspect = false;
                    Ok(())
                }
                Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                    *suspect = false;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Self::Pool(tx) => tx.rollback().await,
        }
    }
}

impl BatchTx for WriteTx<'_> {
    async fn commit(self) -> sqlx::Result<()> {
        WriteTx::commit(self).await
    }

    async fn rollback(self) -> sqlx::Result<()> {
        WriteTx::rollback(self).await
    }
}
