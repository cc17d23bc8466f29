//! `#[event_handler("pattern", name = "…", max_attempts = N, base_backoff_ms = N,
//! max_backoff_ms = N)]`: parse the attribute into a model, check the function, then register
//! it with `inventory`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, GenericParam, Ident, ItemFn, Lit, LitInt, LitStr, ReturnType, Type};

use crate::attr::{once, unknown, Args, CratePath};
use crate::ctxt::Ctxt;
use crate::item::expect_item;

const OPTIONS: &str = "expected `name = \"...\"`, `max_attempts = N`, `base_backoff_ms = N`, \
                       `max_backoff_ms = N` or `crate = \"path\"` after the pattern";

/// The attribute: a pattern, then options in any order.
struct HandlerAttr {
    pattern: Expr,
    /// `name = "stable-name"`.
    name: Option<LitStr>,
    retry: RetryAttr,
    /// `crate = "path"`: where generated code finds `fluvius_core`.
    krate: Option<CratePath>,
}

/// The handler's own retry policy, as far as the attribute gives it (the rest comes from the
/// domain's `DispatchOptions`): `fluvius_core::HandlerRetry`.
#[derive(Default)]
struct RetryAttr {
    /// `max_attempts = N`: 1 to `u32::MAX` attempts in all.
    max_attempts: Option<u32>,
    /// `base_backoff_ms = N`: the pause before the first retry, with its literal.
    base_backoff_ms: Option<(u64, LitInt)>,
    /// `max_backoff_ms = N`: the cap on one pause.
    max_backoff_ms: Option<u64>,
}

impl RetryAttr {
    /// A `fluvius_core::HandlerRetry` expression (a constant: it goes in a static).
    fn expr(&self, krate: &TokenStream) -> TokenStream {
        let mut expr = quote! { #krate::HandlerRetry::new() };
        if let Some(n) = self.max_attempts {
            expr = quote! { #expr.max_attempts(#n) };
        }
        if let Some((ms, _)) = &self.base_backoff_ms {
            expr = quote! { #expr.base_backoff(::core::time::Duration::from_millis(#ms)) };
        }
        if let Some(ms) = self.max_backoff_ms {
            expr = quote! { #expr.max_backoff(::core::time::Duration::from_millis(#ms)) };
        }
        expr
    }
}

const MISSING_PATTERN: &str =
    "expected an event-key pattern: `#[event_handler(\"user-created\")]`, `\"*\"` or `\"user-*\"`";

impl HandlerAttr {
    /// Read the pattern and the options, reporting every mistake to `cx`. `None` when there
    /// is no pattern (reported).
    fn read(cx: &mut Ctxt, args: Args) -> Option<Self> {
        let Some(pattern) = args.positional.into_iter().next() else {
            cx.push(syn::Error::new(Span::call_site(), MISSING_PATTERN));
            return None;
        };
        let mut attr = HandlerAttr {
            pattern,
            name: None,
            retry: RetryAttr::default(),
            krate: None,
        };
        let ms = "a whole number of milliseconds (0 or more)";
        for entry in &args.entries {
            let key = &entry.key;
            match key.to_string().as_str() {
                "name" => {
                    if let Some(lit) = Args::name(cx, entry, "\"welcome-mailer\"") {
                        once(cx, &mut attr.name, key, lit);
                    }
                }
                "max_attempts" => {
                    let what = "from 1 to 4294967295: the attempts in all, the first included (1 = no retry)";
                    if let Some((n, _)) = Args::int::<u32>(cx, entry, 1, what, 5) {
                        once(cx, &mut attr.retry.max_attempts, key, n);
                    }
                }
                "base_backoff_ms" => {
                    if let Some(value) = Args::int::<u64>(cx, entry, 0, ms, 100) {
                        once(cx, &mut attr.retry.base_backoff_ms, key, value);
                    }
                }
                "max_backoff_ms" => {
                    if let Some((n, _)) = Args::int::<u64>(cx, entry, 0, ms, 100) {
                        once(cx, &mut attr.retry.max_backoff_ms, key, n);
                    }
                }
                "crate" => {
                    if let Some(path) = Args::crate_path(cx, entry) {
                        once(cx, &mut attr.krate, key, path);
                    }
                }
                _ => unknown(cx, "event_handler", key, OPTIONS),
            }
        }
        if let (Some((base, lit)), Some(max)) = (&attr.retry.base_backoff_ms, attr.retry.max_backoff_ms) {
            if *base > max {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "`base_backoff_ms` ({base}) is above `max_backoff_ms` ({max}): \
                         every pause would be cut to the cap"
                    ),
                );
            }
        }
        Some(attr)
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
    let func: ItemFn = match expect_item(
        &item,
        |i| match i {
            syn::Item::Fn(f) => Some(f),
            _ => None,
        },
        "#[event_handler] must be placed on an `async fn`",
    ) {
        Ok(f) => f,
        Err(tokens) => return tokens,
    };
    let mut cx = Ctxt::default();
    let attr =
        Args::parse_tokens(&mut cx, attr, 1, OPTIONS).and_then(|args| HandlerAttr::read(&mut cx, args));
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
    // The pattern comes from the attribute: with it, the attribute parsed.
    let (Some(pattern), Some(attr)) = (pattern, attr) else {
        return quote! { #func };
    };

    let ident = &sig.ident;
    let krate = attr.krate.clone().unwrap_or_default().tokens();
    let retry = attr.retry.expr(&krate);
    let name = match attr.name {
        Some(lit) => quote! { #lit },
        None => {
            let fn_name = ident.to_string();
            quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) }
        }
    };
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
                    retry: #retry,
                    handler: __fluvius_handler_shim,
                }
            }
        };
    }
}
