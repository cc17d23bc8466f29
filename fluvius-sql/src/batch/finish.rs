//! Batch completion: commit or roll back a batch, and answer its callers (errors included).

use std::future::Future;

use super::{CoreResult, Pending};

/// The same failure, for every caller of a batch (errors are not `Clone`): an
/// [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) when the error leaves the batch's
/// outcome in doubt (the store then learns each append's truth); a
/// [transient](crate::error::is_transient) one (the batch was rolled back) is each caller's
/// own [`Transient`](fluvius_core::Error::Transient), which the domain retries; else a store
/// error.
pub(crate) fn batch_error(
    target: &str,
    operation: &str,
    error: &sqlx::Error,
    n: usize,
) -> fluvius_core::Error {
    if crate::outcome::sqlx_unclear(error) {
        return crate::outcome::in_doubt(format!(
            "{operation} (a group of {n} appends) on {target}: {error}"
        ));
    }
    batch_refused(target, operation, error, n)
}

/// How [`finish_batch`] ends a batch's transaction: a sqlx transaction, or SQLite's
/// writer-connection transaction (begun with the batch's first query).
pub(crate) trait BatchTx: Send {
    /// Commit.
    fn commit(self) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Roll back.
    fn rollback(self) -> impl Future<Output = sqlx::Result<()>> + Send;
}

impl<DB: sqlx::Database> BatchTx for sqlx::Transaction<'_, DB> {
    fn commit(self) -> impl Future<Output = sqlx::Result<()>> + Send {
        sqlx::Transaction::commit(self)
    }

    fn rollback(self) -> impl Future<Output = sqlx::Result<()>> + Send {
        sqlx::Transaction::rollback(self)
    }
}

/// Commit a written batch and answer every caller: a refused append with its own error at
/// once, a written one (its positions in `outcomes`) once the commit returned, with the
/// commit's error if it failed. With nothing written, the transaction is rolled back.
pub(crate) async fn finish_batch(
    tx: impl BatchTx,
    outcomes: Vec<(Pending, CoreResult<Vec<u64>>)>,
    target: &str,
) {
    let n = outcomes.len();
    let mut written = Vec::with_capacity(n);
    for (pending, outcome) in outcomes {
        match outcome {
            Ok(positions) => written.push((pending, positions)),
            Err(e) => pending.answer(Err(e)),
        }
    }
    if written.is_empty() {
        let _ = tx.rollback().await;
        return;
    }
    if let Err(e) = tx.commit().await {
        for (p, _) in written {
            p.answer(Err(batch_error(target, "commit append", &e, n)));
        }
        return;
    }
    for (Pending { request, reply }, positions) in written {
        let _ = reply.send(Ok(crate::codec::stored(request, positions)));
    }
}

/// The same failure before the batch's `COMMIT` was sent, for every caller: a store error (an
/// explicit transaction commits nothing without its `COMMIT`, whatever broke), or each
/// caller's own [`Transient`](fluvius_core::Error::Transient) when the database rolled the
/// batch back for a deadlock or a serialization failure (the domain retries it).
pub(crate) fn batch_refused(
    target: &str,
    operation: &str,
    error: &sqlx::Error,
    n: usize,
) -> fluvius_core::Error {
    let message = format!("{operation} (a group of {n} appends): {error}");
    if crate::error::is_transient(error) {
        fluvius_core::Error::Transient {
            backend: target.to_owned().into(),
            message,
            source: None,
        }
    } else {
        fluvius_core::Error::store(target.to_owned(), message, None)
    }
}

/// Answer every caller of a batch with [`batch_refused`].
pub(crate) fn refuse_batch(batch: Vec<Pending>, target: &str, operation: &str, error: &sqlx::Error) {
    let n = batch.len();
    for p in batch {
        p.answer(Err(batch_refused(target, operation, error, n)));
    }
}

/// Answer every caller of a batch with the same failure.
pub(crate) fn fail_batch(batch: Vec<Pending>, target: &str, operation: &str, error: &sqlx::Error) {
    let n = batch.len();
    for p in batch {
        p.answer(Err(batch_error(target, operation, error, n)));
    }
}
