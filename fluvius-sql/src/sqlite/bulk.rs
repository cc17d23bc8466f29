//! The bulk path of a group-commit batch: a few statements for the whole batch instead of a
//! savepoint and four statements per append (see the [module docs](super#group-commit)).

use std::collections::{HashMap, HashSet};

use fluvius_core::AppendRequest;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::{insert_events_query, CoreResult, Prepared, SqliteLogStore, MAX_ROWS_PER_INSERT};
use crate::codec;
use crate::group_commit::{bulk_keys, bulk_outcomes, decide, StreamKey};

/// Each append's outcome, in batch order: its positions, or its own error.
pub(super) type Outcomes = Vec<CoreResult<Vec<u64>>>;

impl SqliteLogStore {
    /// Write the appends of a batch (none with transactional handlers) in the open write
    /// transaction `tx`: one query for the versions of its streams, one for which of its
    /// command ids are recorded, the decision in Rust, then one `INSERT` for the accepted
    /// command records and one for their events (chunked by [`MAX_ROWS_PER_INSERT`]), and the
    /// snapshots. Each append gets the outcome the per-append path would give it.
    ///
    /// An error means a statement failed or returned something unexpected: the caller rolls
    /// the transaction back and writes the batch append by append instead.
    pub(super) async fn write_bulk(
        &self,
        tx: &mut SqliteConnection,
        batch: &[&AppendRequest],
    ) -> CoreResult<Outcomes> {
        let prepared: Vec<CoreResult<Prepared<'_>>> = batch.iter().map(|r| self.prepare(r)).collect();
        let ready: Vec<&Prepared<'_>> = prepared.iter().flatten().collect();
        let (streams, command_ids) = bulk_keys(ready.iter().map(|p| p.request));
        let current = self.stream_versions(tx, &streams).await?;
        let recorded = self.recorded_commands(tx, &command_ids).await?;
        let verdicts = decide(ready.iter().map(|p| p.request), current, recorded);
        let accepted: Vec<&Prepared<'_>> = ready
            .iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| verdict.is_ok())
            .map(|(p, _)| *p)
            .collect();

        let commands: Vec<_> = accepted
            .iter()
            .filter_map(|p| p.command.as_ref().map(|(record, row)| (*record, row)))
            .collect();
        for chunk in commands.chunks(MAX_ROWS_PER_INSERT) {
            super::insert_commands_query(chunk.iter().copied())
                .build()
                .execute(&mut *tx)
                .await
                .map_err(self.query_error("append (record commands)"))?;
        }

        // Which accepted append each event row belongs to, by its stream and version:
        // SQLite returns the rows of `RETURNING` in no particular order.
        let mut owner: HashMap<(&str, &str, i64), usize> = HashMap::new();
        for (slot, p) in accepted.iter().enumerate() {
            for row in &p.rows {
                owner.insert(
                    (p.request.resource.as_str(), p.aggregate_id.as_str(), row.version),
                    slot,
                );
            }
        }
        let rows: Vec<_> = accepted
            .iter()
            .flat_map(|p| {
                p.rows
                    .iter()
                    .map(|row| (row, p.request.resource.as_str(), p.aggregate_id.as_str()))
            })
            .collect();
        let mut positions: Vec<Vec<(i64, i64)>> = accepted
            .iter()
            .map(|p| Vec::with_capacity(p.rows.len()))
            .collect();
        for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
            let returned = insert_events_query(chunk.iter().copied())
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(self.query_error("append (insert events)"))?;
            for row in &returned {
                let (position, version, resource, aggregate_id) =
                    returned_event(row).map_err(self.query_error("append (read positions)"))?;
                let slot = owner.get(&(resource, aggregate_id, version)).ok_or_else(|| {
                    self.data_error(format!(
                        "the insert returned an event this batch did not write: {resource}/{aggregate_id} \
                         version {version}"
                    ))
                })?;
                positions[*slot].push((version, position));
            }
        }
        let mut written = Vec::with_capacity(accepted.len());
        for (p, positions) in accepted.iter().zip(positions) {
            written.push(self.checked_positions(p.request, positions)?);
            if let Some(snapshot) = &p.request.snapshot {
                self.insert_snapshot(&mut *tx, snapshot).await?;
            }
        }

        Ok(bulk_outcomes(prepared, verdicts, written, &self.target))
    }

    /// The current version of each stream (0 for a stream with no events), read in
    /// `tx`.
    async fn stream_versions<'a>(
        &self,
        tx: &mut SqliteConnection,
        streams: &[StreamKey<'a>],
    ) -> CoreResult<HashMap<StreamKey<'a>, u64>> {
        let mut current = HashMap::with_capacity(streams.len());
        // 3 parameters per stream.
        for chunk in streams.chunks(MAX_ROWS_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new("WITH s(i, resource, aggregate_id) AS (");
            query.push_values(
                chunk.iter().enumerate(),
                |mut b, (i, (resource, aggregate_id))| {
                    b.push_bind(i as i64)
                        .push_bind(*resource)
                        .push_bind(aggregate_id.to_string());
                },
            );
            query.push(
                ") SELECT s.i, coalesce((SELECT max(e.aggregate_version) FROM fluvius_events e \
                 WHERE e.tenant = '' AND e.resource = s.resource AND e.aggregate_id = s.aggregate_id), 0) \
                 FROM s",
            );
            let rows = query
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(self.query_error("read stream versions"))?;
            for row in rows {
                let i: i64 = row.try_get(0).map_err(self.query_error("read stream versions"))?;
                let version: i64 = row.try_get(1).map_err(self.query_error("read stream versions"))?;
                let stream = usize::try_from(i)
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .ok_or_else(|| self.data_error(format!("stream index {i} out of range")))?;
                let version = codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))?;
                current.insert(*stream, version);
            }
        }
        Ok(current)
    }

    /// Which of `ids` are recorded commands, read in `tx`.
    async fn recorded_commands(&self, tx: &mut SqliteConnection, ids: &[Uuid]) -> CoreResult<HashSet<Uuid>> {
        let mut recorded = HashSet::new();
        for chunk in ids.chunks(MAX_ROWS_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT id FROM fluvius_commands WHERE id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.to_string());
            }
            query.push(")");
            let rows = query
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(self.query_error("read recorded commands"))?;
            for row in rows {
                let text: &str = row
                    .try_get(0)
                    .map_err(self.query_error("read recorded commands"))?;
                let id = Uuid::parse_str(text)
                    .map_err(|e| self.data_error(format!("stored command id is not a UUID: {e}")))?;
                recorded.insert(id);
            }
        }
        Ok(recorded)
    }
}

/// `position, aggregate_version, resource, aggregate_id` of a row the events insert returned.
fn returned_event(row: &SqliteRow) -> Result<(i64, i64, &str, &str), sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))
}
