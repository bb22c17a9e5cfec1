//! Stale alerts from the daemon. Once a minute the status report (the one
//! `lockbox status` shows) is checked for sources that newly passed their
//! `max_backup_age` or `max_verified_age`, and each such source is sent, once
//! per lapse, to the `[[notify]]` targets that hear `stale`. The check and
//! the deliveries run on a thread, so the daemon's loop never waits on a
//! slow target. A restarted daemon tells of sources already stale once more.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockbox_vault::config::Config;
use lockbox_vault::notify::{EventKind, Notifier, stale_events};

use crate::commands::record_notifications;

const CHECK_EVERY: Duration = Duration::from_secs(60);

pub(super) struct StaleWatch {
    notifier: Arc<Notifier>,
    told: Arc<Mutex<BTreeSet<String>>>,
    next: Instant,
    busy: Option<JoinHandle<()>>,
}

impl StaleWatch {
    /// The daemon's one `Notifier`, built from `config` (its secrets read
    /// now: a missing one stops the daemon from starting).
    pub(super) fn start(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            notifier: Arc::new(Notifier::new(&config.notify)?),
            told: Arc::default(),
            next: Instant::now(),
            busy: None,
        })
    }

    /// After a reload: a new `Notifier` from `config`. If a secret cannot be
    /// read, the previous targets stay in force (and it is logged).
    pub(super) fn reload(&mut self, config: &Config) {
        match Notifier::new(&config.notify) {
            Ok(n) => self.notifier = Arc::new(n),
            Err(e) => tracing::error!(
                error = %e,
                "[[notify]] not reloaded; notifications go to the previous targets"
            ),
        }
    }

    /// The daemon's notifier, for anything else it reports.
    pub(super) fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Starts a check when one is due and the last one has finished.
    pub(super) fn tick(&mut self, config: &Config) {
        let now = Instant::now();
        if now < self.next || self.busy.as_ref().is_some_and(|b| !b.is_finished()) {
            return;
        }
        self.next = now + CHECK_EVERY;
        if !self.notifier.listens_for(EventKind::Stale) {
            return;
        }
        let (config, notifier, told) = (
            config.clone(),
            Arc::clone(&self.notifier),
            Arc::clone(&self.told),
        );
        self.busy = Some(std::thread::spawn(move || {
            let report = match lockbox_vault::health::load_report(&config, None) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "stale check: cannot read the status");
                    return;
                }
            };
            let events = {
                let mut told = told.lock().unwrap_or_else(|e| e.into_inner());
                stale_events(&report, &mut told)
            };
            for event in events {
                tracing::warn!(
                    source = %event.source,
                    reason = %event.error.as_deref().unwrap_or_default(),
                    "source is stale"
                );
                record_notifications(&config, &notifier.send(&event));
            }
        }));
    }
}
