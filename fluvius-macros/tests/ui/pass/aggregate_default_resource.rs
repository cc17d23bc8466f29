//! `#[aggregate]` without arguments: the resource is the type name in kebab case. Attributes
//! may also be written by path, and an action may return a `Result` alias.

use fluvius_core::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LightSwitch {
    on: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SwitchedOn {}

#[fluvius_core::aggregate]
impl LightSwitch {
    #[fluvius_core::action(evt_key = "switched-on")]
    fn turn_on(&self) -> fluvius_core::Result<SwitchedOn> {
        Ok(SwitchedOn {})
    }

    #[fluvius_core::apply("switched-on")]
    fn switched_on(&mut self, _: SwitchedOn) {
        self.on = true;
    }
}

fn main() {
    assert_eq!(<LightSwitch as Aggregate>::RESOURCE, "light-switch");
    let actions = <LightSwitch as Aggregate>::actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].name, LightSwitch::ACTION_TURN_ON);
    assert_eq!(actions[0].name, "turn-on");
    assert_eq!(actions[0].evt_key, LightSwitch::EVENT_SWITCHED_ON);
    let cmd = LightSwitch::turn_on_command(fluvius_core::AggregateId::new());
    assert_eq!(cmd.resource, "light-switch");
    assert_eq!(cmd.action, "turn-on");
}
