//! JSON payloads kept as serialized text: serialized once, shared cheaply, decoded on demand.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

    /// Take JSON text, checking that it is well-formed.
    pub fn from_json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
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

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        Self(value.to_string().into())
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(value: &serde_json::Value) -> Self {
        Self(value.to_string().into())
    }
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
    fn a_failing_serialization_is_an_error_and_the_next_one_works() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1); // a non-string key: serde_json refuses it
        assert!(Payload::from_value(&map).is_err());
        assert_eq!(Payload::from_value(&true).unwrap().as_str(), "true");
    }
}
