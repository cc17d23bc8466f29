use fluvius_core::prelude::*;

const KEY: &str = "user-created";

#[event_handler(KEY)]
async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
