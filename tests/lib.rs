//! Shared helpers for the integration tests: test aggregates, a probing log store, and a
//! recorder for handler invocations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fluvius_core::prelude::*;
use fluvius_core::{AppendRequest, BoxFuture, CommandRecord, DomainBuilder, StreamQuery};
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Notify, Semaphore};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// User
// ---------------------------------------------------------------------------------------------

/// A postal address (a nested action argument, to check error paths like `address.city`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
}

/// A user account.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Created and not deactivated.
    pub active: bool,
    /// Was deactivated.
    pub deactivated: bool,
    /// Postal address, once set.
    pub address: Option<Address>,
}

/// Payload of `user-created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// Payload of `user-renamed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRenamed {
    /// The name before.
    pub from: String,
    /// The new name.
    pub to: String,
}

/// Payload of `user-deactivated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeactivated {}

/// Payload of `user-email-changed` (schema version 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailChanged {
    /// The new address.
    pub email: String,
}

/// Payload of `user-address-set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressSet {
    /// The new address.
    pub address: Address,
}

#[aggregate(resource = "user")]
impl User {
    /// Create the user (only addressed as `user`).
    #[action(evt_key = "user-created", resources = ["user"])]
    async fn create_user(&self, name: String, email: String) -> Result<UserCreated, DomainError> {
        if self.active || self.deactivated {
            return Err(DomainError::new("already_exists", "user already exists"));
        }
        if name.is_empty() {
            return Err(DomainError::new("empty_name", "name must not be empty"));
        }
        Ok(UserCreated { name, email })
    }

    /// Rename (accepted under every resource the aggregate is registered as).
    #[action(evt_key = "user-renamed")]
    async fn rename(&self, name: String) -> Result<UserRenamed, DomainError> {
        if !self.active {
            return Err(DomainError::new("inactive", "user is not active"));
        }
        Ok(UserRenamed {
            from: self.name.clone(),
            to: name,
        })
    }

    /// Deactivate.
    #[action(evt_key = "user-deactivated")]
    async fn deactivate(&self) -> Result<UserDeactivated, DomainError> {
        if !self.active {
            return Err(DomainError::new("inactive", "user is not active"));
        }
        Ok(UserDeactivated {})
    }

    /// Change the e-mail address (event schema version 2).
    #[action(evt_key = "user-email-changed", version = 2)]
    async fn change_email(&self, email: String) -> Result<EmailChanged, DomainError> {
        if !self.active {
            return Err(DomainError::new("inactive", "user is not active"));
        }
        Ok(EmailChanged { email })
    }

    /// Set the postal address.
    #[action(evt_key = "user-address-set")]
    async fn set_address(&self, address: Address) -> Result<AddressSet, DomainError> {
        if !self.active {
            return Err(DomainError::new("inactive", "user is not active"));
        }
        Ok(AddressSet { address })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
        self.email = e.email;
        self.active = true;
    }

    #[apply("user-renamed")]
    fn renamed(&mut self, e: UserRenamed) {
        self.name = e.to;
    }

    #[apply("user-deactivated")]
    fn deactivated(&mut self, _e: UserDeactivated) {
        self.active = false;
        self.deactivated = true;
    }

    #[apply("user-email-changed")]
    fn email_changed(&mut self, e: EmailChanged) {
        self.email = e.email;
    }

    #[apply("user-address-set")]
    fn address_set(&mut self, e: AddressSet) {
        self.address = Some(e.address);
    }
}

// ---------------------------------------------------------------------------------------------
// Account
// ---------------------------------------------------------------------------------------------

/// A bank account that never goes below zero.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Owner's name.
    pub owner: String,
    /// Opened.
    pub open: bool,
    /// Current balance (never negative).
    pub balance: i64,
}

/// Payload of `account-opened`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    /// Owner's name.
    pub owner: String,
}

/// Payload of `money-deposited`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    /// Amount (positive).
    pub amount: i64,
}

/// Payload of `money-withdrawn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    /// Amount (positive).
    pub amount: i64,
}

#[aggregate(resource = "account")]
impl Account {
    /// Open the account.
    #[action(evt_key = "account-opened")]
    async fn open_account(&self, owner: String) -> Result<AccountOpened, DomainError> {
        if self.open {
            return Err(DomainError::new("already_open", "account is already open"));
        }
        Ok(AccountOpened { owner })
    }

