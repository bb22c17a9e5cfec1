//! The one way a test gives up because something it needs is missing: a
//! database server, the S3 test server, root, or a Debian tool.
//!
//! With `CI` set a missing service fails the test: CI installs and starts
//! everything, so a skip there would be a silent pass. Elsewhere the test
//! returns early after a SKIPPED banner written to the process's standard
//! error handle. Not with `eprintln!`: libtest captures that for every test
//! that passes, so the skip would be invisible.
//!
//! Dependency-free on purpose: `restore/tests` includes this file by path.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

/// The running test's name: libtest names each test's thread after it.
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "a test".to_string(),
    }
}

/// Gives up on the running test because `why`: panics when `CI` is set,
/// else prints a loud SKIPPED banner. The caller returns after it.
pub fn skip(why: impl Display) {
    let test = current_test();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI is set, so this fails instead of skipping)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n**********\nSKIPPED: {test}: {why} (set CI to make this a failure)\n**********\n"
    );
}

/// `Some(value)`, or `None` after [`skip`] saying `what` is unavailable.
pub fn require<T, E: Display>(what: &str, found: Result<T, E>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(e) => {
            skip(format_args!("{what} is not available: {e}"));
            None
        }
    }
}

/// The tool at `path` (from the Debian package `package`), or `None` after
/// [`skip`].
pub fn tool(path: &str, package: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        return Some(p);
    }
    skip(format_args!(
        "{path} not found (Debian package `{package}`; .ci/run installs it)"
    ));
    None
}
