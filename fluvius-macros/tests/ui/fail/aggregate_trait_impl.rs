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

pub trait Named {
    fn name(&self) -> &str;
}

#[aggregate]
impl Named for User {
    fn name(&self) -> &str {
        &self.name
    }
}

fn main() {}
