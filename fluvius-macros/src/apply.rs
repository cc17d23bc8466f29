//! `#[apply("key")]`: the fold of one event key.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{FnArg, Ident, ImplItemFn, LitStr, Type};

use crate::ctxt::Ctxt;

/// A method marked `#[apply]`, checked.
pub(crate) struct ApplyMethod {
    pub(crate) method: Ident,
    pub(crate) key: LitStr,
    pub(crate) payload_ty: Type,
}

impl ApplyMethod {
    pub(crate) fn from_method(cx: &mut Ctxt, method: &ImplItemFn, attr: &syn::Attribute) -> Option<Self> {
        let key = match attr.parse_args::<LitStr>() {
            Ok(k) if !k.value().is_empty() => k,
            Ok(k) => {
                cx.error_spanned_by(&k, "the event key must not be empty");
                return None;
            }
            Err(_) => {
                cx.error_spanned_by(attr, "expected `#[apply(\"event-key\")]` with a string literal");
                return None;
            }
        };
        let sig = &method.sig;
        let mut ok = true;
        if sig.asyncness.is_some() {
            cx.error_spanned_by(
                sig.asyncness,
                "an #[apply] method must not be async: folding is pure",
            );
            ok = false;
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
            _ => {
                cx.error_spanned_by(
                    &sig.ident,
                    "an #[apply] method takes `&mut self` and the event payload",
                );
                ok = false;
            }
        }
        let payload_ty = match (sig.inputs.len(), sig.inputs.iter().nth(1)) {
            (2, Some(FnArg::Typed(pt))) => Some((*pt.ty).clone()),
            _ => {
                cx.error_spanned_by(
                    &sig.inputs,
                    "an #[apply] method takes exactly one argument: the event payload",
                );
                None
            }
        };
        if !ok {
            return None;
        }
        Some(ApplyMethod {
            method: sig.ident.clone(),
            key,
            payload_ty: payload_ty?,
        })
    }
}

/// `#[apply]` outside an `#[aggregate]` impl.
pub(crate) fn misplaced(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let err = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[apply] must be used on a method inside an `#[aggregate]` impl block",
    )
    .to_compile_error();
    quote! { #err #item }
}
