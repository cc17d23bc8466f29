//! `#[upcast]` registers the function for (key, from) at link time, with where it came from.

use fluvius_core::prelude::*;
use fluvius_core::{UpcastError, UpcasterRegistration};
use serde_json::{json, Value};

#[upcast("person-registered", from = 1)]
fn split_name(v1: Value) -> Result<Value, UpcastError> {
    let name = v1["name"].as_str().ok_or_else(|| UpcastError::msg("no name"))?;
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    Ok(json!({ "first": first, "last": last }))
}

mod nested {
    #[fluvius_core::upcast("person-registered", from = 2)]
    pub(crate) fn add_title(
        mut v2: serde_json::Value,
    ) -> Result<serde_json::Value, fluvius_core::UpcastError> {
        v2["title"] = serde_json::Value::Null;
        Ok(v2)
    }
}

fn main() {
    let mut found: Vec<&UpcasterRegistration> =
        fluvius_core::__private::inventory::iter::<UpcasterRegistration>
            .into_iter()
            .filter(|r| r.key == "person-registered")
            .collect();
    found.sort_by_key(|r| r.from);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].from, 1);
    assert!(found[0].origin.contains("split_name"), "{}", found[0].origin);
    assert!(
        found[1].origin.contains("nested::add_title"),
        "{}",
        found[1].origin
    );
    let v2 = (found[0].upcast)(json!({ "name": "Ada Lovelace" })).unwrap();
    assert_eq!(v2, json!({ "first": "Ada", "last": "Lovelace" }));
    let v3 = (found[1].upcast)(v2).unwrap();
    assert_eq!(v3["title"], Value::Null);
    // The functions stay callable as written.
    assert!(split_name(json!({})).is_err());
    assert!(nested::add_title(json!({})).is_ok());
}
