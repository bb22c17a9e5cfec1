//! Integration tests of the vault library's public API, as one test binary
//! (one link of the vault's dependencies). `tests/data` holds fixtures of
//! the library's unit tests.

mod config_errors;
mod fuzz_smoke;
