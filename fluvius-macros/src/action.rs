//! `#[action(...)]`: the attribute model and the method model.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::ParseStream;
use syn::{FnArg, Ident, ImplItemFn, LitInt, LitStr, Pat, ReturnType, Type};

use crate::attr::{once, unknown, Args};
use crate::case::kebab;
use crate::ctxt::Ctxt;

/// The parsed `#[action(...)]` attribute; keeps the literals for spans.
#[derive(Default)]
pub(crate) struct ActionAttr {
    pub(crate) evt_key: Option<LitStr>,
    pub(crate) resources: Option<Vec<LitStr>>,
    pub(crate) version: Option<LitInt>,
    pub(crate) name: Option<LitStr>,
    /// A key was rejected (repeated, empty, out of range): reported already, and the action
    /// must not be generated.
    pub(crate) rejected: bool,
}

/// What `#[action(...)]` takes.
const EXPECTED: &str =
    "expected `evt_key = \"...\"`, `resources = [\"...\"]`, `version = N` or `name = \"...\"`";

impl ActionAttr {
    /// Read `key = value, …`. A syntax error stops the parse; every repeated, unknown or
    /// invalid value is reported to `cx` and reading goes on, so every such mistake is shown at
    /// once.
    fn parse(cx: &mut Ctxt, input: ParseStream<'_>) -> syn::Result<Self> {
        let args = Args::parse(input, 0, EXPECTED)?;
        let mut attr = ActionAttr::default();
        for entry in &args.entries {
            let key = &entry.key;
            let accepted = match key.to_string().as_str() {
                "evt_key" => Args::name(cx, entry, "\"user-created\"")
                    .is_some_and(|lit| once(cx, &mut attr.evt_key, key, lit)),
                "resources" => Args::str_list(cx, entry, "a resource name", "[\"user\"]")
                    .is_some_and(|list| once(cx, &mut attr.resources, key, list)),
                "version" => Args::int::<u32>(cx, entry, 1, "1 or more: versions start at 1", 2)
                    .is_some_and(|(_, lit)| once(cx, &mut attr.version, key, lit)),
                "name" => Args::name(cx, entry, "\"create-user\"")
                    .is_some_and(|lit| once(cx, &mut attr.name, key, lit)),
                _ => {
                    unknown(cx, "action", key, EXPECTED);
                    false
                }
            };
            attr.rejected |= !accepted;
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
///
/// A method with a mistake in its signature still yields a model as long as its attribute
/// parsed, so the key constants, the command constructor and the cross-checks stay available
/// and the one mistake does not cascade into errors at every use of the aggregate.
pub(crate) struct ActionMethod {
    pub(crate) method: Ident,
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) evt_key: LitStr,
    pub(crate) resources: Vec<LitStr>,
    pub(crate) version: u32,
    pub(crate) is_async: bool,
    /// The span of the parameter list `(…)`, for errors about the arguments as a whole.
    pub(crate) params_span: Span,
    pub(crate) args: Vec<ActionArg>,
    /// Every argument was accepted: the command constructor can be generated.
    pub(crate) args_complete: bool,
    /// `(payload, error)` types when the method is fully valid: its `execute` arm can be
    /// generated.
    pub(crate) output: Option<(Type, Option<Type>)>,
}

impl ActionMethod {
    /// Build the model from the method and its attribute, reporting every problem to `cx`.
    /// `None` when the attribute itself is unusable (the error is reported).
    pub(crate) fn from_method(
        cx: &mut Ctxt,
        method: &ImplItemFn,
        attr_tokens: &syn::Attribute,
    ) -> Option<Self> {
        let attr = match &attr_tokens.meta {
            syn::Meta::Path(_) => Some(ActionAttr::default()),
            syn::Meta::List(_) => {
                match attr_tokens.parse_args_with(|input: ParseStream<'_>| ActionAttr::parse(cx, input)) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        cx.push(e);
                        None
                    }
                }
            }
            syn::Meta::NameValue(nv) => {
                cx.error_spanned_by(
                    &nv.value,
                    "expected `#[action(evt_key = \"...\")]`, with the keys in parentheses",
                );
                None
            }
        };
        let sig = &method.sig;
        let mut ok = attr.as_ref().is_some_and(|a| !a.rejected);
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
        let mut args_complete = true;
        for input in sig.inputs.iter() {
            let FnArg::Typed(pt) = input else { continue };
            let ident = match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                other => {
                    cx.error_spanned_by(
                        other,
                        "action arguments must be plain names (they become payload fields)",
                    );
                    args_complete = false;
                    continue;
                }
            };
            if let Type::Reference(_) | Type::ImplTrait(_) = &*pt.ty {
                cx.error_spanned_by(
                    &pt.ty,
                    "action arguments must be owned, deserializable types (they are the command's payload)",
                );
                args_complete = false;
                continue;
            }
            args.push(ActionArg {
                ident,
                ty: (*pt.ty).clone(),
            });
        }
        ok &= args_complete;
        let output = result_types(&sig.output);
        if output.is_none() {
            let msg =
                "an #[action] must return `Result<Payload, Error>`: the `Ok` value is the event payload";
            match &sig.output {
                ReturnType::Default => cx.error_spanned_by(&sig.ident, msg),
                ReturnType::Type(_, ty) => cx.error_spanned_by(ty, msg),
            }
            ok = false;
        }
        let attr = attr?;
        let Some(evt_key) = attr.evt_key else {
            if !attr.rejected {
                cx.error_spanned_by(
                    &attr_tokens.meta,
                    "missing `evt_key`: write `#[action(evt_key = \"...\")]`",
                );
            }
            return None;
        };
        let version = match &attr.version {
            Some(lit) => lit.base10_parse().unwrap_or(1),
            None => 1,
        };
        let (name, name_span) = match &attr.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (kebab(&sig.ident.to_string()), sig.ident.span()),
        };
        Some(ActionMethod {
            method: sig.ident.clone(),
            name,
            name_span,
            evt_key,
            resources: attr.resources.unwrap_or_default(),
            version,
            is_async: sig.asyncness.is_some(),
            params_span: sig.paren_token.span.join(),
            args,
            args_complete,
            output: output.filter(|_| ok),
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

/// `#[action]` outside an `#[aggregate]` impl: the error goes on the attribute (the call
/// site), and the method is re-emitted untouched so nothing else fails.
pub(crate) fn misplaced(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let err = syn::Error::new(
        Span::call_site(),
        "#[action] must be used on a method inside an `#[aggregate]` impl block",
    )
    .to_compile_error();
    quote! { #err #item }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(src: &str) -> (Ctxt, Option<ActionMethod>) {
        let method: ImplItemFn = syn::parse_str(src).expect("method parses");
        let mut cx = Ctxt::default();
        let model = ActionMethod::from_method(&mut cx, &method, &method.attrs[0]);
        (cx, model)
    }

    #[test]
    fn valid_action_model() {
        let (cx, m) = method(
            r#"#[action(evt_key = "user-created", name = "create", version = 3, resources = ["user", "admin"])]
               async fn create_user(&self, name: String, age: u8) -> Result<UserCreated, DomainError> { todo!() }"#,
        );
        assert!(cx.messages().is_empty());
        let m = m.expect("model");
        assert_eq!(m.name, "create");
        assert_eq!(m.evt_key.value(), "user-created");
        assert_eq!(m.version, 3);
        assert_eq!(m.resources.len(), 2);
        assert!(m.is_async && m.args_complete && m.output.is_some());
        let args: Vec<_> = m.args.iter().map(|a| a.ident.to_string()).collect();
        assert_eq!(args, ["name", "age"]);
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let (cx, m) = method(
            r#"#[action(evt_key = "", version = 1, version = 0, name = "a", name = "b")]
               fn create_user(&mut self, name: &str) -> UserCreated { todo!() }"#,
        );
        let msgs = cx.messages();
        assert_eq!(msgs.len(), 6, "{msgs:?}");
        // `evt_key` was given (if empty): no "missing `evt_key`" on top.
        assert!(msgs.iter().all(|m| !m.contains("missing")), "{msgs:?}");
        assert!(m.is_none());
    }

    #[test]
    fn invalid_signature_keeps_the_model_for_constants() {
        let (cx, m) = method(
            r#"#[action(evt_key = "user-created")]
               fn create_user(&mut self, name: String) -> Result<UserCreated, DomainError> { todo!() }"#,
        );
        assert_eq!(cx.messages().len(), 1);
        let m = m.expect("model");
        assert!(m.args_complete);
        assert!(m.output.is_none(), "no execute arm for an invalid method");
    }
}
