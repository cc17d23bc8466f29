use fluvius_core::prelude::*;

#[event_handler("user-created")]
async fn on_user_created(event: &Event) -> u32 {
    let _ = event;
    0
}

fn main() {}
