//! Shared harness: the S3 test server, the one skip rule and the local
//! backend's file layout (the last two shared with the workspace's own
//! end-to-end tests in `tests/it/support`), and a TCP proxy for outages.
#![allow(dead_code)]

#[path = "../../../../tests/it/support/local.rs"]
pub mod local;
pub mod proxy;
#[path = "../../../../tests/it/support/skip.rs"]
pub mod skip;

use lockbox_vault::storage::s3::test_server::{ServerKind, TestServer};

/// A fresh S3 test server of `kind` for the running test, or `None` after
/// [`skip::skip`] when it cannot start.
pub fn s3_server_kind(kind: ServerKind) -> Option<TestServer> {
    skip::require(
        &format!("the {kind} S3 test server ({})", kind.script()),
        TestServer::start_kind(kind),
    )
}
