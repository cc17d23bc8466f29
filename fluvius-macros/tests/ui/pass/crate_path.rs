//! `crate = "…"`: the generated code names Fluvius through a re-export, as a facade crate
//! that re-exports `fluvius_core` would.

mod facade {
    pub use fluvius_core as fluvius;
}

use facade::fluvius::{AggregateId, DomainError, Event, HandlerError, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Lamp {
    on: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TurnedOn {}

#[facade::fluvius::aggregate(resource = "lamp", crate = "crate::facade::fluvius")]
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

#[facade::fluvius::event_handler("turned-on", crate = "crate::facade::fluvius")]
async fn on_turned_on(_event: &Event) -> Result<(), HandlerError> {
    Ok(())
}

#[facade::fluvius::upcast("turned-on", from = 1, crate = "crate::facade::fluvius")]
fn turned_on_v1(payload: Value) -> Result<Value, UpcastError> {
    Ok(payload)
}

fn main() {
    let command = Lamp::turn_on_command(AggregateId::new());
    assert_eq!(command.action, "turn-on");
    assert_eq!(Lamp::EVENT_TURNED_ON, "turned-on");
}
