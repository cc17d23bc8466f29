//! Light switch: an aggregate with two invariants — it cannot be turned on when it is on, nor
//! off when it is off — expressed as the action's own error type.
//!
//! ```text
//! cargo run --example light_switch [-- --memory]
//! ```

use fluvius_core::prelude::*;
use fluvius_examples::domain::light_switch::LightSwitch;

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
