//! `#[upcast("key", from = N)]`: register a payload upcaster with `inventory`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, FnArg, Ident, ItemFn, Lit, LitInt, ReturnType, Token};

use crate::ctxt::Ctxt;
use crate::item::expect_item;
use crate::lit::CratePath;

mod kw {
    syn::custom_keyword!(from);
}

const USAGE: &str = "expected `#[upcast(\"event-key\", from = N)]` (and optionally `crate = \"path\"`)";

/// `"key", from = N`, as written (checked after parsing, so every mistake is reported).
struct UpcastAttr {
    key: Expr,
    from: Option<LitInt>,
    /// `crate = "path"`: where generated code finds `fluvius_core`.
    krate: Option<CratePath>,
}

impl Parse for UpcastAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(Span::call_site(), USAGE));
        }
        let key: Expr = input.parse()?;
        let mut from = None;
        let mut krate = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if input.peek(kw::from) {
                let token: kw::from = input.parse()?;
                input.parse::<Token![=]>()?;
                let lit: Lit = input.parse()?;
                let Lit::Int(int) = lit else {
                    return Err(syn::Error::new_spanned(
                        lit,
                        "`from` must be an integer literal: the schema version this upcaster lifts from",
                    ));
                };
                if from.replace(int).is_some() {
                    return Err(syn::Error::new_spanned(
                        token,
                        "`from` is specified more than once",
                    ));
                }
            } else if input.peek(Token![crate]) {
                let token: Token![crate] = input.parse()?;
                if krate.replace(CratePath::parse_value(input)?).is_some() {
                    return Err(syn::Error::new_spanned(
                        token,
                        "`crate` is specified more than once",
                    ));
                }
            } else if input.peek(Ident::peek_any) {
                let key: Ident = input.call(Ident::parse_any)?;
                return Err(syn::Error::new_spanned(
                    &key,
                    format!("unknown #[upcast] argument `{key}`: {USAGE}"),
                ));
            } else {
                return Err(input.error(USAGE));
            }
        }
        Ok(UpcastAttr { key, from, krate })
    }
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match expect_item(
        &item,
        |i| match i {
            syn::Item::Fn(f) => Some(f),
            _ => None,
        },
        "#[upcast] must be placed on a `fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`",
    ) {
        Ok(f) => f,
        Err(tokens) => return tokens,
    };
    let mut cx = Ctxt::default();
    let attr = cx.parse::<UpcastAttr>(attr);
    let key = attr.as_ref().and_then(|a| match &a.key {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => {
            if s.value().is_empty() {
                cx.error_spanned_by(s, "the event key must not be empty");
            }
            Some(s.clone())
        }
        other => {
            cx.error_spanned_by(
                other,
                "the event key must be a string literal, e.g. #[upcast(\"user-created\", from = 1)]",
            );
            None
        }
    });
    let from = attr.as_ref().and_then(|a| match &a.from {
        None => {
            cx.push(syn::Error::new(
                Span::call_site(),
                "missing `from = N`: the schema version this upcaster lifts from (to N + 1)",
            ));
            None
        }
        Some(lit) => match lit.base10_parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                cx.error_spanned_by(
                    lit,
                    "`from` must be a schema version from 1 to 4294967294 (versions start at 1)",
                );
                None
            }
        },
    });
    if from == Some(u32::MAX) {
        if let Some(lit) = attr.as_ref().and_then(|a| a.from.as_ref()) {
            cx.error_spanned_by(lit, "`from` must be below u32::MAX: it lifts to `from + 1`");
        }
    }
    let sig = &func.sig;
    if let Some(token) = sig.asyncness {
        cx.error_spanned_by(token, "an upcaster is a plain `fn`, not an `async fn`");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, "an upcaster cannot be generic");
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        cx.error_spanned_by(
            r,
            "an upcaster is a free `fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`, not a method",
        );
    }
    if let ReturnType::Default = sig.output {
        cx.error_spanned_by(
            &sig.ident,
            "an upcaster must return `Result<serde_json::Value, UpcastError>`",
        );
    }
    if let Err(errors) = cx.check() {
        return quote! { #func #errors };
    }
    let (Some(key), Some(from)) = (key, from) else {
        return quote! { #func };
    };

    let ident = &sig.ident;
    let krate = attr
        .as_ref()
        .and_then(|a| a.krate.clone())
        .unwrap_or_default()
        .tokens();
    let fn_name = ident.to_string();
    // The coercion to `UpcastFn` checks the signature; a mismatch is reported on the name.
    let checked = quote_spanned! {ident.span()=> #ident };
    quote! {
        #func

        const _: () = {
            const __FLUVIUS_UPCAST: #krate::UpcastFn = #checked;
            #krate::__private::inventory::submit! {
                #krate::UpcasterRegistration {
                    key: #key,
                    from: #from,
                    origin: ::core::concat!(
                        "#[upcast] ", ::core::module_path!(), "::", #fn_name,
                        " (", ::core::file!(), ":", ::core::line!(), ")"
                    ),
                    upcast: __FLUVIUS_UPCAST,
                }
            }
        };
    }
}
