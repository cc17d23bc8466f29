use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated {
    name: String,
}

#[aggregate]
pub struct Account {
    balance: i64,
}

fn main() {}
