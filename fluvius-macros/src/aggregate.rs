//! `#[aggregate]`: parse the impl block into a model, check it, then generate.

use std::collections::{HashMap, HashSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ImplItem, ItemImpl, LitStr};

use crate::action::ActionMethod;
use crate::apply::ApplyMethod;
use crate::attr::{once, unknown, Args, CratePath};
use crate::case::{kebab, screaming};
use crate::ctxt::Ctxt;
use crate::item::expect_item;

/// `#[aggregate(resource = "user", snapshot_every = 100, state_version = 2)]`.
#[derive(Default)]
struct AggregateAttr {
    resource: Option<LitStr>,
    /// A positive integer.
    snapshot_every: Option<u64>,
    /// An integer from 1 to `u32::MAX`.
    state_version: Option<u32>,
    /// `crate = "path"`: where generated code finds `fluvius_core`.
    krate: Option<CratePath>,
}

const EXPECTED_KEYS: &str =
    "expected `resource = \"...\"`, `snapshot_every = N`, `state_version = N` or `crate = \"path\"`";

impl AggregateAttr {
    /// Read the arguments, reporting every mistake to `cx` (a rejected value is left out).
    fn read(cx: &mut Ctxt, args: Args) -> Self {
        let mut attr = AggregateAttr::default();
        for entry in &args.entries {
            let key = &entry.key;
            match key.to_string().as_str() {
                "resource" => {
                    if let Some(lit) = Args::name(cx, entry, "\"user\"") {
                        once(cx, &mut attr.resource, key, lit);
                    }
                }
                "snapshot_every" => {
                    let what = "a positive number of events (leave it out for no snapshots)";
                    if let Some((n, _)) = Args::int::<u64>(cx, entry, 1, what, 100) {
                        once(cx, &mut attr.snapshot_every, key, n);
                    }
                }
                "state_version" => {
                    let what = "a version from 1 to 4294967295 (a u32)";
                    if let Some((n, _)) = Args::int::<u32>(cx, entry, 1, what, 2) {
                        once(cx, &mut attr.state_version, key, n);
                    }
                }
                "crate" => {
                    if let Some(path) = Args::crate_path(cx, entry) {
                        once(cx, &mut attr.krate, key, path);
                    }
                }
                _ => unknown(
                    cx,
                    "aggregate",
                    key,
                    &format!(
                        "{EXPECTED_KEYS} (`evt_key`, `resources`, `version` and `name` go on each #[action])"
                    ),
                ),
            }
        }
        attr
    }
}

/// The checked model of one aggregate.
///
/// Methods with mistakes stay in the model as far as they could be understood (see
/// [`ActionMethod`]), so that one mistake gives one message rather than a cascade of errors
/// wherever the aggregate is used.
struct Model {
    self_ty: syn::Type,
    krate: CratePath,
    resource: String,
    snapshot_every: Option<u64>,
    state_version: Option<u32>,
    actions: Vec<ActionMethod>,
    applies: Vec<ApplyMethod>,
    /// Some `#[action]` attribute could not be read: its event key is unknown.
    lost_action_key: bool,
    /// Some `#[apply]` attribute could not be read: its event key is unknown.
    lost_apply_key: bool,
}

fn is_attr(attr: &Attribute, name: &str) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == name)
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut item: ItemImpl = match expect_item(
        &item,
        |i| match i {
            syn::Item::Impl(i) => Some(i),
            _ => None,
        },
        "#[aggregate] must be placed on an `impl Type { ... }` block",
    ) {
        Ok(i) => i,
        Err(tokens) => return tokens,
    };
    let mut cx = Ctxt::default();
    let attr = match Args::parse_tokens(&mut cx, attr, 0, EXPECTED_KEYS) {
        Some(args) => AggregateAttr::read(&mut cx, args),
        None => AggregateAttr::default(),
    };
    // Strips our attributes from `item`, which is re-emitted whatever happens.
    let model = parse_model(&mut cx, &mut item, attr);
    let generated = model.map(|model| {
        check(&mut cx, &model);
        generate(&model)
    });
    let errors = cx.check().err();
    quote! { #item #generated #errors }
}

