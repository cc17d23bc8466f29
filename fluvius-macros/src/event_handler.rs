//! `#[event_handler("pattern")]`: register an async fn with `inventory`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, Lit, LitStr, ReturnType, Token, Type};

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
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let key: kw::name = input.parse()?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if name.is_some() {
                    return Err(syn::Error::new_spanned(key, "`name` is specified more than once"));
                }
                name = Some(lit);
            } else {
                return Err(lookahead.error());
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
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "#[event_handler] must be placed on an `async fn`",
            )
            .to_compile_error();
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
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, "an event handler cannot be generic");
    }
    match (sig.inputs.len(), sig.inputs.first()) {
        (1, Some(FnArg::Typed(pt))) if matches!(&*pt.ty, Type::Reference(r) if r.mutability.is_none()) => {}
        (1, Some(FnArg::Typed(pt))) => cx.error_spanned_by(
            &pt.ty,
            "an event handler takes the event by shared reference: `event: &Event`",
        ),
        _ => cx.error_spanned_by(
            &sig.inputs,
            "an event handler takes exactly one argument: `event: &Event`",
        ),
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
    let boxed = quote_spanned! {output_span=> ::std::boxed::Box::pin(#ident(__event)) };
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
