//! Events: immutable records of what happened.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::AggregateId;
use crate::name::Name;
use crate::payload::Payload;

/// One recorded event.
///
/// Events are produced by actions and written by the log store; a value of this type is a copy
/// of a log entry, so changing it never changes the log. Cloning one allocates nothing for its
/// names ([`Name`]) or payloads ([`Payload`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUIDv7).
    pub id: Uuid,
    /// Global position in the log, assigned by the store on append (1, 2, 3, …; 0 before).
    pub position: u64,
    /// The namespace of the domain that recorded it.
    pub namespace: Name,
    /// The resource (aggregate type) of the stream.
    pub resource: Name,
    /// The aggregate (stream) it belongs to.
    pub aggregate_id: AggregateId,
    /// Version of the aggregate after this event: dense per aggregate, starting at 1.
    pub aggregate_version: u64,
    /// The event key, e.g. `"user-created"`.
    pub key: Name,
    /// Schema version of the payload (from `#[action(version = N)]`, default 1).
    pub schema_version: u32,
    /// The event data.
    pub payload: Payload,
    /// The arguments of the action that produced it.
    pub args: Payload,
    /// The id of the command that produced it.
    pub command_id: Uuid,
    /// The action name of the command that produced it.
    pub command_name: Name,
    /// When it was recorded (UTC, microsecond precision).
    pub timestamp: DateTime<Utc>,
    /// Correlation, causation, user, tenant and free-form metadata.
    pub metadata: Metadata,
}

impl Event {
    /// Decode the payload into a typed value.
    ///
    /// ```
    /// # use fluvius_core::*;
    /// # let event = Event::example();
    /// #[derive(serde::Deserialize)]
    /// struct UserCreated { name: String }
    /// let e: UserCreated = event.payload_as().unwrap();
    /// assert_eq!(e.name, "Ann");
    /// ```
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.decode()
    }

    /// An illustrative `user-created` event, for documentation and tests.
    #[doc(hidden)]
    pub fn example() -> Self {
        let command_id = Uuid::now_v7();
        Event {
            id: Uuid::now_v7(),
            position: 1,
            namespace: "app".into(),
            resource: "user".into(),
            aggregate_id: AggregateId::new(),
            aggregate_version: 1,
            key: "user-created".into(),
            schema_version: 1,
            payload: Payload::from_json_unchecked(r#"{"name":"Ann","email":"ann@example.org"}"#),
            args: Payload::from_json_unchecked(r#"{"name":"Ann","email":"ann@example.org"}"#),
            command_id,
            command_name: "create-user".into(),
            timestamp: crate::clock::now(),
            metadata: Metadata {
                correlation_id: command_id,
                causation_id: command_id,
                ..Metadata::default()
            },
        }
    }
}

/// Metadata recorded with every event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// The flow the event belongs to (the command's correlation id, or its id).
    pub correlation_id: Uuid,
    /// What caused the event: the command's causation id if it had one, else the command id.
    pub causation_id: Uuid,
    /// The acting user.
    pub user_id: Option<String>,
    /// The tenant.
    pub tenant_id: Option<String>,
    /// Free-form entries.
    pub extra: BTreeMap<String, serde_json::Value>,
}
