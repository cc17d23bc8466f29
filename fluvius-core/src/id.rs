//! Aggregate identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A UUIDv7 for the Unix time `millis`, with 74 random bits from the thread's generator
/// (the one `Uuid::new_v4` uses).
///
/// Ids made in the same millisecond sort in no particular order among themselves (the crate's
/// `Uuid::now_v7` keeps a shared counter for that, and reads the clock again for every id);
/// nothing in Fluvius orders by id within a millisecond, and one command reads the clock once
/// for its timestamp and all its event ids.
pub(crate) fn uuid_v7_at(millis: u64) -> Uuid {
    let random = Uuid::new_v4();
    let mut bits = [0u8; 10];
    // Bytes 6..16 of a v4 UUID: the same places a v7 keeps its random bits (its version and
    // variant bits land where the builder overwrites them).
    bits.copy_from_slice(&random.as_bytes()[6..]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// A UUIDv7 for now.
pub(crate) fn uuid_v7_now() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000 + u64::from(d.subsec_millis()));
    uuid_v7_at(millis)
}

/// The identity of one aggregate instance (one event stream within a resource).
///
/// New ids are UUIDv7, so they sort by creation time.
///
/// ```
/// use fluvius_core::AggregateId;
/// let id = AggregateId::new();
/// let parsed: AggregateId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AggregateId(Uuid);

impl AggregateId {
    /// A fresh, time-ordered id (UUIDv7).
    pub fn new() -> Self {
        Self(uuid_v7_now())
    }

    /// Wrap an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for AggregateId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for AggregateId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<AggregateId> for Uuid {
    fn from(id: AggregateId) -> Self {
        id.0
    }
}

impl FromStr for AggregateId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AggregateId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_carry_the_time_and_random_bits() {
        let before = chrono::Utc::now().timestamp_millis() as u64;
        let a = uuid_v7_now();
        let b = uuid_v7_now();
        let after = chrono::Utc::now().timestamp_millis() as u64;
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = a.get_timestamp().expect("v7 has a timestamp").to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(
            before <= millis && millis <= after,
            "{before} <= {millis} <= {after}"
        );
        assert_ne!(a, b);
        // Ids of different milliseconds sort by time.
        assert!(uuid_v7_at(1_000) < uuid_v7_at(1_001));
    }
}
