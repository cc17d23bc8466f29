//! Unique e-mail addresses across users: a transactional handler claims each address in a
//! table, inside the transaction that appends the `user-registered` event. A second user with
//! the same address is refused (`Error::RefusedByHandler`) and nothing of that command is
//! stored — even when both register at the same moment.
//!
//! ```text
//! cargo run --example unique_email                 # embedded SQLite file under target/
//! cargo run --example unique_email -- --memory     # in-memory store (claims in a HashSet)
//! DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run --example unique_email
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use fluvius_core::prelude::*;
use fluvius_core::{AppendTx, BoxFuture};
use fluvius_sql::AppendTxExt;
use serde::{Deserialize, Serialize};

/// A user account.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    email: Option<String>,
}

/// Payload of `user-registered`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    email: String,
}

#[aggregate(resource = "account")]
impl Account {
    /// Register the account with an e-mail address (once).
    #[action(evt_key = "user-registered", resources = ["account"])]
    async fn register(&self, email: String) -> Result<Registered, DomainError> {
        if self.email.is_some() {
            return Err(DomainError::new(
                "already_registered",
                "the account is registered",
            ));
        }
        if !email.contains('@') {
            return Err(DomainError::new(
                "invalid_email",
                format!("`{email}` is not an e-mail address"),
            ));
        }
        Ok(Registered {
            email: email.to_lowercase(),
        })
    }

    #[apply("user-registered")]
    fn registered(&mut self, e: Registered) {
        self.email = Some(e.email);
    }
}

/// The claims table, created by the example on a SQL store.
const CLAIMS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS user_emails (email TEXT PRIMARY KEY, account_id TEXT NOT NULL)";

/// Claim the event's address in the append's transaction; a taken address refuses the command.
/// On the in-memory store (no database) the claims live in `memory`: that store runs no other
/// append while a transactional handler runs, so a claim is never left by a failed append.
fn claim_email<'a>(
    memory: &'a Mutex<HashSet<String>>,
    event: &'a Event,
    tx: &'a mut AppendTx<'_>,
) -> BoxFuture<'a, Result<(), DomainError>> {
    Box::pin(async move {
        let email = event.payload.decode::<Registered>()?.email;
        let account = event.aggregate_id.to_string();
        let claimed = match tx.backend() {
            "sqlite" => {
                sqlx::query(
                    "INSERT INTO user_emails (email, account_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )
                .bind(&email)
                .bind(&account)
                .execute(tx.sqlite()?)
                .await?
                .rows_affected()
                    == 1
            }
            "postgres" => {
                sqlx::query(
                    "INSERT INTO user_emails (email, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(&email)
                .bind(&account)
                .execute(tx.postgres()?)
                .await?
                .rows_affected()
                    == 1
            }
            _ => memory
                .lock()
                .map_err(|_| DomainError::rejected("claims lock poisoned"))?
                .insert(email.clone()),
        };
        if !claimed {
            return Err(DomainError::new(
                "email_taken",
                format!("{email} is already registered"),
            ));
        }
        Ok(())
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = fluvius_examples::store_from_args_with("unique_email", &[CLAIMS_TABLE]).await?;
    let memory_claims = Arc::new(Mutex::new(HashSet::new()));
    let domain = Domain::builder()
        .namespace("accounts")
        .aggregate::<Account>()
        .logstore_arc(store)
        .without_global_handlers()
        .transactional_handler(
            "unique-email",
            "user-registered",
            move |event: &Event, tx: &mut AppendTx<'_>| {
                let claims = memory_claims.clone();
                Box::pin(async move { claim_email(&claims, event, tx).await })
            },
        )
        .build()
        .await?;

    // A tag per run, so a PostgreSQL database reused across runs starts with free addresses.
    let id = AggregateId::new().to_string();
    let tag = &id[id.len() - 8..];
    let ann = format!("ann.{tag}@example.org");

    let first = AggregateId::new();
    domain
        .process_command(Account::register_command(first, ann.clone()))
        .await?;
    println!("registered {ann} for account {first}");

    // The same address, different case, another account: refused, nothing stored.
    let second = AggregateId::new();
    match domain
        .process_command(Account::register_command(second, ann.to_uppercase()))
        .await
    {
        Err(Error::RefusedByHandler { handler, reason }) => {
            println!(
                "second account refused by `{handler}`: [{}] {reason}",
                reason.code()
            );
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    if !domain.logstore().get_events("account", second).await?.is_empty() {
        return Err("a refused command left events".into());
    }

    // Ten accounts race for one address: exactly one wins.
    let contested = format!("bob.{tag}@example.org");
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let (domain, email) = (domain.clone(), contested.clone());
            tokio::spawn(async move {
                domain
                    .process_command(Account::register_command(AggregateId::new(), email))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await? {
            Ok(_) => winners += 1,
            Err(Error::RefusedByHandler { reason, .. }) if reason.code() == "email_taken" => {}
            Err(other) => return Err(other.into()),
        }
    }
    println!(
        "10 accounts raced for {contested}: {winners} registered, {} refused",
        10 - winners
    );
    if winners != 1 {
        return Err(format!("expected exactly one winner, got {winners}").into());
    }

    // The refused account can still register with a free address.
    domain
        .process_command(Account::register_command(
            second,
            format!("ann.b.{tag}@example.org"),
        ))
        .await?;
    let account: Account = domain.load(second).await?;
    println!(
        "account {second} registered as {}",
        account.email.unwrap_or_default()
    );
    Ok(())
}
