//! `lockbox status` (a table, or JSON) and `lockbox check` (monitoring-plugin
//! output and exit codes). Both read the local catalog only; the verdicts
//! come from `lockbox_vault::health`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::Config;
use lockbox_vault::health::{self, Health, SourceStatus, StatusReport};
use lockbox_vault::prune::audit::LastPrune;

use crate::cli::{CheckArgs, StatusArgs};
use crate::render::{ago, human_bytes};

/// The last prune recorded in the catalog (synced from the repository's
/// audit records).
fn last_prune(config: &Config) -> Result<Option<LastPrune>> {
    let path = config.catalog_path();
    Ok(match health::open_catalog(&path)? {
        Some(c) => c.last_prune()?,
        None => None,
    })
}

pub fn run(config: &Config, args: StatusArgs) -> Result<ExitCode> {
    let report = health::load_report(config, args.source.as_deref())?;
    let pruned = last_prune(config)?;
    let text = if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["last_prune"] = serde_json::to_value(&pruned)?;
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut t = table(&report, colour);
        if let Some(p) = &pruned {
            t.push_str(&format!(
                "\nlast prune: {} on {}: {} snapshot(s), {} object version(s), {} deleted{} \
                 (plan {})\n",
                p.finished_at,
                p.host,
                p.snapshots_deleted,
                p.objects_deleted,
                human_bytes(p.bytes_deleted),
                if p.objects_refused > 0 {
                    format!(", {} refused by storage", p.objects_refused)
                } else {
                    String::new()
                },
                &p.plan_digest[..16.min(p.plan_digest.len())]
            ));
        }
        t
    };
    // A closed pipe (`| head`) is an error main() handles quietly.
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn paint(text: &str, health: Health, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match health {
        Health::Ok => "32",
        Health::Warn => "33",
        Health::Crit => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The aligned table of `lockbox status`, then the reasons of every source
/// that is not OK.
fn table(report: &StatusReport, colour: bool) -> String {
    if report.sources.is_empty() {
        return "no sources: add a [[source]] to the config\n".into();
    }
    let header = [
        "SOURCE",
        "HEALTH",
        "LAST BACKUP",
        "LAST RUN",
        "LAST VERIFIED",
        "SNAPSHOTS",
        "SIZE",
        "STORED",
        "DEDUP",
        "LOCKED UNTIL (EARLIEST)",
        "TAMPER",
    ];
    let rows: Vec<[String; 11]> = report.sources.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers align right, text left.
    let right = [
        false, false, false, false, false, true, true, true, true, false, true,
    ];
    let line = |cells: &[String], health: Option<Health>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            let shown = match (i, health) {
                (1, Some(h)) => paint(cell, h, colour),
                _ => cell.clone(),
            };
            if i > 0 {
                out.push_str("  ");
            }
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(&shown);
            } else {
                out.push_str(&shown);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&header.map(String::from), None);
    for (r, s) in rows.iter().zip(&report.sources) {
        out.push_str(&line(r, Some(s.health)));
    }
    // Every source carries the catalog's warning; it is shown once.
    let catalog_warning = report
        .repository
        .catalog_rebuilt
        .as_ref()
        .and_then(|c| c.warning.as_deref());
    let troubled: Vec<&SourceStatus> = report
        .sources
        .iter()
        .filter(|s| s.health != Health::Ok)
        .collect();
    if !troubled.is_empty() {
        out.push('\n');
        if let Some(w) = catalog_warning {
            out.push_str(&format!(
                "{} catalog: {w}\n",
                paint("WARN", Health::Warn, colour)
            ));
        }
        for s in troubled {
            for reason in s
                .reasons
                .iter()
                .filter(|r| Some(r.as_str()) != catalog_warning)
            {
                out.push_str(&format!(
                    "{} {}: {reason}\n",
                    paint(s.health.as_str(), s.health, colour),
                    s.source
                ));
            }
        }
    }
    out
}

fn row(s: &SourceStatus) -> [String; 11] {
    let dash = || "-".to_string();
    [
        if s.configured {
            s.source.clone()
        } else {
            format!("{} (not in config)", s.source)
        },
        s.health.as_str().to_string(),
        s.last_backup
            .as_ref()
            .map_or_else(|| "never".into(), |b| ago(b.age_seconds)),
        s.last_run.as_ref().map_or_else(dash, |r| r.outcome.clone()),
        s.last_verified.as_ref().map_or_else(
            || "never".into(),
            |v| format!("{} ({})", ago(v.age_seconds), v.kind.as_str()),
        ),
        s.snapshots.to_string(),
        s.logical_bytes.map_or_else(dash, human_bytes),
        s.stored_bytes.map_or_else(dash, human_bytes),
        s.dedup_ratio.map_or_else(dash, |r| format!("{r:.1}x")),
        s.retain_until_min.clone().unwrap_or_else(dash),
        s.tamper_events.to_string(),
    ]
}

pub(crate) const PLUGIN_OK: u8 = 0;
pub(crate) const PLUGIN_UNKNOWN: u8 = 3;

/// `lockbox check`: never fails with Lockbox's own exit codes; a failure of
/// the check itself is UNKNOWN.
pub fn check(config: Result<Config>, args: CheckArgs) -> ExitCode {
    let report = config.and_then(|c| Ok(health::load_report(&c, args.source.as_deref())?));
    let report = match report {
        Ok(r) if r.sources.is_empty() => {
            println!("LOCKBOX UNKNOWN - no sources configured or backed up");
            return ExitCode::from(PLUGIN_UNKNOWN);
        }
        Ok(r) => r,
        Err(e) => {
            println!("LOCKBOX UNKNOWN - {}", one_line(&format!("{e:#}")));
            return ExitCode::from(PLUGIN_UNKNOWN);
        }
    };
    let count = |h: Health| report.sources.iter().filter(|s| s.health == h).count();
    let word = match report.health {
        Health::Ok => "OK",
        Health::Warn => "WARNING",
        Health::Crit => "CRITICAL",
    };
    println!(
        "LOCKBOX {word} - {} critical, {} warning, {} ok",
        count(Health::Crit),
        count(Health::Warn),
        count(Health::Ok)
    );
    for s in &report.sources {
        let detail = if s.reasons.is_empty() {
            let backup = s.last_backup.as_ref().map(|b| ago(b.age_seconds));
            let verified = s.last_verified.as_ref().map(|v| ago(v.age_seconds));
            format!(
                "last backup {}, last verified backup {}",
                backup.unwrap_or_else(|| "never".into()),
                verified.unwrap_or_else(|| "never".into())
            )
        } else {
            s.reasons.join("; ")
        };
        println!("{} {}: {}", s.health.as_str(), s.source, one_line(&detail));
    }
    ExitCode::from(PLUGIN_OK + report.health.code())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        let config = Config::parse(
            "state_dir = \"/nonexistent\"\n[repository]\nurl = \"file:///nonexistent\"\n\
             recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
             lock_days = 3\n[[source]]\nname = \"a-long-source-name\"\nkind = \"sqlite\"\npath = \"/x.db\"\n\
             [[source]]\nname = \"b\"\nkind = \"sqlite\"\npath = \"/y.db\"\n",
            "t.toml",
        )
        .unwrap();
        health::report(&config, None, time::OffsetDateTime::now_utc()).unwrap()
    }

    #[test]
    fn table_is_aligned_and_coloured_only_when_asked() {
        let plain = table(&report(), false);
        assert!(!plain.contains('\x1b'), "{plain}");
        let lines: Vec<&str> = plain.lines().collect();
        let col = lines[0].find("HEALTH").unwrap();
        assert_eq!(&lines[1][col..col + 4], "CRIT", "{plain}");
        assert_eq!(&lines[2][col..col + 4], "CRIT", "{plain}");
        assert!(plain.contains("CRIT b: never backed up"), "{plain}");

        let coloured = table(&report(), true);
        assert!(coloured.contains("\x1b[1;31mCRIT\x1b[0m"), "{coloured:?}");
        // Colour codes do not shift the columns.
        let strip = coloured.replace("\x1b[1;31m", "").replace("\x1b[0m", "");
        assert_eq!(strip, plain);
    }
}
