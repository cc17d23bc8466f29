//! The `Aggregate` trait: how a state type routes actions and folds events.

use std::any::Any;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::Args;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::payload::Payload;

/// What the domain knows about one action before running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    /// The action name commands use, e.g. `"create-user"`.
    pub name: &'static str,
    /// The key of the event the action emits, e.g. `"user-created"`.
    pub evt_key: &'static str,
    /// Allow-list of resources the action accepts; empty accepts every resource the aggregate
    /// is registered under.
    pub resources: &'static [&'static str],
    /// Schema version of the event payload.
    pub version: u32,
}

impl ActionSpec {
    /// Whether the action accepts commands addressed to `resource`.
    pub fn accepts(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.contains(&resource)
    }

    /// Route `command` to the action found for its name: none found is
    /// [`Error::UnknownAction`], one whose allow-list leaves out the command's resource is
    /// [`Error::ResourceNotAllowed`].
    pub(crate) fn route(
        found: Option<&'static ActionSpec>,
        command: &crate::Command,
    ) -> Result<&'static Self> {
        let spec = found.ok_or_else(|| Error::UnknownAction {
            resource: command.resource.to_string(),
            action: command.action.to_string(),
        })?;
        if !spec.accepts(&command.resource) {
            return Err(Error::ResourceNotAllowed {
                action: command.action.to_string(),
                resource: command.resource.to_string(),
                allowed: spec.resources.iter().map(|r| r.to_string()).collect(),
            });
        }
        Ok(spec)
    }
}

/// An event-sourced aggregate: its state, its actions (decide) and its fold (evolve).
///
/// `#[aggregate]` implements this trait; it can also be written by hand:
///
/// ```
/// use fluvius_core::{ActionCall, ActionSpec, Aggregate, DomainError, Error, FoldEvent, NewEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { value: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// struct Added { by: i64 }
///
/// impl Aggregate for Counter {
///     const RESOURCE: &'static str = "counter";
///     fn actions() -> &'static [ActionSpec] {
///         &[ActionSpec { name: "add", evt_key: "added", resources: &[], version: 1 }]
///     }
///     async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
///         match call.action() {
///             "add" => {
///                 let added: Added = call.take_args()?;
///                 if added.by == 0 { return Err(Error::rejected(DomainError::rejected("zero"))); }
///                 Ok(vec![NewEvent::new("added", 1, added)?])
///             }
///             other => Err(call.unknown_action()),
///         }
///     }
///     fn apply(&mut self, mut event: FoldEvent<'_>) -> Result<(), Error> {
///         match event.key() {
///             "added" => { self.value += event.decode::<Added>()?.by; Ok(()) }
///             _ => Err(event.unknown()),
///         }
///     }
/// }
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The resource name the aggregate is registered under by default, e.g. `"user"`.
    const RESOURCE: &'static str;

    /// The version of the state type's serialized shape (default 1), stored with every
    /// snapshot. Bump it when a change to the state type would make old snapshots decode
    /// wrongly (or not at all): snapshots of another version are then ignored and the state is
    /// rebuilt from the events (and re-snapshotted as the aggregate moves on).
    /// `#[aggregate(state_version = 2)]` sets it.
    const STATE_VERSION: u32 = 1;

    /// Take a snapshot every this many events (default `None`: no snapshots). With `Some(n)`,
    /// an append that brings the aggregate to or past a multiple of `n` stores a snapshot of
    /// the new state in the same transaction, and loads read the latest snapshot plus the events
    /// after it. `#[aggregate(snapshot_every = 100)]` sets it;
    /// [`DomainBuilder::snapshot_every`](crate::DomainBuilder::snapshot_every) overrides it.
    ///
    /// Snapshots are off by default because most aggregates have short histories, where a
    /// snapshot costs a write (and a load one more query) and saves little; a few hundred events
    /// is a good point to turn them on (e.g. `100`).
    ///
    /// A snapshot holds folded state, so upcasters never apply to it: adding an upcaster that
    /// only reshapes old payloads into what the fold already expects changes nothing. An
    /// upcaster that changes what old events *mean* to the fold would leave older snapshots
    /// disagreeing with a replay: bump [`STATE_VERSION`](Self::STATE_VERSION) with it, so those
    /// snapshots are ignored and rebuilt.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The actions this aggregate offers.
    fn actions() -> &'static [ActionSpec];

    /// Decide: run the action named in `call` against the current state and return the new
    /// events, or an error (e.g. [`Error::Rejected`]). Must not change anything.
    fn execute(&self, call: ActionCall<'_>) -> impl Future<Output = Result<Vec<NewEvent>>> + Send;

    /// Evolve: fold one event into the state. Used by `process_command` and by every replay.
    fn apply(&mut self, event: FoldEvent<'_>) -> Result<()>;

    /// Look up an action by name.
    fn action(name: &str) -> Option<&'static ActionSpec> {
        Self::actions().iter().find(|a| a.name == name)
    }
}

