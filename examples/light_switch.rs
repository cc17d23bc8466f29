//! Light switch: an aggregate with two invariants — it cannot be turned on when it is on, nor
//! off when it is off — expressed as the action's own error type.
//!
//! ```text
//! cargo run --example light_switch [-- --memory]
//! ```

use std::fmt;

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The switch.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LightSwitch {
    shines: bool,
}

/// Payload of `turned-on` / `turned-off`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Flipped {}

/// The switch's invariants, as an ordinary error enum: any `std::error::Error` converts into
/// a `DomainError`.
#[derive(Debug)]
pub enum SwitchError {
    /// It is on already.
    AlreadyTurnedOn,
    /// It is off already.
    AlreadyTurnedOff,
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::AlreadyTurnedOn => f.write_str("the light is already on"),
            SwitchError::AlreadyTurnedOff => f.write_str("the light is already off"),
        }
    }
}

impl std::error::Error for SwitchError {}

#[aggregate]
impl LightSwitch {
    /// Turn the light on.
    #[action(evt_key = "turned-on")]
    fn turn_on(&self) -> Result<Flipped, SwitchError> {
        if self.shines {
            return Err(SwitchError::AlreadyTurnedOn);
        }
        Ok(Flipped {})
    }

    /// Turn the light off.
    #[action(evt_key = "turned-off")]
    fn turn_off(&self) -> Result<Flipped, SwitchError> {
        if !self.shines {
            return Err(SwitchError::AlreadyTurnedOff);
        }
        Ok(Flipped {})
    }

    #[apply("turned-on")]
    fn on(&mut self, _: Flipped) {
        self.shines = true;
    }

    #[apply("turned-off")]
    fn off(&mut self, _: Flipped) {
        self.shines = false;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = fluvius_examples::store_from_args("light_switch").await?;
    let domain = Domain::builder()
        .aggregate::<LightSwitch>()
        .logstore_arc(store)
        .without_global_handlers()
        .build()
        .await?;
    println!(
        "resource name derived from the type: {}",
        <LightSwitch as fluvius_core::Aggregate>::RESOURCE
    );

    let id = AggregateId::new();
    let steps = [
        ("turn-on", true),
        ("turn-on", false),
        ("turn-off", true),
        ("turn-off", false),
        ("turn-on", true),
    ];
    let mut recorded = 0;
    for (action, allowed) in steps {
        let cmd = Command::new("light-switch", id, action, serde_json::json!({}));
        match (domain.process_command(cmd).await, allowed) {
            (Ok(r), true) => {
                recorded += 1;
                println!("{action:<9} ok      -> version {}", r.version);
            }
            (Err(Error::Rejected(e)), false) => println!("{action:<9} refused -> {e}"),
            (other, _) => return Err(format!("{action}: unexpected outcome {other:?}").into()),
        }
    }
    let events = domain.logstore().get_events("light-switch", id).await?;
    if events.len() != recorded {
        return Err(format!("expected {recorded} events, found {}", events.len()).into());
    }
    let state: LightSwitch = domain.load(id).await?;
    println!("final: shines = {} after {} events", state.shines, events.len());
    if !state.shines {
        return Err("the light should be on".into());
    }
    Ok(())
}
