//! Literal values of attribute arguments (`key = 100`), shared by the attribute parsers.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::ParseStream;
use syn::{LitInt, LitStr, Token};

/// An integer literal for `key`, at least `min`, with the literal itself (to point at it
/// later). `what` says which values are allowed, `example` is one of them.
pub(crate) fn int_at_least<N>(
    input: ParseStream<'_>,
    key: &str,
    min: N,
    what: &str,
    example: u32,
) -> syn::Result<(N, LitInt)>
where
    N: std::str::FromStr + PartialOrd,
    N::Err: std::fmt::Display,
{
    let lit: syn::Lit = input.parse()?;
    let syn::Lit::Int(int) = lit else {
        return Err(syn::Error::new_spanned(
            &lit,
            format!("`{key}` must be an integer literal, e.g. `{key} = {example}`"),
        ));
    };
    match int.base10_parse::<N>() {
        Ok(n) if n >= min => Ok((n, int)),
        _ => Err(syn::Error::new_spanned(int, format!("`{key}` must be {what}"))),
    }
}

/// The path generated code names `fluvius_core` by: `::fluvius_core`, or the path given with
/// `crate = "my_facade::fluvius"` (for a crate that re-exports Fluvius).
#[derive(Clone, Default)]
pub(crate) struct CratePath(Option<syn::Path>);

impl CratePath {
    /// `= "path"` after the `crate` key: a string literal holding a path, as serde's
    /// `#[serde(crate = "…")]`.
    pub(crate) fn parse_value(input: ParseStream<'_>) -> syn::Result<Self> {
        input.parse::<Token![=]>()?;
        let lit: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "`crate` takes a path as a string literal, e.g. `crate = \"my_app::fluvius\"`",
            )
        })?;
        let path: syn::Path = lit.parse().map_err(|_| {
            syn::Error::new_spanned(&lit, "`crate` must be a path, e.g. `crate = \"my_app::fluvius\"`")
        })?;
        Ok(Self(Some(path)))
    }

    /// The path as tokens.
    pub(crate) fn tokens(&self) -> TokenStream {
        match &self.0 {
            Some(path) => path.to_token_stream(),
            None => quote!(::fluvius_core),
        }
    }

    /// The path as tokens carrying `span`, so that errors in what names it point there.
    pub(crate) fn tokens_at(&self, span: Span) -> TokenStream {
        self.tokens()
            .into_iter()
            .map(|mut tree| {
                tree.set_span(span);
                tree
            })
            .collect()
    }
}