fn parse_model(cx: &mut Ctxt, item: &mut ItemImpl, attr: AggregateAttr) -> Option<Model> {
    let mut ok = true;
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "#[aggregate] goes on an inherent impl (`impl Type { ... }`), not a trait impl",
        );
        ok = false;
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(&item.generics, "generic aggregates are not supported");
        ok = false;
    }
    let resource = match &attr.resource {
        Some(lit) => lit.value(),
        None => match &*item.self_ty {
            syn::Type::Path(tp) => match tp.path.segments.last() {
                Some(seg) => kebab(&seg.ident.to_string()),
                None => String::new(),
            },
            _ => String::new(),
        },
    };
    let mut actions = Vec::new();
    let mut applies = Vec::new();
    let mut lost_action_key = false;
    let mut lost_apply_key = false;
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else { continue };
        let mut action_attr = None;
        let mut apply_attr = None;
        let mut kept = Vec::with_capacity(method.attrs.len());
        for a in method.attrs.drain(..) {
            if is_attr(&a, "action") {
                if action_attr.is_some() {
                    cx.error_spanned_by(&a, "#[action] is specified more than once on this method");
                    continue;
                }
                action_attr = Some(a);
            } else if is_attr(&a, "apply") {
                if apply_attr.is_some() {
                    cx.error_spanned_by(&a, "#[apply] is specified more than once on this method");
                    continue;
                }
                apply_attr = Some(a);
            } else {
                kept.push(a);
            }
        }
        method.attrs = kept;
        match (&action_attr, &apply_attr) {
            (Some(a), Some(_)) => {
                cx.error_spanned_by(
                    a,
                    "a method is either an #[action] (decide) or an #[apply] (evolve), not both",
                );
                lost_action_key = true;
                lost_apply_key = true;
            }
            (Some(a), None) => match ActionMethod::from_method(cx, method, a) {
                Some(m) => actions.push(m),
                None => lost_action_key = true,
            },
            (None, Some(a)) => match ApplyMethod::from_method(cx, method, a) {
                Some(m) => applies.push(m),
                None => lost_apply_key = true,
            },
            (None, None) => {}
        }
    }
    if resource.is_empty() {
        cx.error_spanned_by(
            &item.self_ty,
            "cannot derive a resource name: write `#[aggregate(resource = \"...\")]`",
        );
        ok = false;
    }
    ok.then(|| Model {
        self_ty: (*item.self_ty).clone(),
        krate: attr.krate.clone().unwrap_or_default(),
        resource,
        snapshot_every: attr.snapshot_every,
        state_version: attr.state_version,
        actions,
        applies,
        lost_action_key,
        lost_apply_key,
    })
}

/// Cross-method checks: unique names, keys and constants; every emitted key folded, every
/// fold emitted. A check that depends on a key some broken attribute hid is skipped, so it
/// cannot report a follow-on error.
fn check(cx: &mut Ctxt, model: &Model) {
    let mut names: HashMap<&str, &ActionMethod> = HashMap::new();
    let mut name_consts: HashMap<String, &ActionMethod> = HashMap::new();
    let mut keys: HashMap<String, &ActionMethod> = HashMap::new();
    let mut key_consts: HashMap<String, &ActionMethod> = HashMap::new();
    for a in &model.actions {
        if let Some(prev) = names.insert(&a.name, a) {
            cx.push(syn::Error::new(
                a.name_span,
                format!("action name `{}` is already used by `{}`", a.name, prev.method),
            ));
        } else if let Some(prev) = name_consts.insert(screaming(&a.name), a) {
            cx.push(syn::Error::new(
                a.name_span,
                format!(
                    "action name `{}` and the name `{}` of `{}` both make the constant `ACTION_{}`",
                    a.name,
                    prev.name,
                    prev.method,
                    screaming(&a.name)
                ),
            ));
        }
        let key = a.evt_key.value();
        if let Some(prev) = keys.insert(key.clone(), a) {
            cx.error_spanned_by(
                &a.evt_key,
                format!(
                    "evt_key `{key}` is already emitted by action `{}`; each event key has one action \
                     (evolve old shapes with version = N and upcasters)",
                    prev.method
                ),
            );
        } else if let Some(prev) = key_consts.insert(screaming(&key), a) {
            cx.error_spanned_by(
                &a.evt_key,
                format!(
                    "evt_key `{key}` and the key `{}` of `{}` both make the constant `EVENT_{}`",
                    prev.evt_key.value(),
                    prev.method,
                    screaming(&key)
                ),
            );
        }
    }
    let mut folds: HashMap<String, &ApplyMethod> = HashMap::new();
    for ap in &model.applies {
        if let Some(prev) = folds.insert(ap.key.value(), ap) {
            cx.error_spanned_by(
                &ap.key,
                format!(
                    "event `{}` is already folded by `{}`",
                    ap.key.value(),
                    prev.method
                ),
            );
        }
    }
    if !model.lost_apply_key {
        for a in &model.actions {
            if !folds.contains_key(&a.evt_key.value()) {
                cx.error_spanned_by(
                    &a.evt_key,
                    format!(
                        "no #[apply(\"{}\")] method folds this event: add one so replays can rebuild the state",
                        a.evt_key.value()
                    ),
                );
            }
        }
    }
    if !model.lost_action_key {
        for ap in &model.applies {
            if !keys.contains_key(&ap.key.value()) {
                cx.error_spanned_by(
                    &ap.key,
                    format!(
                        "no #[action] emits `{}`: fix the key or remove this method",
                        ap.key.value()
                    ),
                );
            }
        }
    }
}

