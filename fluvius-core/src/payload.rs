//! JSON payloads kept as serialized text: serialized once, shared cheaply, decoded on demand.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The deepest nesting of arrays and objects a payload may have: command arguments nested
/// deeper are refused with [`Error::InvalidPayload`](crate::Error::InvalidPayload), before
/// anything is serialized or stored.
///
/// It is the deepest document that `serde_json`'s parser reads back, so every payload the
/// domain accepts can be read back from every store. `[1]` has depth 1, `{"a": [1]}` depth 2,
/// a scalar depth 0.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// A JSON document held as its serialized text.
///
/// Event payloads and command arguments are serialized exactly once, when they are recorded; the
/// same bytes go to the store, and clones share them (`Arc<str>`).
///
/// ```
/// use fluvius_core::Payload;
/// let p = Payload::from_value(&serde_json::json!({"name": "Ann"})).unwrap();
/// assert_eq!(p.as_str(), r#"{"name":"Ann"}"#);
/// let v: serde_json::Value = p.decode().unwrap();
/// assert_eq!(v["name"], "Ann");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Arc<str>);

impl Payload {
    /// Serialize a value.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        // Serialized into a reused per-thread buffer, then copied once into the shared text:
        // one allocation per payload instead of a `String` plus its copy into an `Arc<str>`.
        thread_local! {
            static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                let written = serde_json::to_writer(&mut *buffer, value).map(|()| Self::from_utf8(&buffer));
                // Do not let one huge payload pin its memory to the thread.
                if buffer.capacity() > 64 * 1024 {
                    *buffer = Vec::new();
                }
                written?
            }
            // A `Serialize` impl that serializes a payload itself: use a buffer of its own.
            Err(_) => Self::from_utf8(&serde_json::to_vec(value)?),
        })
    }

    fn from_utf8(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Self(Arc::from(text))),
            // serde_json writes UTF-8 only; report it as a serialization error all the same.
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }

    /// Take JSON text, checking that it is well-formed and nests arrays and objects no
    /// deeper than [`MAX_PAYLOAD_DEPTH`].
    pub fn from_json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        if text_deeper_than(&text, MAX_PAYLOAD_DEPTH) {
            return Err(serde::de::Error::custom(format!(
                "JSON nests arrays or objects deeper than the limit of {MAX_PAYLOAD_DEPTH} levels"
            )));
        }
        Ok(Self(text.into()))
    }

    /// Take JSON text that the caller knows to be well-formed (for instance because a store
    /// wrote it). Malformed text is not undefined behaviour: it surfaces as an error on decode.
    pub fn from_json_unchecked(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// The JSON `null` document.
    pub fn null() -> Self {
        Self(Arc::from("null"))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Size of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the JSON text is empty (never true for a well-formed payload).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deserialize into a typed value.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// Parse into a `serde_json::Value`.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// Serializes the value without recursion, so a value of any depth converts without
/// overflowing the stack (the value is also dropped without recursion). No depth limit is
/// applied here: a payload deeper than [`MAX_PAYLOAD_DEPTH`] converts, but its text does not
/// parse back; command arguments are checked by [`Command::new`](crate::Command::new).
impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        let payload = Self::from(&value);
        dismantle(value);
        payload
    }
}

/// Serializes the value without recursion (see `From<Value>`).
impl From<&Value> for Payload {
    fn from(value: &Value) -> Self {
        Self(write_json(value).into())
    }
}

/// Whether `value` nests arrays and objects deeper than `limit`; walks the value with an
/// explicit stack (no recursion), and stops at the first container past the limit.
pub(crate) fn deeper_than(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let is_container = matches!(value, Value::Array(_) | Value::Object(_));
        if is_container && depth + 1 > limit {
            return true;
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    false
}

/// Whether well-formed JSON `text` nests arrays and objects deeper than `limit`.
fn text_deeper_than(text: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Drop `value` without recursion. Dropping a `Value` the usual way recurses once per level,
/// and a deep enough one (100 000 levels) overflows a thread's stack.
pub(crate) fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// The compact JSON text of `value`, the same as `value.to_string()`, written with an explicit
/// stack instead of recursion.
fn write_json(value: &Value) -> String {
    use std::fmt::Write as _;
    enum Step<'a> {
        Value(&'a Value),
        Key(&'a str),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(text) => out.push_str(text),
            // A string key, escaped like a string value (writing to a `String` cannot fail).
            Step::Key(key) => {
                let _ = write!(out, "{}:", Value::from(key));
            }
            Step::Value(Value::Array(items)) => {
                out.push('[');
                stack.push(Step::Text("]"));
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
            Step::Value(Value::Object(map)) => {
                out.push('{');
                stack.push(Step::Text("}"));
                for (i, (key, item)) in map.iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    stack.push(Step::Key(key));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
            // A scalar: its `Display` does not recurse.
            Step::Value(scalar) => {
                let _ = write!(out, "{scalar}");
            }
        }
    }
    out
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Self::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes itself by building a payload of its inner value first (so `from_value` runs
    /// inside `from_value`).
    struct Nested(Vec<u32>);

    impl Serialize for Nested {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = Payload::from_value(&self.0).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(inner.as_str())
        }
    }

    #[test]
    fn payloads_serialize_in_turn_and_inside_one_another() {
        assert_eq!(Payload::from_value(&[1, 2]).unwrap().as_str(), "[1,2]");
        assert_eq!(Payload::from_value("a").unwrap().as_str(), r#""a""#);
        assert_eq!(
            Payload::from_value(&Nested(vec![3, 4])).unwrap().as_str(),
            r#""[3,4]""#
        );
        // A large payload, then a small one: the buffer starts empty each time.
        let big = "x".repeat(100_000);
        assert_eq!(Payload::from_value(&big).unwrap().len(), 100_002);
        assert_eq!(Payload::from_value(&7).unwrap().as_str(), "7");
    }

    #[test]
    fn the_depth_limit_is_the_deepest_json_the_parser_reads() {
        let text = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Value>(&text(MAX_PAYLOAD_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_PAYLOAD_DEPTH + 1)).is_err());
        assert!(Payload::from_json(text(MAX_PAYLOAD_DEPTH)).is_ok());
        let err = Payload::from_json(text(100_000)).unwrap_err();
        assert!(err.to_string().contains("deeper than the limit of 127"), "{err}");
        // Brackets inside strings do not count.
        let quoted = format!(r#"{{"a": "{}\"[", "b": [1]}}"#, "[".repeat(1000));
        assert!(Payload::from_json(quoted).is_ok());
        let value = Payload::from_json(text(MAX_PAYLOAD_DEPTH))
            .unwrap()
            .to_value()
            .unwrap();
        assert!(!deeper_than(&value, MAX_PAYLOAD_DEPTH));
        assert!(deeper_than(&serde_json::json!([value]), MAX_PAYLOAD_DEPTH));
        assert!(!deeper_than(&serde_json::json!({"a": 1}), 1));
        assert!(deeper_than(&serde_json::json!({"a": {}}), 1));
        assert!(!deeper_than(&serde_json::json!(1), 0));
    }

    #[test]
    fn a_failing_serialization_is_an_error_and_the_next_one_works() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1); // a non-string key: serde_json refuses it
        assert!(Payload::from_value(&map).is_err());
        assert_eq!(Payload::from_value(&true).unwrap().as_str(), "true");
    }
}
