//! `lockbox config check`: the config as Lockbox understands it, checked on
//! this host without touching storage or any database. Loading the file
//! already refused every syntax, key and value error (exit 2, naming the
//! key); this adds what only the host can answer (are the programs, files
//! and identities the config names there?) and prints what the config will
//! do, so a typo in a schedule shows as a wrong date, not a missed backup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::{Config, DbFlavor, PasswordFrom, SourceConfig, SourceKind};
use lockbox_vault::health::human_duration;
use lockbox_vault::rfc3339;
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::ConfigCheckArgs;
use crate::error::UsageError;
use crate::render::print_json;

#[derive(Serialize)]
struct Summary {
    config: PathBuf,
    state_dir: PathBuf,
    repository: String,
    deletion_proof: bool,
    lock_days: u32,
    recipients: usize,
    timezone: String,
    sources: Vec<SourceSummary>,
    notify: Vec<NotifySummary>,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct SourceSummary {
    name: String,
    kind: &'static str,
    /// What is dumped, in words: a database, a file, a program.
    what: String,
    schedule: Option<String>,
    next_runs: Vec<String>,
    max_backup_age_seconds: u64,
    max_verified_age_seconds: u64,
    timeout_seconds: u64,
    drill: Option<String>,
}

#[derive(Serialize)]
struct NotifySummary {
    entry: String,
    kind: &'static str,
    target: String,
    on: Vec<&'static str>,
    sources: Option<Vec<String>>,
}

pub fn run(config: Config, args: ConfigCheckArgs) -> Result<ExitCode> {
    let summary = summarize(&config, OffsetDateTime::now_utc());
    if args.json {
        print_json(&summary)?;
    } else {
        print_human(&summary);
    }
    if summary.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(UsageError::new(format!(
            "{}: {} problem{} (listed above)",
            config.path.display(),
            summary.problems.len(),
            if summary.problems.len() == 1 { "" } else { "s" }
        ))
        .into())
    }
}

fn summarize(config: &Config, now: OffsetDateTime) -> Summary {
    let mut problems = Vec::new();
    let sources = config
        .sources
        .iter()
        .map(|s| source_summary(config, s, now, &mut problems))
        .collect();
    let notify = config
        .notify
        .iter()
        .filter_map(|n| n.target())
        .map(|t| {
            let (target, secret_file) = match &t.sink {
                lockbox_vault::config::Sink::Webhook { url, secret, .. } => (
                    format!("{}/…", url.label()),
                    match secret {
                        Some(lockbox_vault::config::SecretFrom::File(f)) => Some(f.clone()),
                        _ => None,
                    },
                ),
                lockbox_vault::config::Sink::Ping { url, .. } => {
                    (format!("{}/…", url.label()), None)
                }
                lockbox_vault::config::Sink::Command { argv } => {
                    if let Some(problem) = program_problem(&argv[0]) {
                        problems.push(format!("{}: {problem}", t.key));
                    }
                    (argv[0].clone(), None)
                }
            };
            if let Some(file) = secret_file
                && let Some(problem) = file_problem(&file)
            {
                problems.push(format!("{}.secret_file: {problem}", t.key));
            }
            NotifySummary {
                entry: t.key.clone(),
                kind: t.sink.kind_name(),
                target,
                on: t.on.iter().map(|e| e.as_str()).collect(),
                sources: t.sources.as_ref().map(|s| s.iter().cloned().collect()),
            }
        })
        .collect();
    Summary {
        config: config.path.clone(),
        state_dir: config.state_dir.clone(),
        repository: config.repository.url.to_string(),
        deletion_proof: config.repository.is_s3(),
        lock_days: config.repository.lock_days,
        recipients: config.repository.recipients.len(),
        timezone: config.daemon.timezone.to_string(),
        sources,
        notify,
        problems,
    }
}

