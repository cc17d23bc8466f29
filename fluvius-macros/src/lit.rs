//! Literal values of attribute arguments (`key = 100`), shared by the attribute parsers.

use syn::parse::ParseStream;
use syn::LitInt;

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
