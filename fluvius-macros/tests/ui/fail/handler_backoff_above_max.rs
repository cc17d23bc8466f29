use fluvius_core::prelude::*;

#[event_handler("user-created", base_backoff_ms = 500, max_backoff_ms = 100)]
async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
