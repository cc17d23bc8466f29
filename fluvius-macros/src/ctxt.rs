//! Collects every error of one macro invocation, so the user sees them all at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

/// The error sink of one macro invocation. Like serde's `Ctxt`, it must be consumed with
/// [`Ctxt::check`]: dropping it unchecked is a bug in the macro and panics.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
    checked: bool,
}

impl Ctxt {
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push(&mut self, err: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(err),
            None => self.errors = Some(err),
        }
    }

    /// `Ok(())` if nothing was reported, else every error as one `compile_error!` stream.
    pub(crate) fn check(mut self) -> Result<(), TokenStream> {
        self.checked = true;
        match self.errors.take() {
            None => Ok(()),
            Some(err) => Err(err.to_compile_error()),
        }
    }

    /// The messages reported so far, in order (consumes the context like [`Ctxt::check`]).
    #[cfg(test)]
    pub(crate) fn messages(mut self) -> Vec<String> {
        self.checked = true;
        self.errors
            .take()
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect()
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !self.checked && !std::thread::panicking() {
            panic!("macro bug: Ctxt dropped without calling check()");
        }
    }
}
