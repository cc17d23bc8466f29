//! A given/when/then harness: test an aggregate's decisions with no database and no runtime.
//!
//! ```
//! use fluvius_core::harness::{event, AggregateTest};
//! # use fluvius_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Default, Serialize, Deserialize)]
//! # pub struct Account { balance: i64 }
//! # #[derive(Debug, Serialize, Deserialize)]
//! # pub struct Amount { amount: i64 }
//! # #[aggregate(resource = "account")]
//! # impl Account {
//! #     #[action(evt_key = "money-deposited")]
//! #     fn deposit(&self, amount: i64) -> Result<Amount, DomainError> { Ok(Amount { amount }) }
//! #     #[action(evt_key = "money-withdrawn")]
//! #     fn withdraw(&self, amount: i64) -> Result<Amount, DomainError> {
//! #         if amount > self.balance { return Err(DomainError::new("insufficient_funds", "no")); }
//! #         Ok(Amount { amount })
//! #     }
//! #     #[apply("money-deposited")] fn deposited(&mut self, e: Amount) { self.balance += e.amount; }
//! #     #[apply("money-withdrawn")] fn withdrawn(&mut self, e: Amount) { self.balance -= e.amount; }
//! # }
//! let id = AggregateId::new();
//! AggregateTest::<Account>::given([event("money-deposited", Amount { amount: 100 })])
//!     .when(Account::withdraw_command(id, 30))
//!     .then_expect_events([event("money-withdrawn", Amount { amount: 30 })])
//!     .then_state(|account| assert_eq!(account.balance, 70));
//!
//! AggregateTest::<Account>::given([event("money-deposited", Amount { amount: 10 })])
//!     .when(Account::withdraw_command(id, 30))
//!     .then_expect_error("insufficient_funds");
//! ```
//!
//! The harness panics with a readable message when an expectation fails: it is for tests.

use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use serde::Serialize;
use serde_json::Value;

use crate::aggregate::{ActionCall, ActionSpec, Aggregate, FoldEvent, NewEvent};
use crate::command::Command;
use crate::domain::fold_new;
use crate::error::{Error, Result};
use crate::event::{Event, Metadata};
use crate::id::AggregateId;
use crate::name::Name;
use crate::payload::Payload;

/// An event as a test states it: a key and a payload.
#[derive(Clone, Debug, PartialEq)]
pub struct TestEvent {
    /// The event key.
    pub key: String,
    /// The payload as JSON.
    pub payload: Value,
}

/// State a test event: `event("money-deposited", Amount { amount: 100 })`.
///
/// # Panics
/// If the payload cannot be serialized to JSON.
pub fn event(key: &str, payload: impl Serialize) -> TestEvent {
    let payload = serde_json::to_value(payload)
        .unwrap_or_else(|e| panic!("test event `{key}`: payload does not serialize: {e}"));
    TestEvent {
        key: key.to_owned(),
        payload,
    }
}

/// Given some events, when a command runs, then expect events or an error.
pub struct AggregateTest<A: Aggregate> {
    state: A,
    version: u64,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Start from the state these events fold into.
    ///
    /// # Panics
    /// If an event does not fold (unknown key, payload of the wrong shape).
    pub fn given(events: impl IntoIterator<Item = TestEvent>) -> Self {
        let mut state = A::default();
        let mut version = 0;
        let aggregate_id = AggregateId::new();
        for given in events {
            version += 1;
            let stored = synthetic_event(A::RESOURCE, aggregate_id, version, &given);
            if let Err(e) = state.apply(FoldEvent::stored(&stored)) {
                panic!("given event #{version} `{}` does not fold: {e}", given.key);
            }
        }
        Self { state, version }
    }

    /// Start from the default state (no events).
    pub fn given_no_events() -> Self {
        Self::given([])
    }

    /// Run the command's action on the state (blocking on it; actions are decisions, so they
    /// need no runtime — use [`when_async`](Self::when_async) for one that does).
    pub fn when(self, command: Command) -> TestOutcome<A> {
        block_on(self.when_async(command))
    }

    /// Run the command's action on the state, inside the caller's runtime.
    pub async fn when_async(mut self, mut command: Command) -> TestOutcome<A> {
        let result = run(&mut self.state, self.version, &mut command).await;
        TestOutcome {
            result,
            state: self.state,
        }
    }
}

async fn run<A: Aggregate>(state: &mut A, version: u64, command: &mut Command) -> Result<Vec<TestEvent>> {
    ActionSpec::route(A::action(&command.action), command)?;
    let mut decided: Vec<NewEvent> = state
        .execute(ActionCall::new(
            &command.resource,
            &command.action,
            &mut command.args,
        ))
        .await?;
    // The domain's record step folds the same way: each event made into what the test sees,
    // then folded (an event the aggregate cannot apply fails the command).
    fold_new(state, A::RESOURCE, version, &mut decided, |new, _| {
        let payload = new
            .payload()
            .to_value()
            .map_err(|e| Error::serialization("event payload", e))?;
        Ok(TestEvent {
            key: new.key().to_owned(),
            payload,
        })
    })
}

/// What a command did in an [`AggregateTest`].
pub struct TestOutcome<A> {
    result: Result<Vec<TestEvent>>,
    state: A,
}

impl<A: std::fmt::Debug> TestOutcome<A> {
    /// Expect exactly these events (keys and JSON payloads), in order.
    ///
    /// # Panics
    /// If the command failed or produced other events.
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = TestEvent>) -> Self {
        let expected: Vec<TestEvent> = expected.into_iter().collect();
        match &self.result {
            Ok(events) if *events == expected => {}
            Ok(events) => panic!("expected events\n  {expected:?}\nbut the command produced\n  {events:?}"),
            Err(e) => panic!(
                "expected events\n  {expected:?}\nbut the command failed: [{}] {e}",
                e.code()
            ),
        }
        self
    }

    /// Expect the command to fail with this code: an [`Error::code`], or the code of the
    /// action's own [`DomainError`](crate::DomainError) for a rejection.
    ///
    /// # Panics
    /// If the command succeeded or failed with another code.
    pub fn then_expect_error(self, code: &str) -> Self {
        match &self.result {
            Err(Error::Rejected(d)) if d.code() == code => {}
            Err(e) if e.code() == code => {}
            Err(e) => panic!("expected error `{code}`, got [{}] {e}", error_code(e)),
            Ok(events) => panic!("expected error `{code}`, but the command produced {events:?}"),
        }
        self
    }

    /// Inspect the state after the command's events were applied.
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.state);
        self
    }

    /// The raw result, for custom assertions.
    pub fn result(&self) -> std::result::Result<&[TestEvent], &Error> {
        self.result.as_deref()
    }
}

fn error_code(e: &Error) -> &str {
    match e {
        Error::Rejected(d) => d.code(),
        other => other.code(),
    }
}

fn synthetic_event(resource: &str, aggregate_id: AggregateId, version: u64, given: &TestEvent) -> Event {
    let id = uuid::Uuid::now_v7();
    Event {
        id,
        position: version,
        namespace: "test".into(),
        resource: resource.into(),
        aggregate_id,
        aggregate_version: version,
        key: given.key.as_str().into(),
        schema_version: 1,
        payload: Payload::from(&given.payload),
        args: Payload::null(),
        command_id: id,
        command_name: Name::default(),
        timestamp: crate::clock::now(),
        metadata: Metadata::default(),
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
