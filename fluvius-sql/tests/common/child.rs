//! Run part of a test in a separate process: the test binary runs itself again, filtered to
//! one `#[ignore]`d test that does the child's work when the environment asks for it.

use std::process::Command;

/// The environment variable that carries the child's instructions.
pub const CHILD_ENV: &str = "FLUVIUS_SQL_TEST_CHILD";

/// Run the ignored test `test_name` of this test binary in a child process with
/// `FLUVIUS_SQL_TEST_CHILD=<arg>`, and return its stdout. Panics if the child fails.
pub fn run_child(test_name: &str, arg: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            test_name,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, arg)
        .output()
        .expect("cannot start the child process");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child `{test_name}` failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("running 1 test"),
        "the child ran no test (filter `{test_name}`):\n{stdout}"
    );
    stdout
}

/// In the child: its instructions, or `None` when the test was run directly (not as a child).
pub fn child_arg() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Pull `KEY=value` lines written by the child out of its stdout.
pub fn child_value(stdout: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the child did not report `{key}`:\n{stdout}"))
        .to_owned()
}
