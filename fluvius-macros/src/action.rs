//! `#[action(...)]`: the attribute model and the method model.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{FnArg, Ident, ImplItemFn, LitInt, LitStr, Pat, ReturnType, Token, Type};

use crate::case::kebab;
use crate::ctxt::Ctxt;

mod kw {
    syn::custom_keyword!(evt_key);
    syn::custom_keyword!(resources);
    syn::custom_keyword!(version);
    syn::custom_keyword!(name);
}

/// The parsed `#[action(...)]` attribute; keeps the literals for spans.
#[derive(Default)]
pub(crate) struct ActionAttr {
    pub(crate) evt_key: Option<LitStr>,
    pub(crate) resources: Option<Vec<LitStr>>,
    pub(crate) version: Option<LitInt>,
    pub(crate) name: Option<LitStr>,
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            key,
            format!("`{key}` is specified more than once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

impl Parse for ActionAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut attr = ActionAttr::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::evt_key) {
                let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new_spanned(&lit, "`evt_key` must not be empty"));
                }
                set_once(&mut attr.evt_key, lit, &key)?;
            } else if lookahead.peek(kw::resources) {
                let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
                input.parse::<Token![=]>()?;
                let content;
                syn::bracketed!(content in input);
                let list: Punctuated<LitStr, Token![,]> = Punctuated::parse_terminated(&content)?;
                set_once(&mut attr.resources, list.into_iter().collect(), &key)?;
            } else if lookahead.peek(kw::version) {
                let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
                input.parse::<Token![=]>()?;
                let lit: LitInt = input.parse()?;
                let v: u32 = lit.base10_parse()?;
                if v == 0 {
                    return Err(syn::Error::new_spanned(&lit, "`version` starts at 1"));
                }
                set_once(&mut attr.version, lit, &key)?;
            } else if lookahead.peek(kw::name) {
                let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new_spanned(&lit, "`name` must not be empty"));
                }
                set_once(&mut attr.name, lit, &key)?;
            } else {
                return Err(lookahead.error());
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(attr)
    }
}

/// One argument of an action: becomes a field of the command's typed payload.
pub(crate) struct ActionArg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// A method marked `#[action]`, checked.
pub(crate) struct ActionMethod {
    pub(crate) method: Ident,
    pub(crate) name: String,
    pub(crate) name_span: proc_macro2::Span,
    pub(crate) evt_key: LitStr,
    pub(crate) resources: Vec<LitStr>,
    pub(crate) version: u32,
    pub(crate) is_async: bool,
    pub(crate) args: Vec<ActionArg>,
    pub(crate) payload_ty: Type,
    pub(crate) error_ty: Option<Type>,
}

impl ActionMethod {
    /// Build the model from the method and its parsed attribute, reporting every problem.
    pub(crate) fn from_method(
        cx: &mut Ctxt,
        method: &ImplItemFn,
        attr_tokens: &syn::Attribute,
    ) -> Option<Self> {
        let attr = match &attr_tokens.meta {
            syn::Meta::Path(_) => ActionAttr::default(),
            _ => match attr_tokens.parse_args::<ActionAttr>() {
                Ok(a) => a,
                Err(e) => {
                    cx.push(e);
                    return None;
                }
            },
        };
        let sig = &method.sig;
        let mut ok = true;
        let evt_key = match attr.evt_key {
            Some(k) => Some(k),
            None => {
                cx.error_spanned_by(
                    attr_tokens,
                    "missing `evt_key`: write `#[action(evt_key = \"...\")]`",
                );
                ok = false;
                None
            }
        };
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(&sig.generics, "an #[action] cannot be generic");
            ok = false;
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            Some(FnArg::Receiver(r)) => {
                cx.error_spanned_by(
                    r,
                    "an #[action] takes `&self`: it decides, and #[apply] methods change state",
                );
                ok = false;
            }
            _ => {
                cx.error_spanned_by(&sig.ident, "an #[action] takes `&self` as its first argument");
                ok = false;
            }
        }
        let mut args = Vec::new();
        for input in sig.inputs.iter().skip(1) {
            let FnArg::Typed(pt) = input else { continue };
            let ident = match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                other => {
                    cx.error_spanned_by(
                        other,
                        "action arguments must be plain names (they become payload fields)",
                    );
                    ok = false;
                    continue;
                }
            };
            match &*pt.ty {
                Type::Reference(_) | Type::ImplTrait(_) => {
                    cx.error_spanned_by(
                        &pt.ty,
                        "action arguments must be owned, deserializable types (they are the command's payload)",
                    );
                    ok = false;
                    continue;
                }
                _ => {}
            }
            args.push(ActionArg {
                ident,
                ty: (*pt.ty).clone(),
            });
        }
        let (payload_ty, error_ty) = match result_types(&sig.output) {
            Some(t) => t,
            None => {
                let msg =
                    "an #[action] must return `Result<Payload, Error>`: the `Ok` value is the event payload";
                match &sig.output {
                    ReturnType::Default => cx.error_spanned_by(&sig.ident, msg),
                    ReturnType::Type(_, ty) => cx.error_spanned_by(ty, msg),
                }
                return None;
            }
        };
        let version = match &attr.version {
            Some(lit) => lit.base10_parse().unwrap_or(1),
            None => 1,
        };
        let (name, name_span) = match &attr.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (kebab(&sig.ident.to_string()), sig.ident.span()),
        };
        if !ok {
            return None;
        }
        Some(ActionMethod {
            method: sig.ident.clone(),
            name,
            name_span,
            evt_key: evt_key?,
            resources: attr.resources.unwrap_or_default(),
            version,
            is_async: sig.asyncness.is_some(),
            args,
            payload_ty,
            error_ty,
        })
    }
}

/// `Result<P, E>` (or any `…::Result<P, …>` alias) → `(P, Some(E))`.
fn result_types(output: &ReturnType) -> Option<(Type, Option<Type>)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(tp) = &**ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let mut types = ab.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let payload = types.next()?;
    Some((payload, types.next()))
}

/// `#[action]` outside an `#[aggregate]` impl.
pub(crate) fn misplaced(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let err = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[action] must be used on a method inside an `#[aggregate]` impl block",
    )
    .to_compile_error();
    quote! { #err #item }
}
