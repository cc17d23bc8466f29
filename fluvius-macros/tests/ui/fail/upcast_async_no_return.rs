use fluvius_core::prelude::*;
use serde_json::Value;

#[upcast("user-created", from = 1)]
async fn split_name(v1: Value) {
    let _ = v1;
}

fn main() {}
