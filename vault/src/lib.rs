//! Lockbox's vault: the repository format and everything that writes it.
//!
//! Module map:
//! * [`format`](mod@format) — constants and key layout of format v1 (see `FORMAT.md`).
//! * [`ids`] — keyed BLAKE3 object ids and the ID key.
//! * [`chunker`] — content-defined chunking (FastCDC).
//! * [`envelope`] — the object envelope: age around one zstd frame.
//! * [`error`] — the class of every error (usage, integrity, identity, busy, …) and its registry.
//! * [`keys`] — recipients, identities, key files.
//! * [`storage`] — backend traits and the local write-once backend.
//! * [`repository`] — the config object; listing and reading snapshots.
//! * [`retention`] — retention policy selection (which snapshots a policy keeps, and why).
//! * [`prune`] — the reviewed two-step prune: plan (read rights), apply (the pruner's
//!   `DeleteBackend`), and its locked audit records.
//! * [`manifest`] — snapshot manifests (public part + sealed part).
//! * [`attestation`] — drill and verification records stored in the repository.
//! * [`catalog`] — the local SQLite cache of the repository.
//! * [`config`] — the TOML configuration.
//! * [`health`] — per-source status and the OK/WARN/CRIT verdict (`status`, `check`, metrics).
//! * [`notify`] — `[[notify]]` deliveries: webhooks, dead-man's-switch pings, hook commands.
//! * [`doctor`] — the storage and host checklist (its canary delete probe must fail).
//! * [`source`] — dump sources (command, SQLite, stdin).
//! * [`dbtool`] — running database client tools for sources, restores, drills and doctor:
//!   passwords, private credential files, scrubbing, server URLs.
//! * [`backup`] — the streaming backup pipeline.
//! * [`delta`] — delta chunks: pairing with a base and the local base cache.
//! * [`scheduler`] — cron schedules, periods and catch-up rules for the daemon.
//! * [`rfc3339`] — the one text form of points in time.
//! * [`state`] — the private state directory.
//! * [`lock`] — per-source run locks (one backup of a source at a time per host).
//! * [`run`] — the run record: every backup, drill and verify is recorded from the moment
//!   its source is chosen until a guard closes it, whatever fails in between.
//! * [`sys`] — the operating system: tools in their own process groups, stop signals, /proc,
//!   free space, host name, allocator tuning; the only module with `unsafe`.
//! * `fuzzing` (hidden) — fuzz target bodies and seed corpora for every decoder of stored bytes.
//!
//! Architecture invariants:
//! * Backup code holds a `WriteBackend`, which has no delete.
//! * Backup never needs an age identity; only recipients.
//! * A manifest is put only after every object it names is durable and locked.
//! * This crate never prints; it returns typed errors and emits `tracing` events.
//!
//! Which operations may run at the same time, on one repository:
//!
//! | running ↓ / starting →         | backup, same source | backup, other source | restore | catalog rebuild | doctor | prune apply |
//! |---|---|---|---|---|---|---|
//! | backup, this host               | no¹ (exit 75) | yes | yes | yes | yes | yes⁴ |
//! | backup, another host            | yes² | yes | yes | yes | yes | yes⁴ |
//! | restore                         | yes | yes | yes | yes | yes | yes⁵ |
//! | verify, drill                   | yes³ | yes | yes | yes | yes | yes⁵ |
//! | prune apply                     | yes⁴ | yes⁴ | yes⁵ | yes | yes | not supported⁶ |
//!
//! ¹ The per-source run lock ([`lock`]) in the state directory.
//! ³ Read-only but for a drill's attestation put (a new key). A verify that
//! lists while a backup runs sees the snapshot complete or not at all (the
//! manifest is written last); a drill's scratch database is its own.
//! ² Safe for the repository (content addressing, no shared mutable object,
//! retention only extended); both snapshots name the same `previous`, a fork
//! in the per-source chain.
//! ⁴ Prune deletes only versions whose lock has expired; a backup references a
//! chunk only after locking it past its own snapshot (see [`prune`]): storage
//! then refuses the delete, or the backup finds the chunk gone and stores it
//! again. References are re-read at apply time; objects newer than the plan's
//! grace period are never deleted.
//! ⁵ Only expired snapshots go, manifest first: a restore or verify of a
//! snapshot being pruned may fail with "not found"; one of a kept snapshot
//! cannot.
//! ⁶ Two applies of different plans at once are safe for kept data (each
//! re-checks references) but may report each other's deletions as refusals or
//! "already gone"; run prune from one place.

#![warn(missing_docs)]

pub mod access;
pub mod attestation;
pub mod backup;
pub mod catalog;
pub mod chunker;
pub mod classify;
pub mod config;
pub mod dbtool;
pub mod delta;
pub mod doctor;
pub mod envelope;
pub mod error;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ids;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod notify;
pub mod prune;
pub mod repository;
pub mod retention;
pub mod rfc3339;
pub mod run;
pub mod scheduler;
pub mod source;
pub mod state;
pub mod storage;
pub mod sys;
