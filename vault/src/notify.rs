//! Notifications: telling people and machines that a backup started,
//! succeeded or failed, that a drill or verify found a problem, or that a
//! source went stale, without Prometheus in between.
//!
//! This module owns the events ([`Event`]), their versioned JSON payload
//! ([`payload`], schema [`PAYLOAD_SCHEMA`], documented in
//! `examples/README.md`), and their delivery ([`Notifier`]) to the targets
//! of `[[notify]]` (`crate::config::NotifyTarget`): a webhook or a
//! dead-man's-switch ping URL (`http.rs`), or a local command
//! (`command.rs`); `retry.rs` spends one budget on all attempts, `stale.rs`
//! turns the status report into `stale` events.
//!
//! Rules every delivery follows:
//! * A notification never fails the operation it reports, and never holds
//!   it up for longer than the target's budget (`timeout`, default 10 s):
//!   one budget covers every attempt and the waits between them.
//! * Targets are served in parallel, so [`Notifier::send`] takes as long as
//!   the largest budget, not the sum.
//! * Connection errors, timeouts, HTTP 429 and 5xx are retried within the
//!   budget; any other answer is final.
//! * Secrets (a webhook's signing key, a ping URL's path) never reach a log,
//!   a [`Delivery`] or an error message: targets are named by their entry
//!   and scheme://host only.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{NotifyConfig, NotifyTarget, SecretFrom, Sink};
use crate::health::human_duration;

mod command;
mod event;
mod http;
mod retry;
mod stale;

pub use event::{Event, EventKind, PAYLOAD_SCHEMA, payload};
pub use stale::stale_events;

/// How long [`Notifier::send`] waits past the largest budget for a delivery
/// thread to report before calling it failed (it should already have).
const REPORT_GRACE: Duration = Duration::from_millis(500);

/// The outcome of one delivery to one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// `webhook`, `ping` or `command`.
    pub kind: &'static str,
    /// `notify[i] scheme://host` or `notify[i] /path/to/program`: no secret.
    pub target: String,
    /// The target accepted it.
    pub ok: bool,
    /// Why the last attempt failed (secrets redacted), if it did not get through.
    pub error: Option<String>,
    /// Attempts made within the delivery's time budget.
    pub attempts: u32,
}

/// Why a `[[notify]]` entry cannot be used: its secret cannot be read, or it was not validated.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A webhook's `secret_file` cannot be read or its first line is empty.
    #[error("{key}: cannot read secret_file {path}: {reason}")]
    SecretFile {
        /// The entry, `notify[i]`.
        key: String,
        /// The secret file.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A webhook's `secret_env` variable is not set or empty in Lockbox's environment.
    #[error("{key}: the environment variable {name} (secret_env) is not set or empty")]
    SecretEnv {
        /// The entry, `notify[i]`.
        key: String,
        /// The variable's name.
        name: String,
    },
    /// The entry was built by hand rather than by loading a configuration, so it was never
    /// checked.
    #[error("{key}: the entry was not validated (load it with Config::load or Config::parse)")]
    NotValidated {
        /// The entry, `notify[i]`.
        key: String,
    },
}

impl NotifyError {
    /// A `[[notify]]` entry whose secret is missing is the configuration's
    /// to fix.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Usage
    }
}

/// Key material that must not be shown. `Debug` prints no byte of it.
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    fn read(key: &str, from: &SecretFrom) -> Result<Self, NotifyError> {
        let text = match from {
            SecretFrom::File(path) => {
                let err = |reason: String| NotifyError::SecretFile {
                    key: key.into(),
                    path: path.display().to_string(),
                    reason,
                };
                std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?
            }
            SecretFrom::Env(name) => std::env::var(name).unwrap_or_default(),
        };
        // The first line, as for password files: a trailing newline is the
        // editor's, not the secret's.
        let secret = text.lines().next().unwrap_or_default();
        if secret.is_empty() {
            return Err(match from {
                SecretFrom::File(path) => NotifyError::SecretFile {
                    key: key.into(),
                    path: path.display().to_string(),
                    reason: "the file is empty".into(),
                },
                SecretFrom::Env(name) => NotifyError::SecretEnv {
                    key: key.into(),
                    name: name.clone(),
                },
            });
        }
        Ok(Self(secret.as_bytes().to_vec()))
    }
}

/// A target ready to deliver to: its validated entry and its secret.
#[derive(Debug)]
struct Target {
    config: NotifyTarget,
    secret: Option<Secret>,
    /// `notify[i] scheme://host`, or `notify[i] program`.
    label: String,
}

impl Target {
    fn hears(&self, event: &Event) -> bool {
        if event.kind == EventKind::Test {
            return true;
        }
        self.config.on.contains(&event.kind)
            && self
                .config
                .sources
                .as_ref()
                .is_none_or(|s| s.contains(&event.source))
    }

