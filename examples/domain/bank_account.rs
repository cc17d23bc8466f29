//! The bank account aggregate: open, deposit, withdraw; an overdraft is refused with the code
//! `insufficient_funds`.

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// One account's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// The balance; never negative.
    pub balance: i64,
    /// Opened (and so able to take deposits and withdrawals).
    pub open: bool,
}

/// Payload of `account-opened`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountOpened {
    /// The owner.
    pub owner: String,
    /// The balance to start with.
    pub initial_balance: i64,
}

/// Payload of `money-deposited` and `money-withdrawn`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Amount {
    /// How much; always positive.
    pub amount: i64,
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
