//! Literal values of attribute arguments (`key = 100`), shared by the attribute parsers.

use syn::parse::ParseStream;
use syn::{LitInt, LitStr};

/// The longest name, in bytes (`fluvius_core::MAX_NAME_LEN`).
const MAX_NAME_LEN: usize = 255;

/// An error on `lit` if its value is no acceptable name for `key`: the rule of
/// `fluvius_core::validate_name` (not empty, at most 255 bytes, no control character, no
/// whitespace at either end), checked at compile time for names written in attributes.
pub(crate) fn check_name(key: &str, lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let problem = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!("must be at most {MAX_NAME_LEN} bytes long (it is {})", name.len())
    } else if let Some(c) = name.chars().find(|c| c.is_control()) {
        format!("must not contain the control character {c:?}")
    } else if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        "must not start or end with whitespace".to_owned()
    } else {
        return Ok(());
    };
    Err(syn::Error::new_spanned(lit, format!("{key} {problem}")))
}

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
