//! Learning the truth about an append whose outcome is in doubt (see the
//! [module docs](super#outcomes)).

use std::time::{Duration, Instant};

use fluvius_core::Event;
use sqlx::Row;
use uuid::Uuid;

use super::{decode_event, CoreResult, PostgresLogStore, EVENT_COLUMNS};
use crate::outcome::{self, Probe};

/// How long an append in doubt is looked for at least, when it is not found.
const GRACE: Duration = Duration::from_millis(300);

/// One look at the log.
enum Look {
    /// The append is stored: its events as read back.
    Stored(Vec<Event>),
    /// Another event holds the append's first version: the append can never be stored.
    Taken,
    /// Not there (yet): `xmin` and `xmax` of the snapshot the look read under.
    Absent { xmin: i64, xmax: i64 },
}

/// The look: whether the first version of the append's stream is taken, and by which event,
/// with the bounds of the snapshot it was read under (`xid8` as `bigint`).
const LOOK: &str = "\
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
    (SELECT id FROM fluvius_events WHERE tenant = '' AND resource = $1 AND aggregate_id = $2
        AND aggregate_version = $3)";

impl PostgresLogStore {
    /// The truth about an append that failed with `error` (an error [in
    /// doubt](outcome::unclear)): the stored events if it is in the log, a store error if its
    /// first version holds another event (it can never be stored), else
    /// [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown).
    ///
    /// An append that is not in the log is never reported as not written: its statement may
    /// still be in the server's socket buffer, or held by the network, and commit later (the
    /// server processes what it received before it notices the connection is gone). The store
    /// looks again while that is likely: until every transaction that was running at the first
    /// look has ended (the oldest still running, `xmin`, is past the first look's `xmax`, read
    /// in the same snapshot as the absence) and at least [`GRACE`] has passed, within the
    /// bounded wait; a late commit found meanwhile is answered as stored.
    pub(super) async fn resolve(&self, probe: &Probe, error: fluvius_core::Error) -> CoreResult<Vec<Event>> {
        let (within, look_within) = outcome::resolve_bounds(self.operation_timeout);
        let deadline = Instant::now() + within;
        let mut horizon = None;
        let first_look = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut why = "the log could not be read in time to tell whether it was stored";
        loop {
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .min(look_within);
            match tokio::time::timeout(budget, self.look(probe)).await {
                Ok(Ok(Look::Stored(events))) => {
                    tracing::debug!(error = %error, "an append in doubt was stored");
                    return Ok(events);
                }
                Ok(Ok(Look::Taken)) => return Err(outcome::not_written(self.target.to_string(), error)),
                Ok(Ok(Look::Absent { xmin, xmax })) => {
                    let first_xmax = *horizon.get_or_insert(xmax);
                    why = "it is not in the log yet, but its write may still be on its way to the server";
                    if xmin >= first_xmax && first_look.elapsed() >= GRACE {
                        return Err(outcome::unknown(probe.command_id, error, why));
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "looking for an append in doubt failed"),
                Err(_) => {}
            }
            if Instant::now() + pause >= deadline {
                return Err(outcome::unknown(probe.command_id, error, why));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// One look, on a connection of its own.
    async fn look(&self, probe: &Probe) -> CoreResult<Look> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(self.query_error("resolve append (connect)"))?;
        let row = sqlx::query(LOOK)
            .bind(probe.resource.as_str())
            .bind(probe.aggregate_id.as_uuid())
            .bind(probe.first_version)
            .fetch_one(&mut *conn)
            .await
            .map_err(self.query_error("resolve append"))?;
        let read = |i| {
            row.try_get::<Option<i64>, _>(i)
                .map_err(self.query_error("resolve append"))
        };
        let (xmin, xmax) = (read(0)?.unwrap_or(0), read(1)?.unwrap_or(0));
        let holder: Option<Uuid> = row.try_get(2).map_err(self.query_error("resolve append"))?;
        match holder {
            None => return Ok(Look::Absent { xmin, xmax }),
            Some(id) if id != probe.first_event => return Ok(Look::Taken),
            Some(_) => {}
        }
        let last_version = probe.first_version + probe.count as i64 - 1;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2 \
             AND aggregate_version BETWEEN $3 AND $4 ORDER BY aggregate_version"
        ))
        .bind(probe.resource.as_str())
        .bind(probe.aggregate_id.as_uuid())
        .bind(probe.first_version)
        .bind(last_version)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.query_error("resolve append (read events)"))?;
        let events = rows
            .iter()
            .map(decode_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| self.data_error(m))?;
        if events.len() != probe.count {
            return Err(self.data_error(format!(
                "the append is stored, but {} of its {} events were read back",
                events.len(),
                probe.count
            )));
        }
        Ok(Look::Stored(events))
    }
}
