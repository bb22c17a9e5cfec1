//! `lockbox daemon`: runs each source's backups on its schedule.
//!
//! Each run is a child process (`lockbox backup SOURCE --json`) in its own
//! process group. That gives the guarantees for free: the child takes the
//! source's lock (so the daemon, a timer and a person never overlap), and
//! aborting a run is a SIGKILL to its group, after which crash consistency
//! (tested separately) means no manifest and nothing half-visible. A run
//! that crashes cannot take the daemon down with it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lockbox_vault::catalog::RunOutcome;
use lockbox_vault::config::Config;
use lockbox_vault::rfc3339;
use lockbox_vault::scheduler::Schedule;
use time::OffsetDateTime;

use lockbox_vault::catalog::Catalog;
use lockbox_vault::error::ErrorClass;
use lockbox_vault::run::RunReport;

use lockbox_vault::access::BackupHost;
use lockbox_vault::backup::BackupSummary;

use crate::cli::LogFormat;
use crate::error::{self, UsageError};

mod child;
mod drills;
mod stale;
mod web;

/// How often the loop wakes to reap runs, start due ones and read signals.
const TICK: Duration = Duration::from_millis(100);

/// How long past its timeout a run may go on before the daemon kills it:
/// the run stops its own dump at the timeout and records that itself.
const BACKSTOP: Duration = Duration::from_secs(30);

struct Slot {
    schedule: Schedule,
    jitter: Duration,
    timeout: Option<Duration>,
    next: OffsetDateTime,
}

struct Running {
    run: child::Child,
    started_at: OffsetDateTime,
    deadline: Option<Instant>,
}

