//! Commands: requests to change one aggregate.

use std::any::Any;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::id::AggregateId;
use crate::name::{validate_name, Name};
use crate::payload::{self, Payload, MAX_PAYLOAD_DEPTH};

/// A request to run one action on one aggregate.
///
/// Build one with the typed constructors that `#[aggregate]` generates (e.g.
/// `User::create_user_command(id, name, email)`: no JSON round trip), or untyped from JSON, e.g.
/// from an HTTP body:
///
/// ```
/// use fluvius_core::{AggregateId, Command};
/// use serde_json::json;
/// let cmd = Command::new("user", AggregateId::new(), "create-user", json!({"name": "Ann"}));
/// assert_eq!(cmd.action, "create-user");
/// // a command that creates a resource may come without an id; the domain assigns one
/// let cmd = Command::create("user", "create-user", json!({"name": "Ann"}));
/// assert!(cmd.aggregate_id.is_none());
/// ```
pub struct Command {
    /// Unique id; processing the same id twice returns the first response (idempotency).
    pub id: Uuid,
    /// The namespace the command is addressed to; `None` means "this domain".
    pub namespace: Option<String>,
    /// The resource (aggregate type) addressed. A [`Name`]: compares with `&str`, derefs to
    /// `str`, and costs no allocation when it is a literal (as in the generated constructors).
    pub resource: Name,
    /// The aggregate addressed; `None` asks the domain to assign a new id.
    pub aggregate_id: Option<AggregateId>,
    /// The action name, e.g. `"create-user"`.
    pub action: Name,
    /// The action's arguments.
    pub args: Args,
    /// Who asks, and how.
    pub context: Context,
    /// If set, the command only runs when the aggregate is at exactly this version; otherwise
    /// it fails with [`Error::Conflict`] and is not retried.
    pub expected_version: Option<u64>,
    /// Whether the response should carry the new state as JSON.
    pub return_state: bool,
}

impl Command {
    /// An untyped command on an existing (or to-be-created) aggregate with a known id.
    ///
    /// A payload of any depth is safe to pass: one nested deeper than [`MAX_PAYLOAD_DEPTH`]
    /// is taken apart here without recursion, and processing the command fails with
    /// [`Error::InvalidPayload`].
    pub fn new(
        resource: impl Into<Name>,
        aggregate_id: AggregateId,
        action: impl Into<Name>,
        payload: serde_json::Value,
    ) -> Self {
        Self::with_args(
            resource.into(),
            Some(aggregate_id),
            action.into(),
            Args::json(payload),
        )
    }

    /// An untyped command that creates a new aggregate; the domain assigns its id.
    pub fn create(resource: impl Into<Name>, action: impl Into<Name>, payload: serde_json::Value) -> Self {
        Self::with_args(resource.into(), None, action.into(), Args::json(payload))
    }

    /// A command whose arguments are already typed (used by the generated constructors,
    /// which pass the names as [`Name::from_static`]).
    pub fn typed<T>(
        resource: impl Into<Name>,
        aggregate_id: Option<AggregateId>,
        action: impl Into<Name>,
        args: T,
    ) -> Self
    where
        T: Serialize + Send + 'static,
    {
        Self::with_args(resource.into(), aggregate_id, action.into(), Args::typed(args))
    }

    fn with_args(resource: Name, aggregate_id: Option<AggregateId>, action: Name, args: Args) -> Self {
        Self {
            id: crate::id::uuid_v7_now(),
            namespace: None,
            resource,
            aggregate_id,
            action,
            args,
            context: Context::default(),
            expected_version: None,
            return_state: false,
        }
    }

    /// Set the command id (e.g. a client-supplied idempotency key).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Address the command to a namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Set the context.
    pub fn with_context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// Only run if the aggregate is at this version (else [`Error::Conflict`](crate::Error::Conflict),
    /// and no retry).
    ///
    /// `expect_version(0)` says the aggregate is new: the domain decides on the default state
    /// without reading the store first (as for a command without an aggregate id). Should the
    /// aggregate exist after all, the append's version check refuses it and the command is
    /// decided again on what is stored: a conflict.
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Ask for the new state in the response.
    pub fn returning_state(mut self) -> Self {
        self.return_state = true;
        self
    }

    /// Check the names the command carries (resource, action, namespace, and the context's
    /// tenant and user) with [`validate_name`](crate::validate_name).
    pub(crate) fn validate_names(&self) -> Result<()> {
        validate_name("resource", &self.resource)?;
        validate_name("action", &self.action)?;
        if let Some(namespace) = &self.namespace {
            validate_name("namespace", namespace)?;
        }
        self.context.validate_names()
    }
}

impl Clone for Command {
    /// Clones the command; typed arguments are carried over in their serialized form.
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            namespace: self.namespace.clone(),
            resource: self.resource.clone(),
            aggregate_id: self.aggregate_id,
            action: self.action.clone(),
            args: self.args.clone(),
            context: self.context.clone(),
            expected_version: self.expected_version,
            return_state: self.return_state,
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("resource", &self.resource)
            .field("aggregate_id", &self.aggregate_id)
            .field("action", &self.action)
            .field("args", &self.args)
            .field("context", &self.context)
            .field("expected_version", &self.expected_version)
            .finish()
    }
}

enum ArgsJson {
    Value(serde_json::Value),
    Text(Payload),
    Unserializable(String),
    /// JSON nested deeper than [`MAX_PAYLOAD_DEPTH`] (the value itself is dropped).
    TooDeep,
}

