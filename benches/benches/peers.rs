//! The same workload written for cqrs-es, the most used Rust event-sourcing library.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CqUser {
    name: String,
    email: String,
    active: bool,
    renames: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CqEvent {
    Created { name: String, email: String },
    Renamed { name: String },
}

impl DomainEvent for CqEvent {
    fn event_type(&self) -> String {
        match self {
            CqEvent::Created { .. } => "user-created".into(),
            CqEvent::Renamed { .. } => "user-renamed".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

pub enum CqCommand {
    Create { name: String, email: String },
    Rename { name: String },
}

#[derive(Debug)]
pub struct CqError(&'static str);

impl fmt::Display for CqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CqError {}

impl Aggregate for CqUser {
    const TYPE: &'static str = "user";
    type Command = CqCommand;
    type Event = CqEvent;
    type Error = CqError;
    type Services = ();

    async fn handle(&mut self, command: CqCommand, _: &(), sink: &EventSink<Self>) -> Result<(), CqError> {
        match command {
            CqCommand::Create { name, email } => {
                if self.active {
                    return Err(CqError("exists"));
                }
                sink.write(CqEvent::Created { name, email }, self).await;
            }
            CqCommand::Rename { name } => {
                if !self.active {
                    return Err(CqError("no such user"));
                }
                sink.write(CqEvent::Renamed { name }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: CqEvent) {
        match event {
            CqEvent::Created { name, email } => {
                self.name = name;
                self.email = email;
                self.active = true;
            }
            CqEvent::Renamed { name } => {
                self.name = name;
                self.renames += 1;
            }
        }
    }
}
