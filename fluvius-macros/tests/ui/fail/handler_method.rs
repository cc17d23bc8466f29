use fluvius_core::prelude::*;

pub struct Mailer;

impl Mailer {
    #[event_handler("user-created")]
    async fn on_user_created(&self) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
