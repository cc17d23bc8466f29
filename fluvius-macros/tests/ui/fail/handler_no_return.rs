use fluvius_core::prelude::*;

#[event_handler("user-created")]
async fn on_user_created(event: &Event) {
    let _ = event;
}

fn main() {}
