//! Bulk verdicts: what a bulk batch reads, and the decision and outcome of each append.

use std::collections::{HashMap, HashSet};

use fluvius_core::{AggregateId, AppendRequest};
use uuid::Uuid;

use super::CoreResult;

/// One stream of a bulk batch: resource and aggregate.
pub(crate) type StreamKey<'a> = (&'a str, AggregateId);

/// What the bulk path reads before deciding a batch: the distinct streams of its appends (in
/// first-seen order) and their command ids.
pub(crate) fn bulk_keys<'a>(
    requests: impl IntoIterator<Item = &'a AppendRequest>,
) -> (Vec<StreamKey<'a>>, Vec<Uuid>) {
    let mut seen = HashSet::new();
    let mut streams = Vec::new();
    let mut commands = Vec::new();
    for request in requests {
        let key = (request.resource.as_str(), request.aggregate_id);
        if seen.insert(key) {
            streams.push(key);
        }
        if let Some(command) = &request.command {
            commands.push(command.id);
        }
    }
    (streams, commands)
}

/// Decide the appends of a bulk batch in batch order, as one savepoint per append would: a
/// command id already recorded, or carried by an earlier accepted append of the batch, is a
/// [`DuplicateCommand`](fluvius_core::Error::DuplicateCommand) (checked first, as the command
/// row is written first); an expected version other than the stream's current one — as
/// stored (`current`, a missing stream is at 0) plus the earlier accepted appends of the batch
/// — is a [`Conflict`](fluvius_core::Error::Conflict) naming that version. A refused append
/// changes nothing for the ones after it.
pub(crate) fn decide<'a>(
    requests: impl IntoIterator<Item = &'a AppendRequest>,
    mut current: HashMap<StreamKey<'a>, u64>,
    mut recorded: HashSet<Uuid>,
) -> Vec<CoreResult<()>> {
    requests
        .into_iter()
        .map(|request| {
            if let Some(command) = &request.command {
                if recorded.contains(&command.id) {
                    return Err(fluvius_core::Error::DuplicateCommand {
                        command_id: command.id,
                    });
                }
            }
            let version = current
                .entry((request.resource.as_str(), request.aggregate_id))
                .or_insert(0);
            if *version != request.expected_version {
                return Err(fluvius_core::Error::Conflict {
                    resource: request.resource.to_string(),
                    aggregate_id: request.aggregate_id,
                    expected: request.expected_version,
                    actual: *version,
                });
            }
            *version = request
                .expected_version
                .saturating_add(request.events.len() as u64);
            if let Some(command) = &request.command {
                recorded.insert(command.id);
            }
            Ok(())
        })
        .collect()
}

/// Each append's outcome in batch order, for the bulk path: `prepared` says which appends could
/// be converted for binding, `verdicts` what [`decide`] said of those (in order), `written` the
/// positions of the accepted ones (in order).
pub(crate) fn bulk_outcomes<P>(
    prepared: Vec<CoreResult<P>>,
    verdicts: Vec<CoreResult<()>>,
    written: Vec<Vec<u64>>,
    target: &str,
) -> Vec<CoreResult<Vec<u64>>> {
    bulk_results(prepared, verdicts, written.into_iter().map(Ok).collect(), target)
}

/// [`bulk_outcomes`] with a result for each accepted append instead of its positions.
pub(crate) fn bulk_results<P>(
    prepared: Vec<CoreResult<P>>,
    verdicts: Vec<CoreResult<()>>,
    written: Vec<CoreResult<Vec<u64>>>,
    target: &str,
) -> Vec<CoreResult<Vec<u64>>> {
    let mut verdicts = verdicts.into_iter();
    let mut written = written.into_iter();
    prepared
        .into_iter()
        .map(|p| {
            p.and_then(|_| verdicts.next().unwrap_or(Ok(()))).and_then(|()| {
                written.next().unwrap_or_else(|| {
                    Err(fluvius_core::Error::store(
                        target.to_owned(),
                        "a bulk write lost track of an accepted append".to_owned(),
                        None,
                    ))
                })
            })
        })
        .collect()
}
