//! The light switch's invariants, given/when/then, with no database.

use fluvius_core::harness::{event, AggregateTest};
use fluvius_core::AggregateId;
use fluvius_examples::domain::light_switch::{Flipped, LightSwitch};

#[test]
fn a_switch_starts_off_and_turns_on() {
    AggregateTest::<LightSwitch>::given_no_events()
        .when(LightSwitch::turn_on_command(AggregateId::new()))
        .then_expect_events([event("turned-on", Flipped {})])
        .then_state(|s| assert!(s.shines));
}

#[test]
fn it_cannot_be_turned_on_twice() {
    let outcome = AggregateTest::<LightSwitch>::given([event("turned-on", Flipped {})])
        .when(LightSwitch::turn_on_command(AggregateId::new()))
        .then_expect_error("rejected")
        .then_state(|s| assert!(s.shines));
    let message = outcome.result().unwrap_err().to_string();
    assert!(message.contains("already on"), "{message}");
}

#[test]
fn it_turns_off_only_when_on() {
    AggregateTest::<LightSwitch>::given([event("turned-on", Flipped {})])
        .when(LightSwitch::turn_off_command(AggregateId::new()))
        .then_expect_events([event("turned-off", Flipped {})])
        .then_state(|s| assert!(!s.shines));
    AggregateTest::<LightSwitch>::given([event("turned-on", Flipped {}), event("turned-off", Flipped {})])
        .when(LightSwitch::turn_off_command(AggregateId::new()))
        .then_expect_error("rejected")
        .then_state(|s| assert!(!s.shines));
}
