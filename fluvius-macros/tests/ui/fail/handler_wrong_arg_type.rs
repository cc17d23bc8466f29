use fluvius_core::prelude::*;

#[event_handler("user-created")]
async fn on_user_created(key: &String) -> Result<(), HandlerError> {
    let _ = key;
    Ok(())
}

fn main() {}
