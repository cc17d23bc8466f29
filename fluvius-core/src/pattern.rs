//! [`Pattern`]: which event keys a handler wants.

use crate::error::{Error, Result};

/// Which event keys a handler wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `"*"`: every event.
    All,
    /// An exact key.
    Exact(String),
    /// `"prefix*"`: every key starting with the prefix.
    Prefix(String),
}

impl Pattern {
    /// Parse a pattern: `"*"`, `"user-*"` or `"user-created"`. A `*` anywhere but at the end,
    /// or an empty pattern, is an error.
    ///
    /// ```
    /// use fluvius_core::Pattern;
    /// assert!(Pattern::parse("user-*").unwrap().matches("user-created"));
    /// assert!(!Pattern::parse("user-created").unwrap().matches("user-deleted"));
    /// assert!(Pattern::parse("a*b").is_err());
    /// ```
    pub fn parse(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(Error::Config("empty handler pattern".into()));
        }
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        match pattern.find('*') {
            None => Ok(Pattern::Exact(pattern.to_owned())),
            Some(i) if i == pattern.len() - 1 => Ok(Pattern::Prefix(pattern[..i].to_owned())),
            Some(_) => Err(Error::Config(format!(
                "handler pattern `{pattern}`: `*` is only allowed at the end"
            ))),
        }
    }

    /// Whether the pattern selects `key`.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(k) => k == key,
            Pattern::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}
