//! The future `Domain::process_command` returns: the command's pipeline, polled inside the
//! command's span, with the outcome recorded on the span when it completes.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tracing::Span;

use crate::error::Result;
use crate::response::Response;

pin_project! {
    /// Polls `inner` inside `span`; on completion records the new version (or logs the error)
    /// on the span.
    pub(crate) struct Traced<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F> Traced<F> {
    pub(crate) fn new(inner: F, span: Span) -> Self {
        Self { inner, span }
    }
}

impl<F: Future<Output = Result<Response>>> Future for Traced<F> {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        match &result {
            Ok(response) => {
                this.span.record("version", response.version);
            }
            Err(e) => tracing::debug!(code = e.code(), error = %e, "command failed"),
        }
        Poll::Ready(result)
    }
}
