//! Random JSON payloads: no panic; either one recorded event whose arguments are the payload,
//! or a typed error and nothing written.

use fluvius_core::prelude::*;
use fluvius_tests::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Map, Number, Value};

/// Any JSON value (bounded).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names: mostly the real ones, so payloads are often nearly valid.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["amount", "name", "email", "address", "street", "city"])
            .prop_map(str::to_owned),
        1 => "[a-z]{1,6}",
    ]
}

/// Payloads built around an action's real fields, with random values.
fn near_valid() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), any_json(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A valid payload for `action`, then maybe one mutation: a field dropped, a field added, or
/// a value replaced by random JSON.
fn mutated(action: &str, amount: i64, text: String, mutation: u8, extra_key: String, junk: Value) -> Value {
    let mut valid = match action {
        "deposit" | "withdraw" => json!({ "amount": amount }),
        "rename" => json!({ "name": text }),
        "change-email" => json!({ "email": text }),
        "set-address" => json!({ "address": { "street": text, "city": "Springfield" } }),
        _ => json!({}),
    };
    let map = valid.as_object_mut().unwrap();
    let first = map.keys().next().cloned();
    match (mutation, first) {
        (1, Some(k)) => {
            map.remove(&k);
        }
        (2, _) => {
            map.insert(extra_key, junk);
        }
        (3, Some(k)) => {
            map.insert(k, junk);
        }
        (4, Some(k)) if k == "address" => {
            map["address"]["city"] = junk;
        }
        (5, _) => return junk,
        _ => {}
    }
    valid
}

fn command() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    (
        actions(),
        -10i64..200,
        ".{0,300}",
        0u8..7,
        key(),
        prop_oneof![any_json(), near_valid()],
    )
        .prop_map(|((resource, action), amount, text, mutation, extra, junk)| {
            (
                resource,
                action,
                mutated(action, amount, text, mutation, extra, junk),
            )
        })
}

fn actions() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(vec![
        ("account", "deposit"),
        ("account", "withdraw"),
        ("user", "rename"),
        ("user", "set-address"),
        ("user", "change-email"),
        ("user", "deactivate"),
    ])
}

const ALLOWED: [&str; 3] = ["invalid_payload", "rejected", "payload_too_large"];

/// Run one command; `Ok(true)` if it succeeded, `Ok(false)` if it failed as it may.
fn check(resource: &str, action: &str, payload: Value) -> Result<bool, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let domain = builder()
            .logstore(MemoryLogStore::new())
            .max_payload_bytes(256)
            .build()
            .await
            .unwrap();
        let id = if resource == "user" {
            create_user(&domain, "Ann").await
        } else {
            open_account(&domain, 100).await
        };
        let before = all_events(&domain).await;
        let cmd = Command::new(resource, id, action, payload.clone());
        let command_id = cmd.id;
        let ok = match domain.process_command(cmd).await {
            Ok(resp) => {
                prop_assert_eq!(resp.events.len(), 1);
                let event = &resp.events[0];
                prop_assert_eq!(event.args.to_value().unwrap(), payload);
                prop_assert_eq!(event.command_name.as_str(), action);
                let after = all_events(&domain).await;
                prop_assert_eq!(after.len(), before.len() + 1);
                prop_assert_eq!(&after[before.len()], event);
                prop_assert!(domain.logstore().get_command(command_id).await.unwrap().is_some());
                true
            }
            Err(err) => {
                prop_assert!(ALLOWED.contains(&err.code()), "unexpected error {:?}", err);
                prop_assert_eq!(all_events(&domain).await, before);
                prop_assert!(domain.logstore().get_command(command_id).await.unwrap().is_none());
                false
            }
        };
        // The aggregate still loads.
        if resource == "user" {
            domain.load::<User>(id).await.unwrap();
        } else {
            prop_assert!(domain.load::<Account>(id).await.unwrap().balance >= 0);
        }
        Ok(ok)
    })
}

#[test]
fn random_payloads_are_handled() {
    let (oks, errs) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(&command(), |(resource, action, payload)| {
            let counter = if check(resource, action, payload)? {
                &oks
            } else {
                &errs
            };
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    // The generator must exercise both outcomes, or the property says little.
    assert!(oks.load(Ordering::Relaxed) > 0, "no command succeeded");
    assert!(errs.load(Ordering::Relaxed) > 0, "no command failed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_amounts_never_overdraw(ops in prop::collection::vec((any::<bool>(), -5i64..200), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let domain = domain().await;
            let id = open_account(&domain, 0).await;
            let mut model = 0i64;
            for (deposit, amount) in ops {
                let cmd = if deposit {
                    Account::deposit_command(id, amount)
                } else {
                    Account::withdraw_command(id, amount)
                };
                let accepted = amount > 0 && (deposit || amount <= model);
                match domain.process_command(cmd).await {
                    Ok(_) => {
                        prop_assert!(accepted);
                        model += if deposit { amount } else { -amount };
                    }
                    Err(Error::Rejected(_)) => prop_assert!(!accepted),
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(domain.load::<Account>(id).await.unwrap().balance, model);
            Ok(())
        })?;
    }
}
