//! The bank account's decisions, given/when/then, with no database.

use fluvius_core::harness::{event, AggregateTest};
use fluvius_core::AggregateId;
use fluvius_examples::domain::bank_account::{Account, AccountOpened, Amount};

fn opened(initial_balance: i64) -> fluvius_core::harness::TestEvent {
    event(
        "account-opened",
        AccountOpened {
            owner: "Alice".into(),
            initial_balance,
        },
    )
}

#[test]
fn opening_records_the_owner_and_balance() {
    AggregateTest::<Account>::given_no_events()
        .when(Account::open_command(AggregateId::new(), "Alice".into(), 1000))
        .then_expect_events([opened(1000)])
        .then_state(|a| {
            assert!(a.open);
            assert_eq!((a.owner.as_str(), a.balance), ("Alice", 1000));
        });
}

#[test]
fn an_account_opens_once() {
    AggregateTest::<Account>::given([opened(10)])
        .when(Account::open_command(AggregateId::new(), "Bob".into(), 5))
        .then_expect_error("already_open");
}

#[test]
fn a_negative_initial_balance_is_refused() {
    AggregateTest::<Account>::given_no_events()
        .when(Account::open_command(AggregateId::new(), "Alice".into(), -1))
        .then_expect_error("invalid_amount");
}

#[test]
fn deposits_and_withdrawals_move_the_balance() {
    let id = AggregateId::new();
    AggregateTest::<Account>::given([opened(1000), event("money-withdrawn", Amount { amount: 200 })])
        .when(Account::deposit_command(id, 300))
        .then_expect_events([event("money-deposited", Amount { amount: 300 })])
        .then_state(|a| assert_eq!(a.balance, 1100));
    AggregateTest::<Account>::given([opened(1000), event("money-deposited", Amount { amount: 300 })])
        .when(Account::withdraw_command(id, 1300))
        .then_expect_events([event("money-withdrawn", Amount { amount: 1300 })])
        .then_state(|a| assert_eq!(a.balance, 0));
}

#[test]
fn an_overdraft_is_refused() {
    AggregateTest::<Account>::given([opened(100), event("money-withdrawn", Amount { amount: 60 })])
        .when(Account::withdraw_command(AggregateId::new(), 41))
        .then_expect_error("insufficient_funds")
        .then_state(|a| assert_eq!(a.balance, 40, "a refused command changes nothing"));
}

#[test]
fn amounts_must_be_positive() {
    for amount in [0, -5] {
        AggregateTest::<Account>::given([opened(100)])
            .when(Account::deposit_command(AggregateId::new(), amount))
            .then_expect_error("invalid_amount");
        AggregateTest::<Account>::given([opened(100)])
            .when(Account::withdraw_command(AggregateId::new(), amount))
            .then_expect_error("invalid_amount");
    }
}

#[test]
fn a_closed_account_takes_nothing() {
    AggregateTest::<Account>::given_no_events()
        .when(Account::deposit_command(AggregateId::new(), 10))
        .then_expect_error("not_open");
    AggregateTest::<Account>::given_no_events()
        .when(Account::withdraw_command(AggregateId::new(), 10))
        .then_expect_error("not_open");
}
