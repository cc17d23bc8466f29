//! Learning the truth about an append whose outcome is in doubt (see the
//! [module docs](super#outcomes)).

use fluvius_core::Event;

use super::{decode_event, CoreResult, SqliteLogStore, EVENT_COLUMNS};
use crate::outcome::{self, Probe};

impl SqliteLogStore {
    /// The truth about an append that failed with `error` (an error [in
    /// doubt](outcome::unclear), typically a timeout while its statement still ran on sqlx's
    /// worker thread): the stored events if it is in the log, a store error if it is not,
    /// [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) if that cannot be learned
    /// within the bounded wait.
    ///
    /// The look waits for the write turn (so no write of this store is under way; a queued
    /// append whose caller stopped waiting is skipped by the writer, see `write_batch`) and
    /// closes the writer's connection if a write left it suspect: closing waits until its
    /// worker thread has run everything sent before, so the write in doubt has committed or
    /// rolled back when the look reads.
    pub(super) async fn resolve(&self, probe: &Probe, error: fluvius_core::Error) -> CoreResult<Vec<Event>> {
        let (within, _) = outcome::resolve_bounds(self.operation_timeout);
        match tokio::time::timeout(within, self.settle_and_look(probe)).await {
            Ok(Ok(Some(events))) => Ok(events),
            Ok(Ok(None)) => Err(outcome::not_written(self.target.to_string(), error)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "looking for an append in doubt failed");
                Err(outcome::unknown(
                    probe.command_id,
                    error,
                    "the log could not be read to tell whether it was stored",
                ))
            }
            Err(_) => Err(outcome::unknown(
                probe.command_id,
                error,
                "its write was still running when the store gave up waiting for it",
            )),
        }
    }

    /// Wait until no write in doubt can still commit, then read the append's events: `None`
    /// if its first version is free or holds another event.
    async fn settle_and_look(&self, probe: &Probe) -> CoreResult<Option<Vec<Event>>> {
        let mut turn = self.write_turn().await;
        if std::mem::take(&mut turn.suspect) {
            if let Some(conn) = turn.conn.take() {
                use sqlx::Connection;
                let _ = conn.close().await;
            }
        }
        let last_version = probe.first_version + probe.count as i64 - 1;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2 \
             AND aggregate_version >= ?3 AND aggregate_version <= ?4 ORDER BY aggregate_version"
        ))
        .bind(probe.resource.as_str())
        .bind(probe.aggregate_id.to_string())
        .bind(probe.first_version)
        .bind(last_version)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("resolve append"))?;
        drop(turn);
        let events = rows
            .iter()
            .map(decode_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| self.data_error(m))?;
        if events.first().is_none_or(|e| e.id != probe.first_event) {
            return Ok(None);
        }
        if events.len() != probe.count {
            return Err(self.data_error(format!(
                "the append is stored, but {} of its {} events were read back",
                events.len(),
                probe.count
            )));
        }
        Ok(Some(events))
    }
}