fn generate(model: &Model) -> TokenStream {
    let self_ty = &model.self_ty;
    let resource = &model.resource;
    let krate = model.krate.tokens();
    let serde_crate = format!("{}::__private::serde", krate.to_string().replace(' ', ""));
    let snapshot_every = model.snapshot_every.map(|n| {
        quote! { const SNAPSHOT_EVERY: ::core::option::Option<u64> = ::core::option::Option::Some(#n); }
    });
    let state_version = model
        .state_version
        .map(|n| quote! { const STATE_VERSION: u32 = #n; });

    // Duplicates are errors reported by `check`; generate the first of each only, so the
    // error is not followed by "duplicate definition" ones.
    let mut seen_names = HashSet::new();
    let mut seen_keys = HashSet::new();
    let actions: Vec<&ActionMethod> = model
        .actions
        .iter()
        .filter(|a| seen_names.insert(screaming(&a.name)) & seen_keys.insert(screaming(&a.evt_key.value())))
        .collect();
    let mut seen_folds = HashSet::new();
    let applies: Vec<&ApplyMethod> = model
        .applies
        .iter()
        .filter(|ap| seen_folds.insert(ap.key.value()))
        .collect();

    let specs = actions.iter().map(|a| {
        let name = &a.name;
        let key = &a.evt_key;
        let resources = &a.resources;
        let version = a.version;
        quote! {
            #krate::ActionSpec { name: #name, evt_key: #key, resources: &[#(#resources),*], version: #version }
        }
    });

    // The typed payload of each command: a struct generic over its field types, so that a
    // field type lacking `Serialize` / `Deserialize` is reported where the struct is used
    // (spanned on the action's parameters), not inside serde's derive.
    let with_args: Vec<&&ActionMethod> = actions.iter().filter(|a| a.args_complete).collect();
    let arg_structs = with_args.iter().map(|a| {
        let ident = args_ident(&a.method);
        let params: Vec<Ident> = (0..a.args.len()).map(|i| format_ident!("__F{}", i)).collect();
        let fields = a.args.iter().zip(&params).map(|(arg, param)| {
            let id = &arg.ident;
            quote! { #id: #param }
        });
        let generics = (!params.is_empty()).then(|| quote! { <#(#params),*> });
        // The derived impls carry the span of the parameters too, for the notes of those errors.
        let krate = model.krate.tokens_at(a.params_span);
        quote_spanned! {a.params_span=>
            #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
            #[serde(crate = #serde_crate, deny_unknown_fields)]
            #[allow(non_camel_case_types)]
            struct #ident #generics { #(#fields,)* }
        }
    });

    let arms = actions.iter().filter(|a| a.args_complete).filter_map(|a| {
        let (payload_ty, error_ty) = a.output.as_ref()?;
        let name = &a.name;
        let key = &a.evt_key;
        let version = a.version;
        let method = &a.method;
        let args_ty = args_type(a);
        let take_args = Ident::new("take_object_args", a.params_span);
        let idents: Vec<_> = a.args.iter().map(|arg| &arg.ident).collect();
        let call = if a.is_async {
            quote! { Self::#method(self, #(__args.#idents),*).await }
        } else {
            quote! { Self::#method(self, #(__args.#idents),*) }
        };
        let err_span = error_ty.as_ref().map_or(payload_ty.span(), |t| t.span());
        let reject = quote_spanned! {err_span=> #krate::Error::rejected(__err) };
        let new_event = quote_spanned! {payload_ty.span()=>
            #krate::NewEvent::new::<#payload_ty>(#key, #version, __payload)
        };
        Some(quote! {
            #name => {
                let __args: #args_ty = __call.#take_args()?;
                match #call {
                    ::core::result::Result::Ok(__payload) => {
                        ::core::result::Result::Ok(::std::vec![#new_event?])
                    }
                    ::core::result::Result::Err(__err) => ::core::result::Result::Err(#reject),
                }
            }
        })
    });

    let folds = applies.iter().filter_map(|ap| {
        let key = &ap.key;
        let method = &ap.method;
        let ty = ap.payload_ty.as_ref()?;
        Some(quote! {
            #key => {
                let __payload = __event.decode::<#ty>()?;
                Self::#method(self, __payload);
                ::core::result::Result::Ok(())
            }
        })
    });

    // Each fold must take the payload type its event's action returns: a fold of another
    // type would compile and then fail on every replay. Checked with a trait bound spanned on
    // the fold's parameter type, so the error points at it.
    let payload_checks: Vec<TokenStream> = applies
        .iter()
        .filter_map(|ap| {
            let apply_ty = ap.payload_ty.as_ref()?;
            let action = actions.iter().find(|a| a.evt_key.value() == ap.key.value())?;
            let (action_ty, _) = action.output.as_ref()?;
            Some(quote_spanned! {apply_ty.span()=>
                #krate::__private::same_payload::<#apply_ty, #action_ty>();
            })
        })
        .collect();
    let payload_check = (!payload_checks.is_empty()).then(|| {
        quote! {
            #[doc(hidden)]
            #[allow(dead_code)]
            const __FLUVIUS_PAYLOAD_TYPES: () = { #(#payload_checks)* };
        }
    });

    let constructors = with_args.iter().map(|a| {
        let ctor = format_ident!("{}_command", a.method);
        let name = &a.name;
        let args_ty = args_type(a);
        let params = a.args.iter().map(|arg| {
            let (id, ty) = (&arg.ident, &arg.ty);
            quote! { #id: #ty }
        });
        let idents: Vec<_> = a.args.iter().map(|arg| &arg.ident).collect();
        let args_ident = args_ident(&a.method);
        let args = Ident::new("__args", a.params_span);
        let doc = format!(
            "A typed `{name}` command for the `{}` aggregate `id` (its event: `{}`).",
            model.resource,
            a.evt_key.value()
        );
        quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            pub fn #ctor(id: #krate::AggregateId, #(#params),*) -> #krate::Command {
                let __args: #args_ty = #args_ident { #(#idents),* };
                #krate::Command::typed(
                    #krate::Name::from_static(<Self as #krate::Aggregate>::RESOURCE),
                    ::core::option::Option::Some(id),
                    #krate::Name::from_static(#name),
                    #args,
                )
            }
        }
    });

    let consts = actions.iter().map(|a| {
        let action_const = Ident::new(&format!("ACTION_{}", screaming(&a.name)), a.name_span);
        let event_const = Ident::new(
            &format!("EVENT_{}", screaming(&a.evt_key.value())),
            a.evt_key.span(),
        );
        let (name, key) = (&a.name, &a.evt_key);
        let doc_a = format!("The action name `{name}`.");
        let doc_e = format!("The event key `{}`.", key.value());
        quote! {
            #[doc = #doc_a]
            pub const #action_const: &'static str = #name;
            #[doc = #doc_e]
            pub const #event_const: &'static str = #key;
        }
    });

    quote! {
        const _: () = {
            #(#arg_structs)*

            #[automatically_derived]
            impl #krate::Aggregate for #self_ty {
                const RESOURCE: &'static str = #resource;
                #snapshot_every
                #state_version

                fn actions() -> &'static [#krate::ActionSpec] {
                    const ACTIONS: &[#krate::ActionSpec] = &[#(#specs),*];
                    ACTIONS
                }

                #[allow(unused_mut, unreachable_code)]
                async fn execute(
                    &self,
                    mut __call: #krate::ActionCall<'_>,
                ) -> #krate::Result<::std::vec::Vec<#krate::NewEvent>> {
                    match __call.action() {
                        #(#arms)*
                        _ => ::core::result::Result::Err(__call.unknown_action()),
                    }
                }

                #[allow(unused_mut, unreachable_code)]
                fn apply(&mut self, mut __event: #krate::FoldEvent<'_>) -> #krate::Result<()> {
                    match __event.key() {
                        #(#folds)*
                        _ => ::core::result::Result::Err(__event.unknown()),
                    }
                }
            }

            #[automatically_derived]
            impl #self_ty {
                #payload_check
                #(#consts)*
                #(#constructors)*
            }
        };
    }
}

fn args_ident(method: &Ident) -> Ident {
    format_ident!("__FluviusArgs_{}", method)
}

/// `__FluviusArgs_<method><T0, T1, …>` with the action's argument types.
fn args_type(a: &ActionMethod) -> TokenStream {
    let ident = args_ident(&a.method);
    if a.args.is_empty() {
        return quote! { #ident };
    }
    let tys = a.args.iter().map(|arg| &arg.ty);
    quote! { #ident<#(#tys),*> }
}
