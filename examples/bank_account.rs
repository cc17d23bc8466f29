//! Bank account: open, deposit, withdraw. An overdraft is refused with a clear error, and the
//! balance can be read as it was at any earlier moment.
//!
//! ```text
//! cargo run --example bank_account [-- --memory]
//! ```

use fluvius_core::prelude::*;
use fluvius_examples::domain::bank_account::Account;

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
