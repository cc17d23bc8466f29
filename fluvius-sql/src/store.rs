//! The glue every SQL dialect's store shares, written once: the span-wrapped, time-bounded
//! [`LogStore`](fluvius_core::LogStore) impl and the
//! [`CheckpointStore`](fluvius_core::CheckpointStore) forwarders. A dialect's folder provides
//! the inherent `*_impl` methods these call and invokes the macros once each.

/// Implement [`crate::outcome::Bounded`] and [`fluvius_core::LogStore`] for `$store`, a store
/// of the dialect `$backend` (a string literal: the backend name and the middle of every span
/// name, `fluvius.<backend>.<operation>`).
///
/// `$store` has the fields `target: Arc<str>` and `operation_timeout: Duration`, and the
/// inherent methods `append_impl` (bounded by itself, as an append in doubt is resolved
/// within the bound), `read_stream_impl`, `read_all_impl`, `get_command_impl`,
/// `load_snapshot_impl` and `head_position_impl`; it also implements
/// [`fluvius_core::CheckpointStore`] and runs transactional handlers.
///
/// Also gives `$store` the inherent helpers its queries report errors with: `query_error`
/// (a failed query, as [`Error::Query`](crate::Error::Query)) and `data_error` (a row or a
/// value the store cannot convert, as [`Error::Data`](crate::Error::Data)), both naming
/// `target`.
macro_rules! log_store_glue {
    ($store:ident, $backend:literal) => {
        const _: () = {
            use ::fluvius_core::{
                AggregateId, AppendRequest, BoxFuture, CommandRecord, Event, LogEntry, Snapshot,
                SnapshotQuery, StreamQuery,
            };
            use ::tracing::Instrument as _;
            use ::uuid::Uuid;
            use $crate::outcome::Bounded as _;

            type CoreResult<T> = ::fluvius_core::Result<T>;

            impl $store {
                /// The error of the query `operation`, naming the database.
                fn query_error(
                    &self,
                    operation: &'static str,
                ) -> impl FnOnce(::sqlx::Error) -> ::fluvius_core::Error + '_ {
                    move |source| {
                        $crate::Error::Query {
                            target: self.target.to_string(),
                            operation,
                            source,
                        }
                        .into()
                    }
                }

                /// The error of a row or value that does not convert, naming the database.
                fn data_error(&self, message: String) -> ::fluvius_core::Error {
                    $crate::Error::Data {
                        target: self.target.to_string(),
                        message,
                    }
                    .into()
                }
            }

            impl $crate::outcome::Bounded for $store {
                fn target(&self) -> &str {
                    &self.target
                }

                fn operation_timeout(&self) -> ::std::time::Duration {
                    self.operation_timeout
                }
            }

            impl ::fluvius_core::LogStore for $store {
                fn backend(&self) -> &'static str {
                    $backend
                }

                fn append(&self, request: AppendRequest) -> BoxFuture<'_, CoreResult<Vec<Event>>> {
                    let span = ::tracing::debug_span!(
                        concat!("fluvius.", $backend, ".append"),
                        resource = %request.resource,
                        aggregate_id = %request.aggregate_id,
                        expected_version = request.expected_version,
                        events = request.events.len(),
                    );
                    Box::pin(self.append_impl(request).instrument(span))
                }

                fn read_stream<'a>(
                    &'a self,
                    resource: &'a str,
                    aggregate_id: AggregateId,
                    query: StreamQuery,
                ) -> BoxFuture<'a, CoreResult<Vec<Event>>> {
                    let span = ::tracing::debug_span!(
                        concat!("fluvius.", $backend, ".read_stream"),
                        resource,
                        aggregate_id = %aggregate_id
                    );
                    Box::pin(
                        self.bounded(
                            "read stream",
                            self.read_stream_impl(resource, aggregate_id, query),
                        )
                        .instrument(span),
                    )
                }

                fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, CoreResult<Vec<LogEntry>>> {
                    let span =
                        ::tracing::debug_span!(concat!("fluvius.", $backend, ".read_all"), after, limit);
                    Box::pin(
                        self.bounded("read all", self.read_all_impl(after, limit))
                            .instrument(span),
                    )
                }

                fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, CoreResult<Option<CommandRecord>>> {
                    let span = ::tracing::debug_span!(
                        concat!("fluvius.", $backend, ".get_command"),
                        command_id = %command_id
                    );
                    Box::pin(
                        self.bounded("get command", self.get_command_impl(command_id))
                            .instrument(span),
                    )
                }

                fn load_snapshot<'a>(
                    &'a self,
                    resource: &'a str,
                    aggregate_id: AggregateId,
                    query: SnapshotQuery,
                ) -> BoxFuture<'a, CoreResult<Option<Snapshot>>> {
                    let span = ::tracing::debug_span!(
                        concat!("fluvius.", $backend, ".load_snapshot"),
                        resource,
                        aggregate_id = %aggregate_id
                    );
                    Box::pin(
                        self.bounded(
                            "load snapshot",
                            self.load_snapshot_impl(resource, aggregate_id, query),
                        )
                        .instrument(span),
                    )
                }

                fn checkpoints(&self) -> Option<&dyn ::fluvius_core::CheckpointStore> {
                    Some(self)
                }

                fn runs_transactional_handlers(&self) -> bool {
                    true
                }

                fn head_position(&self) -> BoxFuture<'_, CoreResult<u64>> {
                    Box::pin(self.bounded("read head position", self.head_position_impl()))
                }
            }
        };
    };
}