/// The arguments of a command: JSON, and for typed commands also the typed value, which the
/// action receives directly (no JSON parse).
pub struct Args {
    json: ArgsJson,
    typed: Option<Box<dyn Any + Send>>,
}

impl Args {
    /// Arguments given as JSON. A value nested deeper than [`MAX_PAYLOAD_DEPTH`] is dropped
    /// here without recursion (its normal drop could overflow the stack), and the command
    /// fails with [`Error::InvalidPayload`] when processed.
    pub fn json(value: serde_json::Value) -> Self {
        let json = if payload::deeper_than(&value, MAX_PAYLOAD_DEPTH) {
            payload::dismantle(value);
            ArgsJson::TooDeep
        } else {
            ArgsJson::Value(value)
        };
        Self { json, typed: None }
    }

    /// Typed arguments. They are serialized once here (the event records them); the typed
    /// value goes to the action as is.
    pub fn typed<T: Serialize + Send + 'static>(value: T) -> Self {
        let json = match Payload::from_value(&value) {
            Ok(p) => ArgsJson::Text(p),
            Err(e) => ArgsJson::Unserializable(e.to_string()),
        };
        Self {
            json,
            typed: Some(Box::new(value)),
        }
    }

    /// The arguments as a JSON payload (serializing an untyped value on first use).
    pub fn to_payload(&mut self) -> Result<Payload> {
        match &self.json {
            ArgsJson::Text(p) => Ok(p.clone()),
            ArgsJson::Value(v) => {
                let p = Payload::from(v);
                self.json = ArgsJson::Text(p.clone());
                Ok(p)
            }
            refused => Err(Error::InvalidPayload {
                action: String::new(),
                path: ".".into(),
                message: refused.refusal().unwrap_or_default(),
            }),
        }
    }

    /// Like [`take`](Self::take), but JSON arguments must be an object (`{"name": …}`): serde
    /// would otherwise also accept an array of the fields in order. The generated actions use
    /// this.
    pub fn take_object<T: DeserializeOwned + 'static>(&mut self, action: &str) -> Result<T> {
        let kind = match &self.json {
            _ if self.typed.is_some() => None,
            ArgsJson::Value(serde_json::Value::Object(_)) => None,
            ArgsJson::Value(other) => Some(json_kind(other)),
            ArgsJson::Text(p) if p.as_str().trim_start().starts_with('{') => None,
            ArgsJson::Text(p) => Some(p.to_value().map_or("invalid JSON", |v| json_kind(&v))),
            ArgsJson::Unserializable(_) | ArgsJson::TooDeep => None,
        };
        if let Some(kind) = kind {
            return Err(Error::InvalidPayload {
                action: action.to_owned(),
                path: ".".into(),
                message: format!("expected a JSON object of the action's arguments, got {kind}"),
            });
        }
        self.take(action)
    }

    /// Take the arguments as `T`: the typed value if it is one, otherwise deserialized from
    /// JSON. A payload that does not fit gives [`Error::InvalidPayload`] naming the field.
    pub fn take<T: DeserializeOwned + 'static>(&mut self, action: &str) -> Result<T> {
        if let Some(typed) = self.typed.take() {
            match typed.downcast::<T>() {
                Ok(value) => return Ok(*value),
                Err(other) => self.typed = Some(other),
            }
        }
        let invalid = |err: serde_path_to_error::Error<serde_json::Error>| {
            let path = err.path().to_string();
            Error::InvalidPayload {
                action: action.to_owned(),
                path,
                message: err.into_inner().to_string(),
            }
        };
        match &self.json {
            ArgsJson::Value(v) => serde_path_to_error::deserialize(v).map_err(invalid),
            ArgsJson::Text(p) => {
                let mut de = serde_json::Deserializer::from_str(p.as_str());
                serde_path_to_error::deserialize(&mut de).map_err(invalid)
            }
            refused => Err(Error::InvalidPayload {
                action: action.to_owned(),
                path: ".".into(),
                message: refused.refusal().unwrap_or_default(),
            }),
        }
    }
}

impl ArgsJson {
    /// Why these arguments are refused, if they are.
    fn refusal(&self) -> Option<String> {
        match self {
            ArgsJson::Value(_) | ArgsJson::Text(_) => None,
            ArgsJson::Unserializable(msg) => Some(format!("arguments cannot be serialized: {msg}")),
            ArgsJson::TooDeep => Some(format!(
                "arguments nest arrays or objects deeper than the limit of {MAX_PAYLOAD_DEPTH} levels"
            )),
        }
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl Clone for Args {
    fn clone(&self) -> Self {
        let json = match &self.json {
            ArgsJson::Value(v) => ArgsJson::Value(v.clone()),
            ArgsJson::Text(p) => ArgsJson::Text(p.clone()),
            ArgsJson::Unserializable(m) => ArgsJson::Unserializable(m.clone()),
            ArgsJson::TooDeep => ArgsJson::TooDeep,
        };
        Self { json, typed: None }
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.json {
            ArgsJson::Value(v) => write!(f, "{v}"),
            ArgsJson::Text(p) => write!(f, "{p}"),
            ArgsJson::Unserializable(m) => write!(f, "<unserializable: {m}>"),
            ArgsJson::TooDeep => write!(f, "<nested deeper than {MAX_PAYLOAD_DEPTH} levels>"),
        }
    }
}
