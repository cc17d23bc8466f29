use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Order {
    placed: bool,
    confirmed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
    item: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderConfirmed {}

#[aggregate(resource = "order")]
impl Order {
    #[action(evt_key = "order-placed")]
    fn place(&self, item: String) -> Result<OrderPlaced, DomainError> {
        Ok(OrderPlaced { item })
    }

    #[action(evt_key = "order-confirmed")]
    fn confirm(&self) -> Result<OrderConfirmed, DomainError> {
        Ok(OrderConfirmed {})
    }

    #[apply("order-placed")]
    fn placed(&mut self, _e: OrderPlaced) {
        self.placed = true;
    }

    // The mistake: the fold of `order-confirmed` takes the payload of another event.
    #[apply("order-confirmed")]
    fn confirmed(&mut self, _e: OrderPlaced) {
        self.confirmed = true;
    }
}

fn main() {}
