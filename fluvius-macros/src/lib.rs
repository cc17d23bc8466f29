//! Procedural macros for [`fluvius-core`](https://docs.rs/fluvius-core). Use them through
//! `fluvius_core::prelude::*` (feature `macros`, on by default); each entry point hands off to
//! a module of its own.

mod action;
mod aggregate;
mod apply;
mod attr;
mod case;
mod ctxt;
mod event_handler;
mod item;
mod upcast;

use proc_macro::TokenStream;

/// Turn an `impl` block into an event-sourced aggregate: implements `fluvius_core::Aggregate`,
/// and generates typed command constructors (`<method>_command`) and key constants.
///
/// `#[aggregate(resource = "user", snapshot_every = 100, state_version = 2)]`: the resource
/// defaults to the type name in kebab case; `snapshot_every` (a positive integer) sets
/// `Aggregate::SNAPSHOT_EVERY` (default: no snapshots); `state_version` (1 or more) sets
/// `Aggregate::STATE_VERSION` (default 1; bump it when the state's shape changes).
///
/// `crate = "my_app::fluvius"` (here and on `#[event_handler]` and `#[upcast]`) names the path
/// generated code reaches `fluvius_core` by, for a crate that re-exports Fluvius to its users
/// (default `::fluvius_core`).
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(attr.into(), item.into()).into()
}

/// Mark a method of an `#[aggregate]` impl as an action:
/// `#[action(evt_key = "user-created", resources = ["user"], version = 1, name = "create-user")]`.
#[proc_macro_attribute]
pub fn action(attr: TokenStream, item: TokenStream) -> TokenStream {
    action::misplaced(attr.into(), item.into()).into()
}

/// Mark a method of an `#[aggregate]` impl as the fold of one event key: `#[apply("user-created")]`.
///
/// The method takes `&mut self` and the event's payload by value, and that payload type must be
/// the one the `#[action]` emitting the key returns: another type is a compile error pointing at
/// the parameter (it would otherwise fail on every replay).
#[proc_macro_attribute]
pub fn apply(attr: TokenStream, item: TokenStream) -> TokenStream {
    apply::misplaced(attr.into(), item.into()).into()
}

/// Register an `async fn(&Event) -> Result<(), HandlerError>` as an event handler at link time:
/// `#[event_handler("user-created")]`, `#[event_handler("*")]`, `#[event_handler("user-*", name = "…")]`.
///
/// After the pattern, in any order:
/// - `name = "…"`: the handler's stable name (its checkpoint's name; default
///   `module::path::fn_name`);
/// - `max_attempts = N` (1 or more; 1 = no retry), `base_backoff_ms = N` (the pause before the
///   first retry, doubled with each) and `max_backoff_ms = N` (the cap on one pause): the
///   handler's own retry policy before an event is parked for it,
///   `fluvius_core::HandlerRetry`. Each one left out comes from the domain's
///   `DispatchOptions::retry`; `DispatchOptions::handler_retry` overrides them by name;
/// - `crate = "path"`: where the generated code finds `fluvius_core` (see `#[aggregate]`).
#[proc_macro_attribute]
pub fn event_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    event_handler::expand(attr.into(), item.into()).into()
}

/// Register a `fn(serde_json::Value) -> Result<serde_json::Value, fluvius_core::UpcastError>`
/// that lifts the payload of an event key from schema version `from` to `from + 1`, applied on
/// every read of older events: `#[upcast("user-created", from = 1)]`. Takes `crate = "path"`
/// like `#[aggregate]`.
#[proc_macro_attribute]
pub fn upcast(attr: TokenStream, item: TokenStream) -> TokenStream {
    upcast::expand(attr.into(), item.into()).into()
}
