//! The authorization hook: checked per command, before it runs.

use std::sync::{Arc, Mutex};

use fluvius_core::prelude::*;
use fluvius_tests::*;
use serde_json::json;

/// Admins may do anything; members only act within their tenant and may not deactivate.
fn policy(cmd: &Command) -> Result<(), String> {
    let ctx = &cmd.context;
    match ctx.user_id.as_deref() {
        None => Err("anonymous commands are refused".into()),
        Some("admin") => Ok(()),
        Some(user) => {
            if ctx.tenant_id.as_deref() != Some("acme") {
                return Err(format!("{user} acts outside tenant acme"));
            }
            if cmd.action == "deactivate" {
                return Err(format!("{user} may not deactivate users"));
            }
            Ok(())
        }
    }
}

fn as_user(user: &str, tenant: &str) -> Context {
    Context::new().with_user(user).with_tenant(tenant)
}

#[tokio::test]
async fn the_policy_decides_per_command_and_user() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .authorize({
            let asked = asked.clone();
            move |cmd| {
                asked
                    .lock()
                    .unwrap()
                    .push((cmd.resource.clone(), cmd.action.clone(), cmd.aggregate_id));
                policy(cmd)
            }
        })
        .build()
        .await
        .unwrap();
    let id = AggregateId::new();
    let create = User::create_user_command(id, "Ann".into(), "a@x.org".into());

    // Anonymous: refused, nothing written.
    let err = domain.process_command(create.clone()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { reason } if reason.contains("anonymous")),
        "{err:?}"
    );
    assert!(all_events(&domain).await.is_empty());

    // A member of acme may create and rename.
    let member = as_user("bob", "acme");
    let resp = domain
        .process_command(create.with_context(member.clone()))
        .await
        .unwrap();
    assert_eq!(resp.events[0].metadata.user_id.as_deref(), Some("bob"));
    domain
        .process_command(
            Command::new("user", id, "rename", json!({"name": "Anna"})).with_context(member.clone()),
        )
        .await
        .unwrap();

    // Another tenant: refused.
    let err = domain
        .process_command(User::rename_command(id, "X".into()).with_context(as_user("bob", "globex")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    // A member may not deactivate; an admin may.
    let log = all_events(&domain).await;
    let err = domain
        .process_command(User::deactivate_command(id).with_context(member))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { reason } if reason.contains("deactivate")),
        "{err:?}"
    );
    assert_eq!(all_events(&domain).await, log);
    domain
        .process_command(User::deactivate_command(id).with_context(as_user("admin", "any")))
        .await
        .unwrap();

    let user: User = domain.load(id).await.unwrap();
    assert_eq!((user.name.as_str(), user.deactivated), ("Anna", true));
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 6, "the policy saw every command once");
    assert!(asked
        .iter()
        .all(|(resource, _, aggregate)| resource == "user" && *aggregate == Some(id)));
    assert_eq!(asked[5].1, "deactivate");
}

#[tokio::test]
async fn a_refused_command_does_not_run_the_action() {
    // The policy refuses before the action runs: an overdraft that would be rejected by the
    // action is reported as forbidden, not rejected.
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .authorize(|cmd| {
            if cmd.action == "withdraw" {
                Err("withdrawals are closed".into())
            } else {
                Ok(())
            }
        })
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 10).await;
    let err = domain
        .process_command(Account::withdraw_command(id, 1_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 10);
}
