#![no_main]
//! Fuzz target `attestation`: the body is `lockbox_vault::fuzzing`'s, shared with
//! the CI smoke test `vault/tests/it/fuzz_smoke.rs`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lockbox_vault::fuzzing::fuzz_one("attestation", data));
