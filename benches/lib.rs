//! The workload shared by the benchmarks: a small user aggregate with create and rename, the
//! same for Fluvius, the serialize-and-push baseline and the peer libraries.

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The benchmark aggregate.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct BenchUser {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Created yet?
    pub active: bool,
    /// Renames so far.
    pub renames: u32,
}

/// Payload of `user-created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// Payload of `user-renamed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRenamed {
    /// New name.
    pub name: String,
}

#[aggregate(resource = "user")]
impl BenchUser {
    /// Create.
    #[action(evt_key = "user-created")]
    fn create(&self, name: String, email: String) -> Result<UserCreated, DomainError> {
        if self.active {
            return Err(DomainError::rejected("exists"));
        }
        Ok(UserCreated { name, email })
    }

    /// Rename.
    #[action(evt_key = "user-renamed")]
    fn rename(&self, name: String) -> Result<UserRenamed, DomainError> {
        if !self.active {
            return Err(DomainError::rejected("no such user"));
        }
        Ok(UserRenamed { name })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
        self.email = e.email;
        self.active = true;
    }

    #[apply("user-renamed")]
    fn renamed(&mut self, e: UserRenamed) {
        self.name = e.name;
        self.renames += 1;
    }
}

/// A domain over `store` with only the benchmark aggregate and no handlers.
pub async fn domain(store: impl LogStore) -> Domain {
    Domain::builder()
        .aggregate::<BenchUser>()
        .logstore(store)
        .without_global_handlers()
        .build()
        .await
        .expect("benchmark domain")
}

/// `BenchUser::create` on a new aggregate whose id the domain assigns (no read before the
/// decision: nothing can be stored under a new id).
pub fn create_new() -> Command {
    let mut command = create_fresh();
    command.aggregate_id = None;
    command
}

/// `BenchUser::create` on a fresh aggregate with an id chosen by the caller, expected to be
/// new (`expect_version(0)`): decided on the default state without a read, like
/// [`create_new`].
pub fn create_expecting_new() -> Command {
    create_fresh().expect_version(0)
}

/// `BenchUser::create` on a fresh aggregate with an id chosen by the caller (the domain reads
/// the empty stream before deciding, as for any aggregate it has not cached).
pub fn create_fresh() -> Command {
    BenchUser::create_command(
        AggregateId::new(),
        "bench user".into(),
        "bench@example.org".into(),
    )
}
