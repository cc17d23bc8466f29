use fluvius_core::prelude::*;
use fluvius_core::UpcastError;
use serde_json::Value;

#[upcast("user-created", from = 1)]
fn by_ref(v1: &Value) -> Result<Value, UpcastError> {
    Ok(v1.clone())
}

#[upcast("user-updated", from = 1)]
fn wrong_error(v1: Value) -> Result<Value, String> {
    Ok(v1)
}

fn main() {}
