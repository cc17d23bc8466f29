//! `#[upcast("key", from = N)]`: register a payload upcaster with `inventory`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Expr, FnArg, ItemFn, Lit, LitInt, ReturnType};

use crate::attr::{once, unknown, Args, CratePath};
use crate::ctxt::Ctxt;
use crate::item::expect_item;

const USAGE: &str = "expected `#[upcast(\"event-key\", from = N)]` (and optionally `crate = \"path\"`)";

/// `"key", from = N`, as written (checked after parsing, so every mistake is reported).
struct UpcastAttr {
    key: Expr,
    from: Option<LitInt>,
    /// `crate = "path"`: where generated code finds `fluvius_core`.
    krate: Option<CratePath>,
    /// Some argument was reported already: what it stood for is not missing as well.
    rejected: bool,
}

impl UpcastAttr {
    /// Read the key and the options, reporting every mistake to `cx`. `None` when there is no
    /// key (reported).
    fn read(cx: &mut Ctxt, args: Args) -> Option<Self> {
        let Some(key) = args.positional.into_iter().next() else {
            cx.push(syn::Error::new(Span::call_site(), USAGE));
            return None;
        };
        let mut attr = UpcastAttr {
            key,
            from: None,
            krate: None,
            rejected: false,
        };
        for entry in &args.entries {
            let name = &entry.key;
            let accepted = match name.to_string().as_str() {
                "from" => match &entry.value {
                    Some(Expr::Lit(syn::ExprLit {
                        lit: Lit::Int(int), ..
                    })) => once(cx, &mut attr.from, name, int.clone()),
                    Some(other) => {
                        cx.error_spanned_by(
                            other,
                            "`from` must be an integer literal: the schema version this upcaster lifts from",
                        );
                        false
                    }
                    None => {
                        cx.error_spanned_by(name, "`from` needs a value: `from = 1`");
                        false
                    }
                },
                "crate" => {
                    Args::crate_path(cx, entry).is_some_and(|path| once(cx, &mut attr.krate, name, path))
                }
                _ => {
                    unknown(cx, "upcast", name, USAGE);
                    false
                }
            };
            attr.rejected |= !accepted;
        }
        Some(attr)
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
    let attr = Args::parse_tokens(&mut cx, attr, 1, USAGE).and_then(|args| UpcastAttr::read(&mut cx, args));
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
        None if a.rejected => None,
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