    /// Deposit a positive amount.
    #[action(evt_key = "money-deposited")]
    async fn deposit(&self, amount: i64) -> Result<Deposited, DomainError> {
        if !self.open {
            return Err(DomainError::new("not_open", "account is not open"));
        }
        if amount <= 0 {
            return Err(DomainError::new(
                "invalid_amount",
                format!("amount {amount} must be positive"),
            ));
        }
        Ok(Deposited { amount })
    }

    /// Withdraw a positive amount, never below zero.
    #[action(evt_key = "money-withdrawn")]
    async fn withdraw(&self, amount: i64) -> Result<Withdrawn, DomainError> {
        if !self.open {
            return Err(DomainError::new("not_open", "account is not open"));
        }
        if amount <= 0 {
            return Err(DomainError::new(
                "invalid_amount",
                format!("amount {amount} must be positive"),
            ));
        }
        if amount > self.balance {
            return Err(DomainError::new(
                "insufficient_funds",
                format!("balance {} is below {amount}", self.balance),
            ));
        }
        Ok(Withdrawn { amount })
    }

    #[apply("account-opened")]
    fn opened(&mut self, e: AccountOpened) {
        self.owner = e.owner;
        self.open = true;
    }

    #[apply("money-deposited")]
    fn deposited(&mut self, e: Deposited) {
        self.balance += e.amount;
    }

    #[apply("money-withdrawn")]
    fn withdrawn(&mut self, e: Withdrawn) {
        self.balance -= e.amount;
    }
}

// ---------------------------------------------------------------------------------------------
// Note: small arguments, possibly large event payload.
// ---------------------------------------------------------------------------------------------

/// A note whose event payload can be much larger than its command arguments.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// The text.
    pub text: String,
}

/// Payload of `note-written`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteWritten {
    /// The text.
    pub text: String,
}

#[aggregate(resource = "note")]
impl Note {
    /// Write `text` repeated `times` times.
    #[action(evt_key = "note-written")]
    async fn write(&self, text: String, times: usize) -> Result<NoteWritten, DomainError> {
        if times > 1_000_000 {
            return Err(DomainError::rejected("too many repetitions"));
        }
        Ok(NoteWritten {
            text: text.repeat(times),
        })
    }

    #[apply("note-written")]
    fn written(&mut self, e: NoteWritten) {
        self.text = e.text;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A builder with the test aggregates registered and no global handlers.
pub fn builder() -> DomainBuilder {
    Domain::builder()
        .namespace("test")
        .aggregate::<User>()
        .aggregate::<Account>()
        .aggregate::<Note>()
        .without_global_handlers()
}

/// A domain over a fresh memory store, with no handlers.
pub async fn domain() -> Domain {
    builder()
        .logstore(MemoryLogStore::new())
        .build()
        .await
        .expect("domain builds")
}

/// The whole global log.
pub async fn all_events(domain: &Domain) -> Vec<Event> {
    domain.logstore().read_all(0, usize::MAX).await.expect("read_all")
}

/// Create a user and return its id.
pub async fn create_user(domain: &Domain, name: &str) -> AggregateId {
    let id = AggregateId::new();
    domain
        .process_command(User::create_user_command(
            id,
            name.into(),
            format!("{name}@example.org"),
        ))
        .await
        .expect("create user");
    id
}

/// Open an account with an initial balance (0 means no deposit) and return its id.
pub async fn open_account(domain: &Domain, balance: i64) -> AggregateId {
    let id = AggregateId::new();
    domain
        .process_command(Account::open_account_command(id, "Ann".into()))
        .await
        .expect("open account");
    if balance > 0 {
        domain
            .process_command(Account::deposit_command(id, balance))
            .await
            .expect("initial deposit");
    }
    id
}

/// Check that one stream's versions are exactly `1..=n`, in order, with distinct event ids and
/// positions; returns `n`.
pub fn assert_dense(events: &[Event]) -> u64 {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.aggregate_version,
            i as u64 + 1,
            "versions must be dense: {events:#?}"
        );
    }
    let mut ids: Vec<_> = events.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "duplicate event ids");
    let mut positions: Vec<_> = events.iter().map(|e| e.position).collect();
    positions.dedup();
    assert_eq!(positions.len(), events.len(), "duplicate positions");
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions must increase"
    );
    events.len() as u64
}

