use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Lamp {
    on: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TurnedOn {}

// The generated code goes through the path given: a path that does not exist is an error
// there, and `crate` takes a string literal.
#[aggregate(resource = "lamp", crate = "no_such_facade")]
impl Lamp {
    #[action(evt_key = "turned-on")]
    fn turn_on(&self) -> Result<TurnedOn, DomainError> {
        Ok(TurnedOn {})
    }

    #[apply("turned-on")]
    fn turned_on(&mut self, _e: TurnedOn) {
        self.on = true;
    }
}

#[event_handler("turned-on", crate = fluvius_core)]
async fn on_turned_on(_event: &Event) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
