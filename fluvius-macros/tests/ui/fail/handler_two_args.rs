use fluvius_core::prelude::*;

#[event_handler("user-created")]
async fn on_user_created(event: &Event, retries: u32) -> Result<(), HandlerError> {
    let _ = (event, retries);
    Ok(())
}

fn main() {}