/// Implement [`fluvius_core::CheckpointStore`] for `$store` by forwarding each method to the
/// inherent method of the same name with `_impl` appended (`checkpoint_impl`, `claim_impl`,
/// `advance_impl`, `release_impl`, `reset_impl`, `park_impl`, `parked_impl`, `unpark_impl`).
/// Items in the optional braces are added to the impl as they are (e.g. `append_hints`).
macro_rules! checkpoint_store_glue {
    ($store:ident $(, { $($extra:tt)* })?) => {
        const _: () = {
            use ::fluvius_core::{BoxFuture, DeadLetter};
            use ::std::time::Duration;

            type CoreResult<T> = ::fluvius_core::Result<T>;

            impl ::fluvius_core::CheckpointStore for $store {
                fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<Option<u64>>> {
                    Box::pin(self.checkpoint_impl(name))
                }

                fn claim<'a>(
                    &'a self,
                    name: &'a str,
                    owner: &'a str,
                    start: u64,
                    lease: Duration,
                ) -> BoxFuture<'a, CoreResult<Option<u64>>> {
                    Box::pin(self.claim_impl(name, owner, start, lease))
                }

                fn advance<'a>(
                    &'a self,
                    name: &'a str,
                    owner: &'a str,
                    from: u64,
                    to: u64,
                    lease: Duration,
                ) -> BoxFuture<'a, CoreResult<bool>> {
                    Box::pin(self.advance_impl(name, owner, from, to, lease))
                }

                fn release<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, CoreResult<()>> {
                    Box::pin(self.release_impl(name, owner))
                }

                fn reset<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, CoreResult<()>> {
                    Box::pin(self.reset_impl(name, position))
                }

                fn park(&self, letter: DeadLetter) -> BoxFuture<'_, CoreResult<()>> {
                    Box::pin(self.park_impl(letter))
                }

                fn parked<'a>(&'a self, handler: Option<&'a str>) -> BoxFuture<'a, CoreResult<Vec<DeadLetter>>> {
                    Box::pin(self.parked_impl(handler))
                }

                fn unpark<'a>(&'a self, handler: &'a str, position: u64) -> BoxFuture<'a, CoreResult<bool>> {
                    Box::pin(self.unpark_impl(handler, position))
                }

                $($($extra)*)?
            }
        };
    };
}
