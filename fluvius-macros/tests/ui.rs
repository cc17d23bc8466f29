//! Compile-time UI tests: every rejected input in `tests/ui/fail` must fail with its committed
//! `.stderr` (made with the toolchain pinned in `rust-toolchain.toml`); every input in
//! `tests/ui/pass` must compile and run.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p fluvius-macros --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
