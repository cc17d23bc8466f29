//! `#[event_handler("pattern")]`: register an async fn with `inventory`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, GenericParam, Ident, ItemFn, Lit, LitStr, ReturnType, Token, Type};

use crate::item::keyword_span;

use crate::ctxt::Ctxt;

mod kw {
    syn::custom_keyword!(name);
}

/// `"pattern"` optionally followed by `, name = "stable-name"`.
struct HandlerAttr {
    pattern: Expr,
    name: Option<LitStr>,
}

impl Parse for HandlerAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "expected an event-key pattern: `#[event_handler(\"user-created\")]`, `\"*\"` or `\"user-*\"`",
            ));
        }
        let pattern: Expr = input.parse()?;
        let mut name = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if input.peek(kw::name) {
                let key: kw::name = input.parse()?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if name.is_some() {
                    return Err(syn::Error::new_spanned(key, "`name` is specified more than once"));
                }
                if lit.value().is_empty() {
                    return Err(syn::Error::new_spanned(&lit, "`name` must not be empty"));
                }
                name = Some(lit);
            } else if input.peek(Ident::peek_any) {
                let key: Ident = input.call(Ident::parse_any)?;
                return Err(syn::Error::new_spanned(
                    &key,
                    format!(
                        "unknown #[event_handler] argument `{key}`: expected `name = \"...\"` after the pattern"
                    ),
                ));
            } else {
                return Err(input.error("expected `name = \"...\"` after the pattern"));
            }
        }
        Ok(HandlerAttr { pattern, name })
    }
}

/// Why a pattern is not valid, if it is not (the same rules as `fluvius_core::Pattern::parse`).
fn pattern_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return Some("the pattern must not be empty");
    }
    match p.find('*') {
        Some(i) if i != p.len() - 1 => Some("`*` is only allowed at the end of a pattern, as in \"user-*\""),
        _ => None,
    }
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(f)) => f,
        Ok(other) => {
            let err = syn::Error::new(
                keyword_span(&other),
                "#[event_handler] must be placed on an `async fn`",
            )
            .to_compile_error();
            return quote! { #err #item };
        }
        Err(e) => {
            let err = e.to_compile_error();
            return quote! { #err #item };
        }
    };
    let mut cx = Ctxt::default();
    let attr = match syn::parse2::<HandlerAttr>(attr) {
        Ok(a) => Some(a),
        Err(e) => {
            cx.push(e);
            None
        }
    };
    let pattern = attr.as_ref().and_then(|a| match &a.pattern {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => {
            if let Some(problem) = pattern_problem(&s.value()) {
                cx.error_spanned_by(s, problem);
            }
            Some(s.clone())
        }
        other => {
            cx.error_spanned_by(
                other,
                "the handler pattern must be a string literal, e.g. \"user-created\", \"*\" or \"user-*\"",
            );
            None
        }
    });
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "#[event_handler] requires an `async fn`");
    }
    if sig
        .generics
        .params
        .iter()
        .any(|p| !matches!(p, GenericParam::Lifetime(_)))
    {
        cx.error_spanned_by(&sig.generics, "an event handler cannot be generic");
    }
    let mut event_arg = None;
    match (sig.inputs.len(), sig.inputs.first()) {
        (_, Some(FnArg::Receiver(r))) => cx.error_spanned_by(
            r,
            "an event handler is a free `async fn(event: &Event)`, not a method",
        ),
        (1, Some(FnArg::Typed(pt))) => match &*pt.ty {
            Type::Reference(r) if r.mutability.is_none() => event_arg = Some(pt),
            _ => cx.error_spanned_by(
                &pt.ty,
                "an event handler takes the event by shared reference: `event: &Event`",
            ),
        },
        (0, _) => cx.push(syn::Error::new(
            sig.paren_token.span.join(),
            "an event handler takes exactly one argument: `event: &Event`",
        )),
        _ => {
            let extra: TokenStream = sig.inputs.iter().skip(1).map(|a| a.to_token_stream()).collect();
            cx.error_spanned_by(
                extra,
                "an event handler takes exactly one argument: `event: &Event`",
            );
        }
    }
    if let ReturnType::Default = sig.output {
        cx.error_spanned_by(
            &sig.ident,
            "an event handler must return `Result<(), HandlerError>`",
        );
    }
    if let Err(errors) = cx.check() {
        return quote! { #func #errors };
    }
    let Some(pattern) = pattern else {
        return quote! { #func };
    };

    let ident = &sig.ident;
    let name = match attr.and_then(|a| a.name) {
        Some(lit) => quote! { #lit },
        None => {
            let fn_name = ident.to_string();
            quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) }
        }
    };
    let krate = quote!(::fluvius_core);
    let output_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    // A wrong argument type is reported on it, a wrong output type on the output.
    // `&*__event` spelled with the first and last token spans of the declared type, so that a
    // mismatch underlines the whole type.
    let event = match event_arg {
        Some(pt) => {
            let mut tokens = pt.ty.to_token_stream().into_iter();
            let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
            let last = tokens.last().map_or(first, |t| t.span());
            let amp = quote_spanned!(first=> &*);
            let ident = Ident::new("__event", last);
            quote! { #amp #ident }
        }
        None => quote! { __event },
    };
    let boxed = quote_spanned! {output_span=> ::std::boxed::Box::pin(#ident(#event)) };
    quote! {
        #func

        const _: () = {
            fn __fluvius_handler_shim<'a>(
                __event: &'a #krate::Event,
            ) -> #krate::BoxFuture<'a, ::core::result::Result<(), #krate::HandlerError>> {
                #boxed
            }
            #krate::__private::inventory::submit! {
                #krate::HandlerRegistration {
                    name: #name,
                    pattern: #pattern,
                    module: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                    handler: __fluvius_handler_shim,
                }
            }
        };
    }
}
