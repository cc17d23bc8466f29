//! Bank account: open, deposit, withdraw. An overdraft is refused with a clear error, and the
//! balance can be read as it was at any earlier moment.
//!
//! ```text
//! cargo run --example bank_account [-- --memory]
//! ```

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// One account's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    owner: String,
    balance: i64,
    open: bool,
}

/// Payload of `account-opened`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountOpened {
    owner: String,
    initial_balance: i64,
}

/// Payload of `money-deposited` and `money-withdrawn`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Amount {
    amount: i64,
}

fn positive(amount: i64) -> Result<(), DomainError> {
    if amount <= 0 {
        return Err(DomainError::new(
            "invalid_amount",
            format!("amount must be positive, got {amount}"),
        ));
    }
    Ok(())
}

#[aggregate(resource = "account")]
impl Account {
    /// Open the account with an initial balance.
    #[action(evt_key = "account-opened")]
    fn open(&self, owner: String, initial_balance: i64) -> Result<AccountOpened, DomainError> {
        if self.open {
            return Err(DomainError::new("already_open", "account is already open"));
        }
        if initial_balance < 0 {
            return Err(DomainError::new(
                "invalid_amount",
                "initial balance cannot be negative",
            ));
        }
        Ok(AccountOpened {
            owner,
            initial_balance,
        })
    }

    /// Put money in.
    #[action(evt_key = "money-deposited")]
    fn deposit(&self, amount: i64) -> Result<Amount, DomainError> {
        self.require_open()?;
        positive(amount)?;
        Ok(Amount { amount })
    }

    /// Take money out; never below zero.
    #[action(evt_key = "money-withdrawn")]
    fn withdraw(&self, amount: i64) -> Result<Amount, DomainError> {
        self.require_open()?;
        positive(amount)?;
        if amount > self.balance {
            return Err(DomainError::new(
                "insufficient_funds",
                format!("cannot withdraw {amount}: balance is {}", self.balance),
            ));
        }
        Ok(Amount { amount })
    }

    #[apply("account-opened")]
    fn opened(&mut self, e: AccountOpened) {
        self.owner = e.owner;
        self.balance = e.initial_balance;
        self.open = true;
    }

    #[apply("money-deposited")]
    fn deposited(&mut self, e: Amount) {
        self.balance += e.amount;
    }

    #[apply("money-withdrawn")]
    fn withdrawn(&mut self, e: Amount) {
        self.balance -= e.amount;
    }

    fn require_open(&self) -> Result<(), DomainError> {
        if self.open {
            Ok(())
        } else {
            Err(DomainError::new("not_open", "account is not open"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = fluvius_examples::store_from_args("bank_account").await?;
    let bank = Domain::builder()
        .namespace("bank")
        .aggregate::<Account>()
        .logstore_arc(store)
        .without_global_handlers()
        .build()
        .await?;

    let id = AggregateId::new();
    bank.process_command(Account::open_command(id, "Alice".into(), 1000))
        .await?;
    let after_withdraw = bank.process_command(Account::withdraw_command(id, 200)).await?;
    let checkpoint = after_withdraw.events[0].timestamp;
    bank.process_command(Account::deposit_command(id, 300)).await?;
    bank.process_command(Account::withdraw_command(id, 600)).await?;

    match bank.process_command(Account::withdraw_command(id, 10_000)).await {
        Err(Error::Rejected(e)) => println!("overdraft refused: [{}] {}", e.code(), e),
        other => return Err(format!("expected an overdraft rejection, got {other:?}").into()),
    }

    println!("history:");
    for e in bank.logstore().get_events("account", id).await? {
        println!("  v{} {:<16} {}", e.aggregate_version, e.key, e.payload);
    }
    let now: Account = bank.load(id).await?;
    let then: Account = bank.load_at(id, checkpoint).await?;
    println!("balance now: {}  (1000 - 200 + 300 - 600)", now.balance);
    println!("balance right after the first withdrawal: {}", then.balance);
    if now.balance != 500 || then.balance != 800 {
        return Err("unexpected balances".into());
    }
    Ok(())
}
