//! Integration tests of restore against the vault's real storage, as one
//! test binary (one link of the vault's dependencies). Tests run as threads
//! of one process: none may change process-wide state.

mod faults;
mod roundtrip;
mod support;
