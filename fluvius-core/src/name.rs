//! [`Name`]: the shared string of event keys, resources, namespaces and action names.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// The longest name, in bytes, that the domain and the stores accept (see [`validate_name`]).
pub const MAX_NAME_LEN: usize = 255;

/// Check that `name` is acceptable, as a `what` (`"resource"`, `"event key"`, `"tenant"`, …),
/// to every store alike: not empty, at most [`MAX_NAME_LEN`] bytes, no control character
/// (a NUL byte included), and no whitespace at either end. Otherwise
/// [`Error::InvalidName`].
///
/// The domain checks every name up front with it: resources, namespaces, actions, event keys
/// and handler names when it is built; a command's resource, action, namespace, tenant and
/// user before anything runs; and every store checks the names of an append before writing.
///
/// ```
/// use fluvius_core::validate_name;
/// assert!(validate_name("resource", "user-profile").is_ok());
/// let err = validate_name("tenant", "acme\0").unwrap_err();
/// assert_eq!(err.code(), "invalid_name");
/// assert!(validate_name("resource", "").is_err());
/// assert!(validate_name("resource", " user").is_err());
/// ```
pub fn validate_name(what: &'static str, name: &str) -> Result<(), Error> {
    // Every command checks several names: the common case (printable ASCII, no space at either
    // end) is one pass over the bytes; anything else takes the full check below.
    let bytes = name.as_bytes();
    if !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(|b| (0x21..=0x7e).contains(b) || *b == b' ')
        && bytes[0] != b' '
        && bytes[bytes.len() - 1] != b' '
    {
        return Ok(());
    }
    let reason = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "it is {} bytes long, over the limit of {MAX_NAME_LEN}",
            name.len()
        )
    } else if let Some(c) = name.chars().find(|c| c.is_control()) {
        format!("it contains the control character {c:?}")
    } else if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        "it starts or ends with whitespace".to_owned()
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(64).collect();
    Err(Error::InvalidName {
        what,
        name: shown,
        reason,
    })
}

/// An immutable string that is cheap to clone: a `&'static str` (keys and action names
/// declared in code) or a shared `Arc<str>`. Every event carries four of them (namespace,
/// resource, key, command name), and events are copied often (to the log, to the caller, to
/// handlers), so copying one must not allocate.
///
/// It reads like a `&str`: it derefs to `str`, compares with `&str` and `String`, prints and
/// serializes as the plain string.
///
/// ```
/// use fluvius_core::Name;
/// let key = Name::from_static("user-created");
/// assert_eq!(key, "user-created");
/// assert!(key.starts_with("user-"));
/// let owned: Name = String::from("user-renamed").into();
/// assert_eq!(owned.as_str(), "user-renamed");
/// assert_eq!(format!("{key}"), "user-created");
/// ```
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A name that borrows a string of the program (no allocation, ever).
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Static(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

macro_rules! eq_with {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for Name {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Name> for $other {
            fn eq(&self, other: &Name) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

eq_with!(str, &str, String);

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self(Repr::Shared(Arc::from(s)))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Self(Repr::Shared(Arc::from(s)))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Self(Repr::Shared(s))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.as_str().to_owned()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Sort `items` by name; the first two with the same name, if any. The one duplicate check of
/// every name table (handlers, transactional handlers, dispatch names).
pub(crate) fn sort_and_find_duplicate<T>(items: &mut [T], name: impl Fn(&T) -> &str) -> Option<(&T, &T)> {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items
        .windows(2)
        .find(|pair| name(&pair[0]) == name(&pair[1]))
        .map(|pair| (&pair[0], &pair[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_fast_path_agrees_with_the_full_rule() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases: [(&str, bool); 12] = [
            ("user-created", true),
            ("a b", true),
            ("ünïcode", true),
            ("", false),
            (" user", false),
            ("user ", false),
            ("us\0er", false),
            ("tab\there", false),
            ("del\u{7f}", false),
            ("nbsp\u{a0}", false),
            ("line\u{2028}", false),
            (&long, false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name("resource", name).is_ok(), ok, "{name:?}");
        }
        assert!(validate_name("resource", &"x".repeat(MAX_NAME_LEN)).is_ok());
    }
}
