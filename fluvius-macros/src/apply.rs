//! `#[apply("key")]`: the fold of one event key.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::ParseStream;
use syn::{FnArg, Ident, ImplItemFn, LitStr, ReturnType, Type};

use crate::attr::check_name;
use crate::ctxt::Ctxt;

/// A method marked `#[apply]`, checked.
pub(crate) struct ApplyMethod {
    pub(crate) method: Ident,
    pub(crate) key: LitStr,
    /// The payload type when the method is fully valid: its fold arm can be generated.
    pub(crate) payload_ty: Option<Type>,
}

const USAGE: &str = "expected the event key as a string literal: `#[apply(\"user-created\")]`";

/// The key of `#[apply("key")]`, or the error spanned on what stands in its place.
fn parse_key(attr: &syn::Attribute) -> syn::Result<LitStr> {
    let list = match &attr.meta {
        syn::Meta::List(list) => list,
        syn::Meta::Path(path) => return Err(syn::Error::new_spanned(path, USAGE)),
        syn::Meta::NameValue(nv) => return Err(syn::Error::new_spanned(&nv.value, USAGE)),
    };
    if list.tokens.is_empty() {
        return Err(syn::Error::new(list.delimiter.span().join(), USAGE));
    }
    list.parse_args_with(|input: ParseStream<'_>| {
        if !input.peek(LitStr) {
            let rest: TokenStream = input.parse()?;
            return Err(syn::Error::new_spanned(rest, USAGE));
        }
        let key: LitStr = input.parse()?;
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            return Err(syn::Error::new_spanned(
                rest,
                "#[apply] takes exactly one event key: one method folds one event",
            ));
        }
        check_name("the event key", &key)?;
        Ok(key)
    })
}

impl ApplyMethod {
    /// Build the model from the method and its attribute, reporting every problem to `cx`.
    /// `None` when the key itself is unusable (the error is reported).
    pub(crate) fn from_method(cx: &mut Ctxt, method: &ImplItemFn, attr: &syn::Attribute) -> Option<Self> {
        let key = parse_key(attr).map_err(|e| cx.push(e)).ok();
        let sig = &method.sig;
        let mut ok = true;
        if let Some(asyncness) = &sig.asyncness {
            cx.error_spanned_by(asyncness, "an #[apply] method must not be async: folding is pure");
            ok = false;
        }
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(&sig.generics, "an #[apply] method cannot be generic");
            ok = false;
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
            Some(FnArg::Receiver(r)) => {
                cx.error_spanned_by(r, "an #[apply] method takes `&mut self`: it evolves the state");
                ok = false;
            }
            _ => {
                cx.error_spanned_by(
                    &sig.ident,
                    "an #[apply] method takes `&mut self` and the event payload",
                );
                ok = false;
            }
        }
        let typed: Vec<_> = sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(pt) => Some(pt),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let payload_ty = match typed.as_slice() {
            [] => {
                cx.push(syn::Error::new(
                    sig.paren_token.span.join(),
                    "an #[apply] method takes the event payload after `&mut self`, e.g. `e: UserCreated`",
                ));
                None
            }
            [pt, extra @ ..] => {
                if !extra.is_empty() {
                    let extra: TokenStream = extra.iter().map(|e| e.to_token_stream()).collect();
                    cx.error_spanned_by(
                        extra,
                        "an #[apply] method takes one argument after `&mut self`: the event payload",
                    );
                    ok = false;
                }
                if let Type::Reference(_) | Type::ImplTrait(_) = &*pt.ty {
                    cx.error_spanned_by(
                        &pt.ty,
                        "an #[apply] method takes the payload by value, as an owned, deserializable type",
                    );
                    ok = false;
                }
                Some((*pt.ty).clone())
            }
        };
        if let ReturnType::Type(_, ty) = &sig.output {
            if !matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()) {
                cx.error_spanned_by(
                    ty,
                    "an #[apply] method returns nothing: folding a recorded event cannot fail",
                );
                ok = false;
            }
        }
        Some(ApplyMethod {
            method: sig.ident.clone(),
            key: key?,
            payload_ty: payload_ty.filter(|_| ok),
        })
    }
}

/// `#[apply]` outside an `#[aggregate]` impl: the error goes on the attribute (the call
/// site), and the method is re-emitted untouched so nothing else fails.
pub(crate) fn misplaced(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let err = syn::Error::new(
        Span::call_site(),
        "#[apply] must be used on a method inside an `#[aggregate]` impl block",
    )
    .to_compile_error();
    quote! { #err #item }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(src: &str) -> (Vec<String>, Option<ApplyMethod>) {
        let method: ImplItemFn = syn::parse_str(src).expect("method parses");
        let mut cx = Ctxt::default();
        let model = ApplyMethod::from_method(&mut cx, &method, &method.attrs[0]);
        (cx.messages(), model)
    }

    #[test]
    fn valid_apply() {
        let (msgs, m) = method(r#"#[apply("user-created")] fn created(&mut self, e: UserCreated) {}"#);
        assert!(msgs.is_empty(), "{msgs:?}");
        let m = m.expect("model");
        assert_eq!(m.key.value(), "user-created");
        assert!(m.payload_ty.is_some());
    }

    #[test]
    fn every_mistake_is_reported() {
        let (msgs, m) = method(r#"#[apply("k")] async fn f(&self, e: &P, x: u8) -> bool { true }"#);
        assert_eq!(msgs.len(), 5, "{msgs:?}");
        let m = m.expect("the key is known, so the cross-checks still see this method");
        assert!(m.payload_ty.is_none());
    }

    #[test]
    fn bad_keys() {
        for src in [
            "#[apply] fn f(&mut self, e: P) {}",
            "#[apply()] fn f(&mut self, e: P) {}",
            "#[apply(KEY)] fn f(&mut self, e: P) {}",
            r#"#[apply("a", "b")] fn f(&mut self, e: P) {}"#,
            r#"#[apply = "a"] fn f(&mut self, e: P) {}"#,
            r#"#[apply("")] fn f(&mut self, e: P) {}"#,
        ] {
            let (msgs, m) = method(src);
            assert_eq!(msgs.len(), 1, "{src}: {msgs:?}");
            assert!(m.is_none(), "{src}");
        }
    }
}