pub fn run(config_path: &Path, config: Config, log_format: LogFormat) -> Result<ExitCode> {
    let terminate = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&terminate))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;

    let mut config = config;
    // Children run on the configuration the daemon validated, not on
    // whatever the file holds at the moment they start.
    let mut running_config = pin_config(config_path, &config)?;
    // The daemon starts even when storage cannot be reached: each run then
    // records its own failure, and health says so. A daemon that exited
    // instead would only be a failed unit nobody watches.
    let mut catalog = lockbox_vault::run::open_catalog(&config.catalog_path())
        .with_context(|| format!("opening the catalog {}", config.catalog_path().display()))?;
    match BackupHost::open(&config)
        .map_err(anyhow::Error::from)
        .and_then(|mut host| {
            host.catalog
                .sync(host.repo.backend.as_ref(), &host.repo.id_key)
                .context("refreshing the catalog from the repository")
        }) {
        Ok(report) => tracing::debug!(
            added = report.added,
            removed = report.removed,
            "catalog synced"
        ),
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "cannot reach the repository at start; scheduled runs go ahead and record their own \
             failures"
        ),
    }
    let exe = std::env::current_exe().context("locating the lockbox binary")?;
    let status_server = web::StatusServer::start(&config);
    let mut slots = build_slots(&config, OffsetDateTime::now_utc())?;
    let mut drills = drills::Drills::default();
    drills.configure(&config, OffsetDateTime::now_utc());
    let mut stale = stale::StaleWatch::start(&config)?;
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut pending: VecDeque<String> = VecDeque::new();
    // Due runs held for a free slot: since when, and whether the WARN for
    // waiting longer than the schedule's period has been logged.
    let mut waiting: HashMap<String, (OffsetDateTime, bool)> = HashMap::new();
    // Marks left by a previous daemon are stale.
    let _ = catalog.clear_waiting(None);

    // Catch-up: a source whose last success is older than one period runs now.
    let now = OffsetDateTime::now_utc();
    for (name, slot) in &slots {
        let last = last_success(&catalog, name);
        if slot.schedule.catch_up_due(now, last) {
            tracing::info!(source = %name, last_success = ?last.map(rfc3339::format), "catch-up: overdue at start");
            pending.push_back(name.clone());
        }
    }
    tracing::info!(
        sources = slots.len(),
        max_concurrent = config.daemon_settings().max_concurrent,
        "daemon started"
    );

    let mut catalog_file = file_id(&config.catalog_path());
    while !terminate.load(Ordering::Relaxed) {
        // A run may have moved a damaged catalog aside and made a new one:
        // follow it, or the daemon's records would go to the kept copy.
        let now_file = file_id(&config.catalog_path());
        if now_file != catalog_file {
            match lockbox_vault::run::open_catalog(&config.catalog_path()) {
                Ok(c) => {
                    tracing::info!("the catalog was replaced; reopened it");
                    catalog = c;
                    catalog_file = now_file;
                }
                Err(e) => tracing::warn!(error = %e, "could not reopen the replaced catalog"),
            }
        }
        if reload.swap(false, Ordering::Relaxed) {
            match Config::load(config_path) {
                Ok(new) => match build_slots(&new, OffsetDateTime::now_utc())
                    .and_then(|s| pin_config(config_path, &new).map(|p| (s, p)))
                {
                    Ok((new_slots, pinned)) => {
                        config = new;
                        status_server.reload(&config);
                        slots = new_slots;
                        running_config = pinned;
                        pending.retain(|s| slots.contains_key(s));
                        drills.configure(&config, OffsetDateTime::now_utc());
                        stale.reload(&config);
                        tracing::info!(sources = slots.len(), "configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "configuration reload rejected; keeping the previous configuration")
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "configuration reload rejected; keeping the previous configuration")
                }
            }
        }
        for report in reap(&mut running, &catalog, false) {
            lockbox_vault::run::notify_end(stale.notifier(), &config, &report);
        }
        drills.tick(&exe, &running_config, log_format);
        stale.tick(&config);
        let now = OffsetDateTime::now_utc();
        for (name, slot) in slots.iter_mut() {
            if now < slot.next {
                continue;
            }
            if running.contains_key(name) {
                tracing::warn!(source = %name, "previous run still going; this slot is skipped");
            } else if !pending.contains(name) {
                pending.push_back(name.clone());
            }
            slot.next = slot.schedule.next_run(now, slot.jitter);
        }
        let limit = config.daemon_settings().max_concurrent;
        note_waiting(&pending, &running, &slots, &catalog, &mut waiting, limit);
        while running.len() < limit {
            let Some(name) = pending.pop_front() else {
                break;
            };
            if running.contains_key(&name) {
                continue;
            }
            let timeout = slots.get(&name).and_then(|s| s.timeout);
            match start(&exe, &running_config, &name, log_format, timeout) {
                Ok(r) => {
                    if waiting.remove(&name).is_some()
                        && let Err(e) = catalog.clear_waiting(Some(&name))
                    {
                        tracing::warn!(source = %name, error = %e, "could not clear the waiting mark");
                    }
                    tracing::info!(source = %name, "run started");
                    running.insert(name, r);
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %format!("{e:#}"), "run could not start")
                }
            }
        }
        std::thread::sleep(TICK);
    }

    let grace = config.daemon_settings().shutdown_grace;
    tracing::info!(
        runs_in_flight = running.len(),
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new runs"
    );
    let deadline = Instant::now() + grace;
    drills.interrupt();
    while !running.is_empty() && Instant::now() < deadline {
        for report in reap(&mut running, &catalog, false) {
            lockbox_vault::run::notify_end(stale.notifier(), &config, &report);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for report in reap(&mut running, &catalog, true) {
        lockbox_vault::run::notify_end(stale.notifier(), &config, &report);
    }
    drills.finish(deadline);
    tracing::info!("daemon stopped");
    Ok(ExitCode::SUCCESS)
}

/// Logs and records each due run that no slot is free for, once when it
/// starts waiting and once more (WARN) when it has waited longer than its
/// schedule's period; `status` shows the mark.
fn note_waiting(
    pending: &VecDeque<String>,
    running: &HashMap<String, Running>,
    slots: &HashMap<String, Slot>,
    catalog: &Catalog,
    waiting: &mut HashMap<String, (OffsetDateTime, bool)>,
    limit: usize,
) {
    if running.len() < limit {
        return;
    }
    let now = OffsetDateTime::now_utc();
    for name in pending.iter().filter(|n| !running.contains_key(*n)) {
        let period = slots
            .get(name)
            .and_then(|s| s.schedule.period_at(now))
            .map_or(Duration::from_secs(86400), |p| {
                Duration::from_secs(p.whole_seconds().max(1) as u64)
            });
        let (since, warned) = waiting.entry(name.clone()).or_insert_with(|| {
            tracing::info!(
                source = %name,
                since = %rfc3339::format(now),
                max_concurrent = limit,
                busy = ?running.keys().collect::<Vec<_>>(),
                "waiting for a slot since {}",
                rfc3339::format(now)
            );
            if let Err(e) = catalog.set_waiting(name, now, period) {
                tracing::warn!(source = %name, error = %e, "could not record the waiting mark");
            }
            (now, false)
        });
        if !*warned && (now - *since).whole_seconds() as u64 > period.as_secs() {
            *warned = true;
            tracing::warn!(
                source = %name,
                since = %rfc3339::format(*since),
                period_seconds = period.as_secs(),
                "waiting for a slot since {} (longer than the schedule's period): other runs \
                 hold every slot",
                rfc3339::format(*since)
            );
        }
    }
}

/// Copies the validated config file to `state_dir/daemon.toml` (0600,
/// replaced atomically) and returns that path for the children.
fn pin_config(config_path: &Path, config: &Config) -> Result<PathBuf> {
    use std::io::Write;
    let text =
        std::fs::read(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    // The file may have changed since it was parsed: pin only what parses.
    Config::parse(
        &String::from_utf8_lossy(&text),
        &config_path.display().to_string(),
    )?;
    lockbox_vault::state::ensure_private_dir(&config.state_dir)?;
    let target = config.state_dir.join("daemon.toml");
    let mut tmp = lockbox_vault::state::private_temp_file(&config.state_dir, ".daemon-toml-")?;
    tmp.write_all(&text)?;
    tmp.persist(&target)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(target)
}

fn build_slots(config: &Config, now: OffsetDateTime) -> Result<HashMap<String, Slot>> {
    let mut slots = HashMap::new();
    for src in &config.sources {
        let Some(schedule) = src.schedule.clone() else {
            continue;
        };
        let jitter = src.jitter;
        let next = schedule.next_run(now, jitter);
        slots.insert(
            src.name.clone(),
            Slot {
                schedule,
                jitter,
                timeout: Some(src.timeout),
                next,
            },
        );
    }
    if slots.is_empty() && !drills::any_scheduled(config) {
        anyhow::bail!(UsageError::new(format!(
            "no source in {} has a `schedule`; add e.g. schedule = \"30 2 * * *\"",
            config.path.display()
        )));
    }
    Ok(slots)
}

/// Device and inode of `path`, to notice it being replaced.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn last_success(catalog: &Catalog, source: &str) -> Option<OffsetDateTime> {
    let rows = catalog.snapshots(Some(source)).ok()?;
    let last = rows.last()?;
    Some(last.started_at)
}

fn start(
    exe: &Path,
    config_path: &Path,
    source: &str,
    log_format: LogFormat,
    timeout: Option<Duration>,
) -> Result<Running> {
    let run = child::spawn(
        exe,
        config_path,
        log_format,
        &["backup", "--json", source],
        &[],
    )
    .with_context(|| format!("spawning {}", exe.display()))?;
    Ok(Running {
        // The run enforces its own timeout on the dump and records it as
        // timed out; this later deadline only catches a run stuck elsewhere.
        deadline: timeout.map(|t| run.started + t + BACKSTOP),
        started_at: OffsetDateTime::now_utc(),
        run,
    })
}

/// Collects finished runs and logs them; kills runs past their timeout, and
/// with `abort_all` every run (shutdown after the grace period).
/// Returns the runs the daemon ended (or closed for a vanished process):
/// they could not notify anyone themselves.
fn reap(
    running: &mut HashMap<String, Running>,
    catalog: &Catalog,
    abort_all: bool,
) -> Vec<RunReport> {
    let mut ended = Vec::new();
    let names: Vec<String> = running.keys().cloned().collect();
    for name in names {
        let r = running.get_mut(&name).expect("listed above");
        let timed_out = r.deadline.is_some_and(|d| Instant::now() >= d);
        if abort_all || timed_out {
            let r = running.remove(&name).expect("listed above");
            ended.push(finish_killed(&name, r, catalog, abort_all));
        } else if let Ok(Some(status)) = r.run.group.child.try_wait() {
            let mut r = running.remove(&name).expect("listed above");
            r.run.group.release();
            let pid = r.run.group.child.id();
            let started = r.started_at;
            finish(&name, r, status.code());
            // A run that died without closing its row (crashed, killed by
            // someone else) is closed now, not left "running".
            match catalog.end_running(
                pid,
                RunOutcome::Interrupted,
                lockbox_vault::catalog::PROCESS_GONE,
            ) {
                Ok(0) => {}
                Ok(_) => {
                    tracing::error!(source = %name, "the run's process ended without recording an outcome; recorded as interrupted");
                    ended.push(killed_report(
                        name.clone(),
                        started,
                        RunOutcome::Interrupted,
                        lockbox_vault::catalog::PROCESS_GONE.into(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "could not check the run's record")
                }
            }
        }
    }
    ended
}

fn killed_report(
    source: String,
    started_at: OffsetDateTime,
    outcome: RunOutcome,
    error: String,
) -> RunReport {
    RunReport {
        kind: lockbox_vault::catalog::RunKind::Backup,
        source,
        outcome,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        snapshot: None,
        input_bytes: None,
        added_bytes: None,
        error: Some(error),
    }
}

fn finish_killed(name: &str, mut r: Running, catalog: &Catalog, shutdown: bool) -> RunReport {
    // SIGKILL: the run cannot record anything now; its guardian takes the
    // dump tool's group, and the row is closed here.
    r.run.group.kill_group();
    let _ = r.run.group.child.wait();
    r.run.group.release();
    let pid = r.run.group.child.id();
    let started_at = r.started_at;
    let seconds = r.run.collect().seconds;
    let (outcome, reason) = if shutdown {
        (
            RunOutcome::Aborted,
            "aborted: the daemon shut down before the run finished".to_string(),
        )
    } else {
        (
            RunOutcome::TimedOut,
            format!(
                "timed out after {seconds:.0}s (the source's `timeout`); stopped by the daemon"
            ),
        )
    };
    if let Err(e) = catalog.end_running(pid, outcome, &reason) {
        tracing::warn!(source = %name, error = %e, "could not record the run's end");
    }
    tracing::warn!(
        source = %name,
        outcome = outcome.as_str(),
        seconds,
        reason = %reason,
        "run finished without a snapshot"
    );
    killed_report(name.to_string(), started_at, outcome, reason)
}

fn finish(name: &str, r: Running, code: Option<i32>) {
    let out = r.run.collect();
    let seconds = out.seconds;
    match code {
        Some(0) => {
            let summary: Option<BackupSummary> = out.report();
            tracing::info!(
                source = %name,
                outcome = "success",
                snapshot = %summary.as_ref().map_or("?", |s| s.short_id.as_str()),
                input_bytes = summary.as_ref().map_or(0, |s| s.input_bytes),
                added_bytes = summary.as_ref().map_or(0, |s| s.added_bytes),
                seconds,
                "run finished"
            );
        }
        Some(c) if c == i32::from(error::exit_code(ErrorClass::Busy)) => {
            tracing::warn!(
                source = %name,
                outcome = "busy",
                seconds,
                "run skipped: another run holds the source's lock"
            );
        }
        _ => {
            tracing::error!(
                source = %name,
                outcome = "failed",
                exit = ?code,
                seconds,
                error = %out.stderr_tail(8),
                "run finished"
            );
        }
    }
}
