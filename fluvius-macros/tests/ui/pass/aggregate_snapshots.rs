//! `snapshot_every` and `state_version` set the aggregate's snapshot policy and state version;
//! left out, there are no snapshots and the state version is 1.

use fluvius_core::prelude::*;
use fluvius_core::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    total: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Posted {
    amount: i64,
}

#[aggregate(resource = "ledger", snapshot_every = 250, state_version = 3)]
impl Ledger {
    #[action(evt_key = "posted")]
    fn post(&self, amount: i64) -> Result<Posted, DomainError> {
        Ok(Posted { amount })
    }

    #[apply("posted")]
    fn posted(&mut self, e: Posted) {
        self.total += e.amount;
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Plain {
    n: u32,
}

#[aggregate(state_version = 4_294_967_295)]
impl Plain {
    #[action(evt_key = "bumped")]
    fn bump(&self) -> Result<Posted, DomainError> {
        Ok(Posted { amount: 1 })
    }

    #[apply("bumped")]
    fn bumped(&mut self, _: Posted) {
        self.n += 1;
    }
}

fn main() {
    assert_eq!(<Ledger as Aggregate>::SNAPSHOT_EVERY, Some(250));
    assert_eq!(<Ledger as Aggregate>::STATE_VERSION, 3);
    assert_eq!(<Plain as Aggregate>::SNAPSHOT_EVERY, None);
    assert_eq!(<Plain as Aggregate>::STATE_VERSION, u32::MAX);
    assert_eq!(<Plain as Aggregate>::RESOURCE, "plain");
}
