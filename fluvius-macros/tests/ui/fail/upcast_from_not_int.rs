use fluvius_core::prelude::*;
use fluvius_core::UpcastError;
use serde_json::Value;

#[upcast("user-created", from = "1")]
fn split_name(v1: Value) -> Result<Value, UpcastError> {
    Ok(v1)
}

fn main() {}
