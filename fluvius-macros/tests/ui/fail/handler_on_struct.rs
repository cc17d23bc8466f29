use fluvius_core::prelude::*;

#[event_handler("user-created")]
pub struct Mailer;

fn main() {}
