//! The boxed future type used by object-safe async traits.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future: the return type of [`LogStore`](crate::LogStore) methods and of
/// event handlers.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
