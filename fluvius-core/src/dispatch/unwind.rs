//! User code's panics caught: a handler's future polled under `catch_unwind`, and a panic's
//! payload turned into text without letting its drop panic escape.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that turns a panic while polling `F` into `Err(payload)`, so that a handler runs
/// in the dispatcher's task (no task spawned per call) and its panic is still caught. After a
/// panic the inner future is dropped (a panic while dropping it is caught too) and never
/// polled again, so nothing observes state the panic left half-updated.
pub(super) struct CatchUnwind<F> {
    inner: Option<F>,
}

impl<F> CatchUnwind<F> {
    pub(super) fn new(inner: F) -> Self {
        Self { inner: Some(inner) }
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(Box::new("polled after completion")));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.inner = None;
                Poll::Ready(Ok(output))
            }
            Err(payload) => {
                let inner = self.inner.take();
                let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(inner)));
                Poll::Ready(Err(payload))
            }
        }
    }
}

/// Run `f`, catching a panic (as when a handler panics while making its future).
pub(super) fn catch_unwind<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
}

/// The text of a panic's payload (a `&str` or a `String`; other payloads are named as such).
/// The payload is dropped here, and a panic while dropping it is caught too.
pub(super) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    // The payload may panic when dropped: do not let that escape either.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
    text
}
