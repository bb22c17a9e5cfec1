//! End-to-end tests of the `lockbox` binary against real services, as one
//! test binary: linking the vault's dependencies (AWS SDK, SQLite, tokio)
//! once instead of once per file. Each module is one former test file;
//! `support` holds the shared harness.
//!
//! Tests run as threads of one process: a test must not change process-wide
//! state (environment, working directory, signal dispositions) and must not
//! measure its children with `getrusage(RUSAGE_CHILDREN)`, which counts
//! every test's children.

mod support;

mod architecture;
mod backup_restore;
mod break_glass;
mod catalog_heal;
mod cli;
mod concurrent;
mod crash;
mod daemon;
mod damage;
mod delta;
mod disk_full;
mod doctor;
mod drill;
mod examples;
mod failures;
mod init_and_config;
mod large_stream;
mod locks_and_backup_all;
mod mariadb;
mod monitoring_examples;
mod notify;
mod origin_story;
mod permissions;
mod postgres;
mod prune;
mod readme;
mod restore_into_sqlite;
mod s3;
mod secrets;
mod status;
mod status_server;
mod verify;
