use fluvius_core::prelude::*;

#[upcast("user-created", from = 1)]
struct NotAFunction;

fn main() {}
