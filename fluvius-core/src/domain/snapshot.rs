//! Snapshots in the pipeline: load = latest usable snapshot + the events after it; take one
//! when an append crosses a multiple of the aggregate's snapshot interval.
//!
//! A snapshot holds folded state, so upcasters never apply to it: the events it summarizes
//! were upcast when they were folded, and the events after it are upcast as they are read. A
//! snapshot is only trusted when its `state_version` is the state type's current
//! [`Aggregate::STATE_VERSION`] and it decodes; otherwise it is ignored (and logged), and the
//! state is rebuilt from the events.

use crate::aggregate::{Aggregate, FoldEvent};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::id::AggregateId;
use crate::logstore::{LogStore, Snapshot, SnapshotQuery, StreamQuery};
use crate::payload::Payload;

/// The state of one stream as `query` selects it, with its version: from the latest usable
/// snapshot at or before the query's bounds (when `use_snapshots`) plus the events after it.
///
/// A query with a `from_version` folds only from there, so it never uses a snapshot.
pub(crate) async fn load<A: Aggregate>(
    store: &dyn LogStore,
    resource: &str,
    aggregate_id: AggregateId,
    query: StreamQuery,
    use_snapshots: bool,
) -> Result<(A, u64)> {
    let base = if use_snapshots && query.from_version.is_none() {
        let found = store
            .load_snapshot(
                resource,
                aggregate_id,
                SnapshotQuery {
                    max_version: query.to_version,
                    until: query.until,
                },
            )
            .await?;
        found.and_then(usable::<A>)
    } else {
        None
    };
    let (mut state, base_version) = base.unwrap_or_default();
    let tail = store
        .read_stream(
            resource,
            aggregate_id,
            StreamQuery {
                from_version: (base_version > 0)
                    .then_some(base_version + 1)
                    .or(query.from_version),
                ..query
            },
        )
        .await?;
    let first = if base_version > 0 {
        base_version + 1
    } else {
        query.from_version.unwrap_or(1).max(1)
    };
    fold_into(&mut state, first, &tail)?;
    Ok((state, tail.last().map_or(base_version, |e| e.aggregate_version)))
}

/// The snapshot's state, if it has the current shape and decodes.
fn usable<A: Aggregate>(snapshot: Snapshot) -> Option<(A, u64)> {
    if snapshot.state_version != A::STATE_VERSION {
        tracing::debug!(
            resource = %snapshot.resource,
            aggregate_id = %snapshot.aggregate_id,
            version = snapshot.version,
            snapshot_state_version = snapshot.state_version,
            state_version = A::STATE_VERSION,
            "snapshot of another state version ignored; rebuilding from events"
        );
        return None;
    }
    match snapshot.state.decode::<A>() {
        Ok(state) => Some((state, snapshot.version)),
        Err(error) => {
            tracing::warn!(
                resource = %snapshot.resource,
                aggregate_id = %snapshot.aggregate_id,
                version = snapshot.version,
                state_version = snapshot.state_version,
                %error,
                "snapshot does not decode into the state type (bump STATE_VERSION when the state's \
                 shape changes); rebuilding from events"
            );
            None
        }
    }
}

/// Fold stored events into `state`, checking that their versions are dense from `first`
/// (a gap or a repeat is [`Error::CorruptStream`], never folded into a wrong state).
pub(crate) fn fold_into<A: Aggregate>(state: &mut A, first: u64, events: &[Event]) -> Result<()> {
    for (want, event) in (first..).zip(events) {
        if event.aggregate_version != want {
            let message = match want.checked_sub(1).filter(|&before| before >= first) {
                Some(before) => format!("version {} follows version {before}", event.aggregate_version),
                None => format!(
                    "version {} is where version {want} should be",
                    event.aggregate_version
                ),
            };
            return Err(Error::CorruptStream {
                resource: event.resource.to_string(),
                aggregate_id: event.aggregate_id,
                message: format!("{message} (event {} at position {})", event.id, event.position),
            });
        }
        state.apply(FoldEvent::stored(event))?;
    }
    Ok(())
}

/// Whether going from `before` to `after` reaches or passes a multiple of `every`.
pub(crate) fn crosses(every: u64, before: u64, after: u64) -> bool {
    every > 0 && after / every > before / every
}

/// A snapshot of `state` at the last of `events` (the events of one append), or `None` when
/// the state does not serialize (logged: a missing snapshot only costs load time, it must not
/// fail the command).
pub(crate) fn take<A: Aggregate>(state: &A, events: &[Event]) -> Option<Snapshot> {
    let last = events.last()?;
    match Payload::from_value(state) {
        Ok(payload) => Some(Snapshot {
            resource: last.resource.to_string(),
            aggregate_id: last.aggregate_id,
            version: last.aggregate_version,
            state_version: A::STATE_VERSION,
            state: payload,
            timestamp: last.timestamp,
        }),
        Err(error) => {
            tracing::warn!(
                resource = %last.resource,
                aggregate_id = %last.aggregate_id,
                version = last.aggregate_version,
                %error,
                "aggregate state does not serialize; no snapshot taken"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{crosses, fold_into};
    use crate::aggregate::{ActionCall, ActionSpec, Aggregate, FoldEvent, NewEvent};
    use crate::{AggregateId, Error, Event};

    /// Counts the events folded into it.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Folded(u64);

    impl Aggregate for Folded {
        const RESOURCE: &'static str = "folded";
        fn actions() -> &'static [ActionSpec] {
            &[]
        }
        async fn execute(&self, call: ActionCall<'_>) -> crate::Result<Vec<NewEvent>> {
            Err(call.unknown_action())
        }
        fn apply(&mut self, _event: FoldEvent<'_>) -> crate::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    fn stream(versions: &[u64]) -> Vec<Event> {
        let id = AggregateId::new();
        versions
            .iter()
            .map(|&v| Event {
                aggregate_id: id,
                aggregate_version: v,
                position: v,
                ..Event::example()
            })
            .collect()
    }

    /// The message of the corrupt_stream error a fold from `first` answers, folding nothing.
    fn refused(first: u64, versions: &[u64]) -> String {
        let mut state = Folded::default();
        match fold_into(&mut state, first, &stream(versions)) {
            Err(Error::CorruptStream { message, .. }) => message,
            other => panic!("{versions:?} from {first} folded: {other:?}"),
        }
    }

    #[test]
    fn folds_check_that_versions_are_dense() {
        let mut state = Folded::default();
        fold_into(&mut state, 1, &stream(&[1, 2, 3])).unwrap();
        assert_eq!(state.0, 3);
        fold_into(&mut state, 4, &stream(&[4, 5])).unwrap();
        assert_eq!(state.0, 5, "from a snapshot's version + 1");
        assert!(refused(1, &[1, 3]).starts_with("version 3 follows version 1"));
        assert!(refused(1, &[1, 2, 2]).starts_with("version 2 follows version 2"));
        assert!(refused(1, &[2, 3]).starts_with("version 2 is where version 1 should be"));
        assert!(refused(5, &[6]).starts_with("version 6 is where version 5 should be"));
    }

    #[test]
    fn crossing_a_multiple() {
        assert!(crosses(100, 99, 100));
        assert!(crosses(100, 98, 101));
        assert!(crosses(100, 0, 250));
        assert!(!crosses(100, 100, 101));
        assert!(!crosses(100, 0, 99));
        assert!(!crosses(0, 0, 1000));
        assert!(crosses(1, 4, 5));
    }
}
