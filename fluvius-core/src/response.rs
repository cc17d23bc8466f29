//! What `process_command` returns.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Event;
use crate::id::AggregateId;
use crate::name::Name;

/// The outcome of a processed command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The command's id.
    pub command_id: Uuid,
    /// The resource the command acted on.
    pub resource: Name,
    /// The aggregate the command acted on (assigned by the domain for `Command::create`).
    pub aggregate_id: AggregateId,
    /// The aggregate's version after the command.
    pub version: u64,
    /// The events the command recorded, with their global positions.
    pub events: Vec<Event>,
    /// The new aggregate state as JSON, when the command asked for it
    /// ([`Command::returning_state`](crate::Command::returning_state)).
    pub state: Option<serde_json::Value>,
    /// `true` when this command id had already been processed and this is the first response,
    /// replayed: nothing new was written.
    pub replayed: bool,
}
