//! Timestamps as the stores keep them.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time, truncated to microseconds: the precision every store keeps, so an event
/// read back equals the event written.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
