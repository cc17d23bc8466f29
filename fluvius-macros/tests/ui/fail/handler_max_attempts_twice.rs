use fluvius_core::prelude::*;

#[event_handler("user-created", max_attempts = 3, name = "mailer", max_attempts = 5)]
async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
