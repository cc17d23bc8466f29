//! A saga across three aggregates: OrderPlaced → ReserveInventory → ChargePayment → ShipOrder,
//! and PaymentFailed → ReleaseInventory. Commands carry the correlation id of the order and
//! name the event that caused them; a redelivered event does not act twice.

use std::sync::Arc;
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::{ActionCall, ActionSpec, Aggregate, DispatchOptions, FoldEvent, NewEvent, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The order: placed, then shipped.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    placed: bool,
    shipped: bool,
    amount: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Placed {
    amount: i64,
}

impl Aggregate for Order {
    const RESOURCE: &'static str = "order";

    fn actions() -> &'static [ActionSpec] {
        &[
            ActionSpec {
                name: "place",
                evt_key: "order-placed",
                resources: &[],
                version: 1,
            },
            ActionSpec {
                name: "ship",
                evt_key: "order-shipped",
                resources: &[],
                version: 1,
            },
        ]
    }

    async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
        match call.action() {
            "place" if !self.placed => Ok(vec![NewEvent::new(
                "order-placed",
                1,
                call.take_args::<Placed>()?,
            )?]),
            "ship" if self.placed && !self.shipped => Ok(vec![NewEvent::new("order-shipped", 1, json!({}))?]),
            "place" | "ship" => Err(Error::rejected(DomainError::rejected("not now"))),
            _ => Err(call.unknown_action()),
        }
    }

    fn apply(&mut self, mut event: FoldEvent<'_>) -> Result<(), Error> {
        match event.key() {
            "order-placed" => {
                self.placed = true;
                self.amount = event.decode::<Placed>()?.amount;
            }
            "order-shipped" => self.shipped = true,
            _ => return Err(event.unknown()),
        }
        Ok(())
    }
}

/// The stock reserved for one order (same id as the order).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Inventory {
    reserved: bool,
    released: bool,
}

impl Aggregate for Inventory {
    const RESOURCE: &'static str = "inventory";

    fn actions() -> &'static [ActionSpec] {
        &[
            ActionSpec {
                name: "reserve",
                evt_key: "inventory-reserved",
                resources: &[],
                version: 1,
            },
            ActionSpec {
                name: "release",
                evt_key: "inventory-released",
                resources: &[],
                version: 1,
            },
        ]
    }

    async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
        match call.action() {
            "reserve" if !self.reserved => Ok(vec![NewEvent::new(
                "inventory-reserved",
                1,
                call.take_args::<Placed>()?,
            )?]),
            "release" if self.reserved && !self.released => {
                Ok(vec![NewEvent::new("inventory-released", 1, json!({}))?])
            }
            "reserve" | "release" => Err(Error::rejected(DomainError::rejected("not now"))),
            _ => Err(call.unknown_action()),
        }
    }

    fn apply(&mut self, event: FoldEvent<'_>) -> Result<(), Error> {
        match event.key() {
            "inventory-reserved" => self.reserved = true,
            "inventory-released" => self.released = true,
            _ => return Err(event.unknown()),
        }
        Ok(())
    }
}

/// The payment of one order (same id): charged, or failed above the card limit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payment {
    settled: bool,
}

const CARD_LIMIT: i64 = 1_000;

impl Aggregate for Payment {
    const RESOURCE: &'static str = "payment";

    fn actions() -> &'static [ActionSpec] {
        &[ActionSpec {
            name: "charge",
            evt_key: "payment-charged",
            resources: &[],
            version: 1,
        }]
    }

    async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
        match call.action() {
            "charge" if !self.settled => {
                let args: Placed = call.take_args()?;
                let key = if args.amount <= CARD_LIMIT {
                    "payment-charged"
                } else {
                    "payment-failed"
                };
                Ok(vec![NewEvent::new(key, 1, args)?])
            }
            "charge" => Err(Error::rejected(DomainError::rejected("already settled"))),
            _ => Err(call.unknown_action()),
        }
    }

    fn apply(&mut self, event: FoldEvent<'_>) -> Result<(), Error> {
        match event.key() {
            "payment-charged" | "payment-failed" => self.settled = true,
            _ => return Err(event.unknown()),
        }
        Ok(())
    }
}

