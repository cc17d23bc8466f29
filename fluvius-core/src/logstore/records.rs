//! What is stored beside the events, and how stored things are selected: [`Snapshot`] and
//! [`SnapshotQuery`], [`CommandRecord`], [`StreamQuery`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::Context;
use crate::event::Event;
use crate::id::AggregateId;
use crate::name::Name;
use crate::payload::Payload;

/// The folded state of one aggregate at one version, stored so a load need not replay the
/// whole stream: load = latest snapshot + the events after it.
///
/// `state_version` is the version of the state type's shape
/// ([`Aggregate::STATE_VERSION`](crate::Aggregate::STATE_VERSION)) when the snapshot was taken:
/// a snapshot of another shape is never decoded, the state is rebuilt from events instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The resource of the stream.
    pub resource: String,
    /// The aggregate of the stream.
    pub aggregate_id: AggregateId,
    /// The aggregate version the state is at (the state after folding events `1..=version`).
    pub version: u64,
    /// The version of the state type's shape.
    pub state_version: u32,
    /// The serialized state.
    pub state: Payload,
    /// The timestamp of the event at `version`.
    pub timestamp: DateTime<Utc>,
}

/// Which snapshot of one stream to load: the latest (highest version) one that passes every
/// bound given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotQuery {
    /// Only snapshots with `version <= max_version`.
    pub max_version: Option<u64>,
    /// Only snapshots with `timestamp <= until` (inclusive).
    pub until: Option<DateTime<Utc>>,
}

impl SnapshotQuery {
    /// Whether a snapshot passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.max_version.is_none_or(|v| s.version <= v) && self.until.is_none_or(|t| s.timestamp <= t)
    }
}

/// A processed command, as the log keeps it: who asked for what, and which versions it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command id.
    pub id: Uuid,
    /// The namespace of the domain that processed it.
    pub namespace: Name,
    /// The resource it addressed.
    pub resource: Name,
    /// The aggregate it addressed.
    pub aggregate_id: AggregateId,
    /// The action name.
    pub action: Name,
    /// Its arguments.
    pub args: Payload,
    /// Its context.
    pub context: Context,
    /// The aggregate version before the command.
    pub version_before: u64,
    /// The aggregate version after the command.
    pub version_after: u64,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
}

/// Which events of one stream to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Only events with `aggregate_version >= from_version`.
    pub from_version: Option<u64>,
    /// Only events with `aggregate_version <= to_version`.
    pub to_version: Option<u64>,
    /// Only events with `timestamp <= until` (inclusive).
    pub until: Option<DateTime<Utc>>,
}

impl StreamQuery {
    /// Whether an event passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        self.from_version.is_none_or(|v| e.aggregate_version >= v)
            && self.to_version.is_none_or(|v| e.aggregate_version <= v)
            && self.until.is_none_or(|t| e.timestamp <= t)
    }
}
