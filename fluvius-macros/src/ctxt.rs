//! Collects every error of one macro invocation, so the user sees them all at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
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
    pub(crate) fn check(self) -> Result<(), TokenStream> {
        match self.errors {
            None => Ok(()),
            Some(err) => Err(err.to_compile_error()),
        }
    }
}