/// The saga: one step per event it cares about.
async fn order_saga(domain: Domain, event: Arc<Event>) -> Result<(), HandlerError> {
    let id = event.aggregate_id;
    let command = match event.key.as_str() {
        "order-placed" => {
            let placed: Placed = event.payload_as()?;
            Command::new("inventory", id, "reserve", json!({ "amount": placed.amount }))
                .caused_by(&event, "reserve-inventory")
        }
        "inventory-reserved" => {
            let reserved: Placed = event.payload_as()?;
            Command::new("payment", id, "charge", json!({ "amount": reserved.amount }))
                .caused_by(&event, "charge-payment")
        }
        "payment-charged" => Command::new("order", id, "ship", json!({})).caused_by(&event, "ship-order"),
        "payment-failed" => {
            Command::new("inventory", id, "release", json!({})).caused_by(&event, "release-inventory")
        }
        _ => return Ok(()),
    };
    domain
        .process_command(command)
        .await
        .map(drop)
        .map_err(|e| HandlerError::msg(e.to_string()))
}

async fn shop() -> Domain {
    Domain::builder()
        .namespace("shop")
        .aggregate::<Order>()
        .aggregate::<Inventory>()
        .aggregate::<Payment>()
        .logstore(MemoryLogStore::new())
        .without_global_handlers()
        .dispatch(DispatchOptions::default().retry(RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }))
        .saga("order-saga", "*", order_saga)
        .build()
        .await
        .unwrap()
}

/// Wait until the saga has nothing left to do: each step's command adds events, so idle
/// once means the chain may continue; loop until the log stops growing.
async fn settle(domain: &Domain) -> Vec<Event> {
    loop {
        let before = domain.logstore().head_position().await.unwrap();
        domain.wait_idle().await;
        if domain.logstore().head_position().await.unwrap() == before {
            return domain.logstore().read_all(0, usize::MAX).await.unwrap();
        }
    }
}

fn keys_of(log: &[Event], id: AggregateId) -> Vec<&str> {
    log.iter()
        .filter(|e| e.aggregate_id == id)
        .map(|e| e.key.as_str())
        .collect()
}

/// Every event of one order's flow shares the order's correlation id, and each was caused by
/// the event before it.
fn assert_causal_chain(log: &[Event], id: AggregateId) {
    let flow: Vec<&Event> = log.iter().filter(|e| e.aggregate_id == id).collect();
    let correlation = flow[0].metadata.correlation_id;
    for pair in flow.windows(2) {
        assert_eq!(pair[1].metadata.correlation_id, correlation, "{}", pair[1].key);
        assert_eq!(
            pair[1].metadata.causation_id, pair[0].id,
            "{} was caused by {}",
            pair[1].key, pair[0].key
        );
    }
}

#[tokio::test]
async fn an_order_within_the_card_limit_is_reserved_charged_and_shipped() {
    let domain = shop().await;
    let id = AggregateId::new();
    domain
        .process_command(Command::new("order", id, "place", json!({ "amount": 250 })))
        .await
        .unwrap();
    let log = settle(&domain).await;
    assert_eq!(
        keys_of(&log, id),
        [
            "order-placed",
            "inventory-reserved",
            "payment-charged",
            "order-shipped"
        ]
    );
    assert_causal_chain(&log, id);
    let order: Order = domain.load(id).await.unwrap();
    assert!(order.shipped);
    let inventory: Inventory = domain.load(id).await.unwrap();
    assert!(inventory.reserved && !inventory.released);
    assert!(domain.parked(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_payment_releases_the_inventory_and_nothing_ships() {
    let domain = shop().await;
    let id = AggregateId::new();
    domain
        .process_command(Command::new("order", id, "place", json!({ "amount": 5_000 })))
        .await
        .unwrap();
    let log = settle(&domain).await;
    assert_eq!(
        keys_of(&log, id),
        [
            "order-placed",
            "inventory-reserved",
            "payment-failed",
            "inventory-released"
        ]
    );
    assert_causal_chain(&log, id);
    let order: Order = domain.load(id).await.unwrap();
    assert!(order.placed && !order.shipped);
    let inventory: Inventory = domain.load(id).await.unwrap();
    assert!(inventory.released);
}

#[tokio::test]
async fn a_redelivered_event_does_not_act_twice() {
    let domain = shop().await;
    let id = AggregateId::new();
    domain
        .process_command(Command::new("order", id, "place", json!({ "amount": 10 })))
        .await
        .unwrap();
    let first = settle(&domain).await;
    assert_eq!(keys_of(&first, id).len(), 4);
    // Replay the whole log to the saga (what a crash before a checkpoint write would do).
    domain.reset_handler("order-saga", 0).await.unwrap();
    let again = settle(&domain).await;
    assert_eq!(
        again.len(),
        first.len(),
        "the replayed steps were answered by idempotency"
    );
    assert!(domain.parked(None).await.unwrap().is_empty());
}