/// One action invocation handed to [`Aggregate::execute`].
pub struct ActionCall<'a> {
    resource: &'a str,
    action: &'a str,
    args: &'a mut Args,
}

impl<'a> ActionCall<'a> {
    /// Build a call (the domain does this; useful in tests of hand-written aggregates).
    pub fn new(resource: &'a str, action: &'a str, args: &'a mut Args) -> Self {
        Self {
            resource,
            action,
            args,
        }
    }

    /// The action name.
    pub fn action(&self) -> &'a str {
        self.action
    }

    /// The resource the command is addressed to.
    pub fn resource(&self) -> &'a str {
        self.resource
    }

    /// Take the arguments as `T` (typed without a JSON round trip when the command was built
    /// typed). Fails with [`Error::InvalidPayload`] naming the offending field.
    pub fn take_args<T: DeserializeOwned + 'static>(&mut self) -> Result<T> {
        self.args.take(self.action)
    }

    /// Take the arguments as `T`, requiring JSON arguments to be an object (see
    /// [`Args::take_object`]). Generated actions use this.
    pub fn take_object_args<T: DeserializeOwned + 'static>(&mut self) -> Result<T> {
        self.args.take_object(self.action)
    }

    /// The error for an action name the aggregate does not know.
    pub fn unknown_action(&self) -> Error {
        Error::UnknownAction {
            resource: self.resource.to_owned(),
            action: self.action.to_owned(),
        }
    }
}

/// An event an action decided on, not yet recorded: its serialized payload, plus the typed
/// value so the fold need not parse it again.
pub struct NewEvent {
    pub(crate) key: &'static str,
    pub(crate) schema_version: u32,
    pub(crate) payload: Payload,
    pub(crate) typed: Option<Box<dyn Any + Send>>,
}

impl NewEvent {
    /// Serialize `value` (once) as the payload of an event `key` at `schema_version`.
    pub fn new<T: Serialize + Send + 'static>(
        key: &'static str,
        schema_version: u32,
        value: T,
    ) -> Result<Self> {
        let payload = Payload::from_value(&value)
            .map_err(|e| Error::serialization(format!("payload of event `{key}`"), e))?;
        Ok(Self {
            key,
            schema_version,
            payload,
            typed: Some(Box::new(value)),
        })
    }

    /// An event whose payload is already JSON.
    pub fn from_payload(key: &'static str, schema_version: u32, payload: Payload) -> Self {
        Self {
            key,
            schema_version,
            payload,
            typed: None,
        }
    }

    /// The event key.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The serialized payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
}

/// One event handed to [`Aggregate::apply`]: either freshly decided (typed value at hand) or
/// read from the log (decoded from JSON).
pub struct FoldEvent<'a> {
    resource: &'a str,
    key: &'a str,
    version: u64,
    payload: &'a Payload,
    typed: Option<Box<dyn Any + Send>>,
    event: Option<&'a Event>,
}

impl<'a> FoldEvent<'a> {
    /// A stored event.
    pub fn stored(event: &'a Event) -> Self {
        Self {
            resource: &event.resource,
            key: &event.key,
            version: event.aggregate_version,
            payload: &event.payload,
            typed: None,
            event: Some(event),
        }
    }

    pub(crate) fn fresh(resource: &'a str, version: u64, new: &'a mut NewEvent) -> Self {
        Self {
            resource,
            key: new.key,
            version,
            payload: &new.payload,
            typed: new.typed.take(),
            event: None,
        }
    }

    /// The event key.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The aggregate version this event brings the state to.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The full stored event, when folding from the log (`None` for a freshly decided event).
    pub fn event(&self) -> Option<&'a Event> {
        self.event
    }

    /// The payload as `T`: the typed value when it is at hand, else decoded from JSON.
    pub fn decode<T: DeserializeOwned + 'static>(&mut self) -> Result<T> {
        if let Some(typed) = self.typed.take() {
            match typed.downcast::<T>() {
                Ok(value) => return Ok(*value),
                Err(other) => self.typed = Some(other),
            }
        }
        self.payload.decode().map_err(|e| Error::Apply {
            resource: self.resource.to_owned(),
            key: self.key.to_owned(),
            version: self.version,
            message: format!("payload does not decode: {e}"),
        })
    }

    /// The error for an event key the aggregate does not know.
    pub fn unknown(&self) -> Error {
        Error::Apply {
            resource: self.resource.to_owned(),
            key: self.key.to_owned(),
            version: self.version,
            message: "no #[apply] for this event key".into(),
        }
    }
}
