//! The light switch aggregate: it cannot be turned on when it is on, nor off when it is off.

use std::fmt;

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The switch.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LightSwitch {
    /// Whether the light is on.
    pub shines: bool,
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
