//! The one parser of attribute arguments, shared by `#[aggregate]`, `#[action]`,
//! `#[event_handler]` and `#[upcast]`.
//!
//! An argument list is parsed in two steps, like serde's `Attr` reading:
//! 1. [`Args::parse`] reads the syntax only — leading values without a key (an event key, a
//!    pattern), then `key = value` entries — and stops only at what is not an argument list;
//! 2. each macro walks the entries, and the readers here ([`Args::str`], [`Args::int`], …)
//!    check each value, report every mistake to the [`Ctxt`] and go on, so a user sees all the
//!    mistakes of one attribute at once.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Token};

use crate::ctxt::Ctxt;

/// One `key = value` (or a bare `key`, which is reported when its value is read).
pub(crate) struct Entry {
    pub(crate) key: Ident,
    pub(crate) value: Option<Expr>,
}

/// An attribute's arguments, as written.
pub(crate) struct Args {
    /// The values before the first key (at most the number of slots the attribute has).
    pub(crate) positional: Vec<Expr>,
    pub(crate) entries: Vec<Entry>,
}

impl Args {
    /// Parse `value, …, key = value, …`, with up to `slots` leading values without a key.
    /// `expected` says what the attribute takes, for the one syntax error this reports itself.
    pub(crate) fn parse(input: ParseStream<'_>, slots: usize, expected: &str) -> syn::Result<Self> {
        let mut args = Args {
            positional: Vec::new(),
            entries: Vec::new(),
        };
        while !input.is_empty() {
            let positional_allowed = args.entries.is_empty() && args.positional.len() < slots;
            if input.peek(Ident::peek_any) && is_keyed(input, positional_allowed) {
                let key = input.call(Ident::parse_any)?;
                let value = if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    Some(input.parse::<Expr>()?)
                } else {
                    None
                };
                args.entries.push(Entry { key, value });
            } else if positional_allowed {
                args.positional.push(input.parse()?);
            } else {
                return Err(input.error(expected));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }

    /// Parse `tokens` with [`Args::parse`]; a syntax error is reported to `cx` and gives `None`.
    pub(crate) fn parse_tokens(
        cx: &mut Ctxt,
        tokens: TokenStream,
        slots: usize,
        expected: &str,
    ) -> Option<Self> {
        let parser = |input: ParseStream<'_>| Args::parse(input, slots, expected);
        match syn::parse::Parser::parse2(parser, tokens) {
            Ok(args) => Some(args),
            Err(e) => {
                cx.push(e);
                None
            }
        }
    }

    /// The value of `entry`, or a report that it has none (`example` shows one).
    fn value<'a>(cx: &mut Ctxt, entry: &'a Entry, example: &str) -> Option<&'a Expr> {
        if entry.value.is_none() {
            let key = &entry.key;
            cx.error_spanned_by(key, format!("`{key}` needs a value: `{key} = {example}`"));
        }
        entry.value.as_ref()
    }

    /// A string literal that is an acceptable name (see [`check_name`]).
    pub(crate) fn name(cx: &mut Ctxt, entry: &Entry, example: &str) -> Option<LitStr> {
        let lit = Self::str(cx, entry, example)?;
        let key = format!("`{}`", entry.key);
        match check_name(&key, &lit) {
            Ok(()) => Some(lit),
            Err(e) => {
                cx.push(e);
                None
            }
        }
    }

    /// A string literal, not empty.
    pub(crate) fn str(cx: &mut Ctxt, entry: &Entry, example: &str) -> Option<LitStr> {
        let key = &entry.key;
        match Self::value(cx, entry, example)? {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) if s.value().is_empty() => {
                cx.error_spanned_by(s, format!("`{key}` must not be empty"));
                None
            }
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
            other => {
                cx.error_spanned_by(
                    other,
                    format!("`{key}` must be a string literal, e.g. `{key} = {example}`"),
                );
                None
            }
        }
    }

    /// A list of non-empty string literals: `["a", "b"]`.
    pub(crate) fn str_list(cx: &mut Ctxt, entry: &Entry, what: &str, example: &str) -> Option<Vec<LitStr>> {
        let key = &entry.key;
        let Expr::Array(array) = Self::value(cx, entry, example)? else {
            let value = entry.value.as_ref()?;
            cx.error_spanned_by(
                value,
                format!("`{key}` must be a list of string literals, e.g. `{key} = {example}`"),
            );
            return None;
        };
        let mut items = Vec::with_capacity(array.elems.len());
        let mut ok = true;
        for elem in &array.elems {
            match elem {
                Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => match check_name(what, s) {
                    Ok(()) => items.push(s.clone()),
                    Err(e) => {
                        cx.push(e);
                        ok = false;
                    }
                },
                other => {
                    cx.error_spanned_by(other, format!("{what} must be a string literal"));
                    ok = false;
                }
            }
        }
        ok.then_some(items)
    }

    /// An integer literal of at least `min`, with the literal (to point at it later). `what`
    /// says which values are allowed, `example` is one of them.
    pub(crate) fn int<N>(
        cx: &mut Ctxt,
        entry: &Entry,
        min: N,
        what: &str,
        example: u32,
    ) -> Option<(N, LitInt)>
    where
        N: std::str::FromStr + PartialOrd,
        N::Err: std::fmt::Display,
    {
        let key = &entry.key;
        let value = Self::value(cx, entry, &example.to_string())?;
        let negative = matches!(value, Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_))
            && matches!(&*u.expr, Expr::Lit(ExprLit { lit: Lit::Int(_), .. })));
        match value {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => match int.base10_parse::<N>() {
                Ok(n) if n >= min => Some((n, int.clone())),
                _ => {
                    cx.error_spanned_by(int, format!("`{key}` must be {what}"));
                    None
                }
            },
            _ if negative => {
                cx.error_spanned_by(value, format!("`{key}` must be {what}"));
                None
            }
            other => {
                cx.error_spanned_by(
                    other,
                    format!("`{key}` must be an integer literal, e.g. `{key} = {example}`"),
                );
                None
            }
        }
    }

    /// `crate = "path"`.
    pub(crate) fn crate_path(cx: &mut Ctxt, entry: &Entry) -> Option<CratePath> {
        let lit = Self::str(cx, entry, "\"my_app::fluvius\"")?;
        match lit.parse::<syn::Path>() {
            Ok(path) => Some(CratePath(Some(path))),
            Err(_) => {
                cx.error_spanned_by(&lit, "`crate` must be a path, e.g. `crate = \"my_app::fluvius\"`");
                None
            }
        }
    }
}

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