    fn deliver(&self, agent: &ureq::Agent, event: &Event, body: &[u8]) -> Delivery {
        let budget = self.config.budget;
        let (result, attempts) = match &self.config.sink {
            Sink::Webhook { url, headers, .. } => http::webhook(
                agent,
                url,
                headers,
                self.secret.as_ref().map(|s| &s.0[..]),
                event,
                body,
                budget,
            ),
            Sink::Ping { url, style } => http::ping(agent, url, *style, event, budget),
            Sink::Command { argv } => command::run(argv, event, body, budget),
        };
        let kind = self.config.sink.kind_name();
        match &result {
            Ok(()) => tracing::info!(
                notify = %self.label,
                kind,
                event = event.kind.as_str(),
                source = %event.source,
                attempts,
                "notification delivered"
            ),
            Err(e) => tracing::warn!(
                notify = %self.label,
                kind,
                event = event.kind.as_str(),
                source = %event.source,
                attempts,
                error = %e,
                "notification failed"
            ),
        }
        Delivery {
            kind,
            target: self.label.clone(),
            ok: result.is_ok(),
            error: result.err(),
            attempts,
        }
    }
}

/// Delivers events to the `[[notify]]` targets. Build one per config (it
/// holds the secrets, read once) and share it.
pub struct Notifier {
    targets: Vec<Arc<Target>>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "targets",
                &self.targets.iter().map(|t| &t.label).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Notifier {
    /// Reads every target's secret. Fails on a missing or unreadable secret
    /// (naming the file or variable, never the content).
    pub fn new(targets: &[NotifyConfig]) -> Result<Self, NotifyError> {
        let mut out = Vec::with_capacity(targets.len());
        for (i, n) in targets.iter().enumerate() {
            let config = n
                .target()
                .ok_or_else(|| NotifyError::NotValidated {
                    key: format!("notify[{i}]"),
                })?
                .clone();
            let secret = match &config.sink {
                Sink::Webhook {
                    secret: Some(from), ..
                } => Some(Secret::read(&config.key, from)?),
                _ => None,
            };
            let shown = match &config.sink {
                Sink::Webhook { url, .. } | Sink::Ping { url, .. } => url.label().to_string(),
                Sink::Command { argv } => argv[0].clone(),
            };
            out.push(Arc::new(Target {
                label: format!("{} {shown}", config.key),
                config,
                secret,
            }));
        }
        Ok(Self {
            targets: out,
            agent: http::agent(),
        })
    }

    /// A notifier with no target: `send` does nothing.
    pub fn none() -> Self {
        Self {
            targets: Vec::new(),
            agent: http::agent(),
        }
    }

    /// No `[[notify]]` target is configured: notifying does nothing.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// True if some target hears `kind` (from any source), so a caller can
    /// skip gathering an event nobody would get.
    pub fn listens_for(&self, kind: EventKind) -> bool {
        self.targets.iter().any(|t| t.config.on.contains(&kind))
    }

    /// Delivers `event` to every target subscribed to its kind (and source;
    /// a `test` event goes to every target), all at once, and returns each
    /// outcome, in config order. Blocks at most the largest budget of those
    /// targets (plus a moment). Never panics, never returns an error: a
    /// failure is a `Delivery` with `ok: false`, and is logged.
    pub fn send(&self, event: &Event) -> Vec<Delivery> {
        let chosen: Vec<&Arc<Target>> = self.targets.iter().filter(|t| t.hears(event)).collect();
        if chosen.is_empty() {
            return Vec::new();
        }
        let start = Instant::now();
        let body: Arc<[u8]> = payload(event, OffsetDateTime::now_utc()).into();
        let event = Arc::new(event.clone());
        // Delivery threads log through the caller's subscriber.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let (tx, rx) = mpsc::channel();
        for (i, t) in chosen.iter().enumerate() {
            let (target, event, body, report) = (
                Arc::clone(t),
                Arc::clone(&event),
                Arc::clone(&body),
                tx.clone(),
            );
            let agent = self.agent.clone();
            let dispatch = dispatch.clone();
            let spawned = std::thread::Builder::new()
                .name("lockbox-notify".into())
                .spawn(move || {
                    let d = tracing::dispatcher::with_default(&dispatch, || {
                        target.deliver(&agent, &event, &body)
                    });
                    let _ = report.send((i, d));
                });
            if let Err(e) = spawned {
                let _ = tx.send((
                    i,
                    overdue(chosen[i], Some(format!("cannot start a thread: {e}"))),
                ));
            }
        }
        drop(tx);
        let longest = chosen
            .iter()
            .map(|t| t.config.budget)
            .max()
            .unwrap_or_default();
        let give_up = start + longest + REPORT_GRACE;
        let mut results: Vec<Option<Delivery>> = vec![None; chosen.len()];
        while results.iter().any(Option::is_none) {
            let left = give_up.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, d)) => results[i] = Some(d),
                Err(_) => break,
            }
        }
        results
            .into_iter()
            .zip(&chosen)
            .map(|(d, t)| {
                d.unwrap_or_else(|| {
                    let d = overdue(t, None);
                    tracing::warn!(notify = %d.target, error = ?d.error, "notification failed");
                    d
                })
            })
            .collect()
    }
}

/// The delivery of a target whose thread did not report in time (or could
/// not start).
fn overdue(t: &Target, why: Option<String>) -> Delivery {
    Delivery {
        kind: t.config.sink.kind_name(),
        target: t.label.clone(),
        ok: false,
        error: Some(why.unwrap_or_else(|| {
            format!(
                "still running when its budget of {} ran out",
                human_duration(t.config.budget.as_secs().max(1))
            )
        })),
        attempts: 0,
    }
}

#[cfg(test)]
mod tests;
