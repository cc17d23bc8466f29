//! Where to point when an attribute sits on the wrong kind of item.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::Item;

/// Parse the item an attribute sits on and keep it if `pick` accepts its kind. Otherwise the
/// tokens to return instead: the error (`misplaced`, on the item's keyword, or the parse error)
/// followed by the item unchanged, so the user sees this one error and no cascade.
pub(crate) fn expect_item<T>(
    item: &TokenStream,
    pick: impl FnOnce(Item) -> Option<T>,
    misplaced: &str,
) -> Result<T, TokenStream> {
    let err = match syn::parse2::<Item>(item.clone()) {
        Ok(parsed) => {
            let keyword = keyword_span(&parsed);
            match pick(parsed) {
                Some(picked) => return Ok(picked),
                None => syn::Error::new(keyword, misplaced),
            }
        }
        Err(e) => e,
    }
    .to_compile_error();
    Err(quote! { #err #item })
}

/// The keyword that says what `item` is (`struct`, `fn`, `impl`, …), the token to blame when an
/// attribute does not belong on that kind of item, like serde's error on `union`.
fn keyword_span(item: &Item) -> Span {
    match item {
        Item::Const(i) => i.const_token.span,
        Item::Enum(i) => i.enum_token.span,
        Item::ExternCrate(i) => i.extern_token.span,
        Item::Fn(i) => i.sig.fn_token.span,
        Item::ForeignMod(i) => i.abi.extern_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Macro(i) => i.mac.path.span(),
        Item::Mod(i) => i.mod_token.span,
        Item::Static(i) => i.static_token.span,
        Item::Struct(i) => i.struct_token.span,
        Item::Trait(i) => i.trait_token.span,
        Item::TraitAlias(i) => i.trait_token.span,
        Item::Type(i) => i.type_token.span,
        Item::Union(i) => i.union_token.span,
        Item::Use(i) => i.use_token.span,
        _ => Span::call_site(),
    }
}