/// Records the events a handler saw, in the order it saw them.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Arc<Event>>>>);

impl Seen {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler closure that records every event and succeeds.
    pub fn handler(
        &self,
    ) -> impl Fn(Arc<Event>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
        let seen = self.clone();
        move |event| {
            seen.push(event);
            std::future::ready(Ok(()))
        }
    }

    /// Record one event.
    pub fn push(&self, event: Arc<Event>) {
        self.0.lock().unwrap().push(event);
    }

    /// The ids of the events seen, in order.
    pub fn ids(&self) -> Vec<Uuid> {
        self.0.lock().unwrap().iter().map(|e| e.id).collect()
    }

    /// The keys of the events seen, in order.
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.key.to_string()).collect()
    }

    /// How many events were seen.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Whether no event was seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ids of `events`, in order.
pub fn ids(events: &[Event]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// A log store that wraps [`MemoryLogStore`] and can interleave operations deterministically:
///
/// - `gate_loads(n)`: the next `n` stream reads each read, then wait until all `n` have read
///   (so `n` commands load the same version before any of them appends);
/// - `inject_rivals(n)`: the next `n` appends are each preceded by a rival append of the same
///   events under another command id (another writer that got there first);
///
/// - `delay_appends(d)`: every append first sleeps for `d` (so concurrent commands interleave
///   between their load and their append);
/// - `hold_next_append()`: the next append commits, then does not return until the returned
///   semaphore gets a permit (a commit whose acknowledgement is slow to reach its caller);
///   `committed()` is notified once it has committed;
/// - `fail_appends_transiently(n)`: the next `n` appends fail with [`Error::Transient`] and
///   write nothing (a deadlock or a busy database);
/// - `doubt_next_append()`: the next append is stored, then answered
///   [`Error::OutcomeUnknown`] (its reply was lost); `fail_next_lookups(n)`: the next `n`
///   command lookups fail with a store error.
///
/// It also counts stream reads, appends and conflicts.
#[derive(Default)]
pub struct ProbeStore {
    inner: MemoryLogStore,
    gate: Mutex<Option<(Arc<Barrier>, usize)>>,
    hold: Mutex<Option<Arc<Semaphore>>>,
    committed: Arc<Notify>,
    rivals: AtomicUsize,
    transient: AtomicUsize,
    delay: Mutex<Option<std::time::Duration>>,
    doubt: AtomicUsize,
    failing_lookups: AtomicUsize,
    reads: AtomicUsize,
    appends: AtomicUsize,
    conflicts: AtomicUsize,
}

impl ProbeStore {
    /// A new probe over an empty memory store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Gate the next `n` stream reads on one barrier.
    pub fn gate_loads(&self, n: usize) {
        *self.gate.lock().unwrap() = Some((Arc::new(Barrier::new(n)), n));
    }

    /// Hold the next append's result (after it committed) until the semaphore gets a permit.
    pub fn hold_next_append(&self) -> Arc<Semaphore> {
        let release = Arc::new(Semaphore::new(0));
        *self.hold.lock().unwrap() = Some(release.clone());
        release
    }

    /// Notified when a held append has committed.
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// Precede each of the next `n` appends with a rival append.
    pub fn inject_rivals(&self, n: usize) {
        self.rivals.store(n, Ordering::SeqCst);
    }

    /// Fail each of the next `n` appends with a transient error, writing nothing.
    pub fn fail_appends_transiently(&self, n: usize) {
        self.transient.store(n, Ordering::SeqCst);
    }

    /// Make every append sleep for `delay` before it writes.
    pub fn delay_appends(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = Some(delay);
    }

    /// Store the next append, then answer it [`Error::OutcomeUnknown`].
    pub fn doubt_next_append(&self) {
        self.doubt.store(1, Ordering::SeqCst);
    }

    /// Fail the next `n` command lookups with a store error.
    pub fn fail_next_lookups(&self, n: usize) {
        self.failing_lookups.store(n, Ordering::SeqCst);
    }

    /// Stream reads so far (one per load attempt, plus replays and `Domain::load`).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Appends asked for by the domain so far (rivals not counted).
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    /// Appends that failed with a conflict so far.
    pub fn conflicts(&self) -> usize {
        self.conflicts.load(Ordering::SeqCst)
    }

    fn take_one(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn take_gate(&self) -> Option<Arc<Barrier>> {
        let mut gate = self.gate.lock().unwrap();
        let (barrier, left) = gate.as_mut()?;
        let barrier = barrier.clone();
        *left -= 1;
        if *left == 0 {
            *gate = None;
        }
        Some(barrier)
    }
}

impl LogStore for ProbeStore {
    fn backend(&self) -> &'static str {
        "probe"
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, fluvius_core::Result<Vec<Event>>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if Self::take_one(&self.transient) {
            return Box::pin(async {
                Err(Error::Transient {
                    backend: "probe".into(),
                    message: "deadlock detected (injected)".into(),
                    source: None,
                })
            });
        }
        let rival = Self::take_one(&self.rivals).then(|| {
            let mut rival = request.clone();
            let rival_command = Uuid::now_v7();
            for e in &mut rival.events {
                e.id = Uuid::now_v7();
                e.command_id = rival_command;
            }
            if let Some(c) = &mut rival.command {
                c.id = rival_command;
            }
            rival
        });
        let hold = self.hold.lock().unwrap().take();
        let delay = *self.delay.lock().unwrap();
        let doubt = Self::take_one(&self.doubt);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(rival) = rival {
                self.inner.append(rival).await.expect("the rival append succeeds");
            }
            let result = self.inner.append(request).await;
            if let Some(release) = hold {
                self.committed.notify_one();
                release.acquire().await.expect("semaphore open").forget();
            }
            if matches!(result, Err(Error::Conflict { .. })) {
                self.conflicts.fetch_add(1, Ordering::SeqCst);
            }
            if doubt && result.is_ok() {
                return Err(Error::OutcomeUnknown {
                    command_id: None,
                    message: "the connection broke after the append was sent".into(),
                    source: None,
                });
            }
            result
        })
    }

    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, fluvius_core::Result<Vec<Event>>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let gate = self.take_gate();
        Box::pin(async move {
            let events = self.inner.read_stream(resource, aggregate_id, query).await?;
            if let Some(barrier) = gate {
                barrier.wait().await;
            }
            Ok(events)
        })
    }

    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, fluvius_core::Result<Option<CommandRecord>>> {
        if Self::take_one(&self.failing_lookups) {
            return Box::pin(async { Err(Error::store("probe", "the database is unreachable", None)) });
        }
        self.inner.get_command(command_id)
    }

    fluvius_core::forward_log_store!(|s| &s.inner => read_all, read_log, load_snapshot, head_position);

    /// A store that does not run transactional handlers: a domain that has some refuses to
    /// build on it (`tests/transactional.rs`).
    fn runs_transactional_handlers(&self) -> bool {
        false
    }

    /// No checkpoints of its own: each domain over a probe store keeps its handlers'
    /// checkpoints in memory.
    fn checkpoints(&self) -> Option<&dyn fluvius_core::CheckpointStore> {
        None
    }
}

/// A domain (test aggregates, no handlers) over a probe store, with a retry policy.
///
/// Tests that line loads up with [`ProbeStore::gate_loads`] create their fixtures through a
/// second domain over the same store (another app instance), so that the domain under test
/// has nothing cached and really loads from the store.
pub async fn probe_domain(store: &Arc<ProbeStore>, retry: fluvius_core::RetryPolicy) -> Domain {
    // No aggregate cache: every attempt loads from the store, so a rival injected before an
    // append is a race the attempt really lost (a conflict on a *cached* state is treated as
    // a stale entry and reloaded once for free, which would blur the attempt counts). No
    // per-aggregate turns: the commands these tests line up on one aggregate must race, as
    // commands from different processes do.
    builder()
        .logstore_arc(store.clone())
        .retry(retry)
        .aggregate_cache(0)
        .aggregate_turns(false)
        .build()
        .await
        .expect("domain builds")
}