/// Whether the next argument is a key (`key = …`, or a bare `key` where no value without a key
/// may stand).
fn is_keyed(input: ParseStream<'_>, positional_allowed: bool) -> bool {
    let fork = input.fork();
    if fork.call(Ident::parse_any).is_err() {
        return false;
    }
    fork.peek(Token![=]) && !fork.peek(Token![==])
        || !positional_allowed && (fork.is_empty() || fork.peek(Token![,]))
}

/// Store `value` in `slot` unless a value was given before (then report the repeated `key`).
pub(crate) fn once<T>(cx: &mut Ctxt, slot: &mut Option<T>, key: &Ident, value: T) -> bool {
    if slot.is_some() {
        cx.error_spanned_by(key, format!("`{key}` is specified more than once"));
        false
    } else {
        *slot = Some(value);
        true
    }
}

/// Report a key the attribute does not take.
pub(crate) fn unknown(cx: &mut Ctxt, attribute: &str, key: &Ident, expected: &str) {
    cx.error_spanned_by(
        key,
        format!("unknown #[{attribute}] argument `{key}`: {expected}"),
    );
}

/// The path generated code names `fluvius_core` by: `::fluvius_core`, or the path given with
/// `crate = "my_facade::fluvius"` (for a crate that re-exports Fluvius).
#[derive(Clone, Default)]
pub(crate) struct CratePath(Option<syn::Path>);

impl CratePath {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str, slots: usize) -> syn::Result<Args> {
        syn::parse::Parser::parse_str(
            |input: ParseStream<'_>| Args::parse(input, slots, "expected"),
            src,
        )
    }

    #[test]
    fn positional_values_then_keys() {
        let args = parse(r#""user-*", name = "a", max_attempts = 3, crate = "x""#, 1).unwrap();
        assert_eq!(args.positional.len(), 1);
        let keys: Vec<String> = args.entries.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(keys, ["name", "max_attempts", "crate"]);
    }

    #[test]
    fn a_bare_identifier_is_a_value_where_one_may_stand_and_a_key_elsewhere() {
        let args = parse("KEY", 1).unwrap();
        assert_eq!((args.positional.len(), args.entries.len()), (1, 0));
        let args = parse(r#""k", max_attempts, name = "m""#, 1).unwrap();
        assert!(args.entries[0].value.is_none());
        let args = parse("snapshot_every", 0).unwrap();
        assert_eq!(args.entries[0].key, "snapshot_every");
    }

    #[test]
    fn a_value_where_none_may_stand_is_a_syntax_error() {
        assert!(parse(r#""a", "b""#, 1).is_err());
        assert!(parse(r#""a""#, 0).is_err());
        assert!(parse(r#"name = "a" "b""#, 0).is_err());
    }

    #[test]
    fn readers_report_every_mistake() {
        let args = parse(r#"a = 1, b = "", c = -1, d = "x", e"#, 0).unwrap();
        let mut cx = Ctxt::default();
        assert!(Args::str(&mut cx, &args.entries[0], "\"x\"").is_none());
        assert!(Args::str(&mut cx, &args.entries[1], "\"x\"").is_none());
        assert!(Args::int::<u64>(&mut cx, &args.entries[2], 1, "positive", 1).is_none());
        assert!(Args::int::<u64>(&mut cx, &args.entries[3], 1, "positive", 1).is_none());
        assert!(Args::int::<u64>(&mut cx, &args.entries[4], 1, "positive", 1).is_none());
        let messages = cx.messages();
        assert_eq!(
            messages,
            [
                "`a` must be a string literal, e.g. `a = \"x\"`",
                "`b` must not be empty",
                "`c` must be positive",
                "`d` must be an integer literal, e.g. `d = 1`",
                "`e` needs a value: `e = 1`",
            ]
        );
    }
}
