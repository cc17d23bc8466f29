use fluvius_core::prelude::*;

#[event_handler("user-created", max_backoff_ms = 100, max_backoff_ms = 200)]
async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