fn source_summary(
    config: &Config,
    s: &SourceConfig,
    now: OffsetDateTime,
    problems: &mut Vec<String>,
) -> SourceSummary {
    let mut problem = |p: String| problems.push(format!("source {}: {p}", s.name));
    let (kind, what) = match s.kind() {
        SourceKind::Command { command, .. } => {
            if let Some(p) = program_problem(&command[0]) {
                problem(p);
            }
            ("command", format!("the output of {}", command[0]))
        }
        SourceKind::Sqlite { path } => {
            if let Some(p) = file_problem(path) {
                problem(p);
            }
            ("sqlite", format!("the SQLite database {}", path.display()))
        }
        SourceKind::Database(db) => {
            if let Some(p) = program_problem(&db.dump_tool) {
                problem(format!(
                    "{p} (install {})",
                    match db.flavor {
                        DbFlavor::Postgres => "postgresql-client",
                        DbFlavor::Mariadb | DbFlavor::Mysql => "mariadb-client",
                    }
                ));
            }
            if let Some(PasswordFrom::File(f)) = &db.password
                && let Some(p) = file_problem(f)
            {
                problem(format!("password_file: {p}"));
            }
            let server = match (&db.url, &db.host) {
                (Some(url), _) => url.clone(),
                (None, host) => format!(
                    "{}{}",
                    host.as_deref().unwrap_or("the default server"),
                    db.port.map(|p| format!(":{p}")).unwrap_or_default()
                ),
            };
            (
                db.flavor.kind_name(),
                format!(
                    "database {} on {server} as {}, with {}",
                    db.database.as_deref().unwrap_or("(from the URL)"),
                    db.user.as_deref().unwrap_or("the tool's default user"),
                    db.dump_tool
                ),
            )
        }
    };
    let thresholds = s.thresholds(config.health);
    let next_runs = s
        .schedule
        .as_ref()
        .map(|sched| {
            let mut at = now;
            let mut runs = Vec::new();
            while runs.len() < 3 {
                let Some(next) = sched.next_after(at) else {
                    break;
                };
                runs.push(rfc3339::format(next));
                at = next;
            }
            runs
        })
        .unwrap_or_default();
    let drill = s.drill.as_ref().map(|d| {
        if let Some(identity) = &d.identity
            && let Some(p) = file_problem(identity)
        {
            problems.push(format!("source {}: drill.identity: {p}", s.name));
        }
        match (&d.target, &d.schedule) {
            (Some(t), Some(sched)) => format!("into {t}, on \"{}\"", sched.text()),
            (Some(t), None) => format!("into {t}, by hand"),
            (None, Some(sched)) => format!("scratch file, on \"{}\"", sched.text()),
            (None, None) => "scratch file, by hand".to_string(),
        }
    });
    SourceSummary {
        name: s.name.clone(),
        kind,
        what,
        schedule: s.schedule.as_ref().map(|sc| sc.text().to_string()),
        next_runs,
        max_backup_age_seconds: thresholds.max_backup_age.as_secs(),
        max_verified_age_seconds: thresholds.max_verified_age.as_secs(),
        timeout_seconds: s.timeout.as_secs(),
        drill,
    }
}

/// Why `program` cannot be run from here, if it cannot: a path that is not
/// there, or a name not on `PATH`.
fn program_problem(program: &str) -> Option<String> {
    if program.contains('/') {
        return file_problem(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    (!found).then(|| format!("{program} is not on PATH"))
}

fn file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(_) => None,
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}

fn print_human(s: &Summary) {
    println!("config {}", s.config.display());
    println!("  state_dir   {}", s.state_dir.display());
    println!(
        "  repository  {} ({}), lock_days {}, {} recipient{}",
        s.repository,
        if s.deletion_proof {
            "S3 Object Lock"
        } else {
            "local directory: not deletion-proof"
        },
        s.lock_days,
        s.recipients,
        if s.recipients == 1 { "" } else { "s" }
    );
    println!("  schedules in {}", s.timezone);
    if s.sources.is_empty() {
        println!("  no sources (a restore-only host needs none)");
    }
    for src in &s.sources {
        println!("source {} ({}): {}", src.name, src.kind, src.what);
        match &src.schedule {
            Some(sched) => println!(
                "  schedule    \"{sched}\": next {}",
                if src.next_runs.is_empty() {
                    "never".to_string()
                } else {
                    src.next_runs.join(", ")
                }
            ),
            None => println!("  schedule    none (run by hand, cron or a timer)"),
        }
        println!(
            "  health      CRIT after {} without a backup, WARN after {} without a verified one; \
             a run stops after {}",
            human_duration(src.max_backup_age_seconds),
            human_duration(src.max_verified_age_seconds),
            human_duration(src.timeout_seconds),
        );
        if let Some(drill) = &src.drill {
            println!("  drill       {drill}");
        }
    }
    for n in &s.notify {
        println!(
            "{} ({}): {} on {}{}",
            n.entry,
            n.kind,
            n.target,
            n.on.join(", "),
            n.sources
                .as_ref()
                .map(|s| format!(" of {}", s.join(", ")))
                .unwrap_or_default()
        );
    }
    if s.notify.is_empty() {
        println!("notify: none (failures show in status, check and metrics only)");
    }
    if s.problems.is_empty() {
        println!("OK");
    } else {
        for p in &s.problems {
            println!("PROBLEM {p}");
        }
    }
}
