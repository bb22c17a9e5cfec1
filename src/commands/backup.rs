use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use lockbox_vault::backup::{self, BackupSummary};
use lockbox_vault::config::Config;
use lockbox_vault::format::valid_source_name;
use lockbox_vault::source::{self, DumpStream};

use super::{BackupHost, backup_options, human_bytes, print_json};
use crate::cli::BackupArgs;
use crate::progress::Bar;

pub fn run(config: &Config, args: BackupArgs) -> Result<ExitCode> {
    let mut host = BackupHost::open(config)?;
    let stream = match (&args.source, &args.stdin) {
        (_, Some(name)) => {
            if !valid_source_name(name) {
                return Err(anyhow!(
                    "{name:?} is not a valid source name: use 1-64 of A-Z a-z 0-9 . _ -"
                ));
            }
            if std::io::stdin().is_terminal() {
                return Err(anyhow!(
                    "--stdin reads the dump from standard input, which is a terminal; \
                     pipe a dump in, e.g. `pg_dump mydb | lockbox backup --stdin {name}`"
                ));
            }
            DumpStream::from_reader(name, "stdin", Box::new(std::io::stdin()))
        }
        (Some(name), None) => {
            let src = config.source(name).ok_or_else(|| {
                let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
                anyhow!(
                    "no source named {name:?} in {}; configured: {}",
                    config.path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })?;
            source::open(src, &config.tmp_dir())?
        }
        (None, None) => unreachable!("clap requires a source or --stdin"),
    };
    let name = stream.source_name.clone();
    tracing::info!(source = %name, "backup started");
    let bar = Bar::backup();
    let result = backup::run(
        &host.repo,
        &mut host.catalog,
        stream,
        &backup_options(config),
        &bar,
    );
    bar.finish();
    let summary = result
        .with_context(|| format!("backup of source {name} failed; no snapshot was written"))?;
    tracing::info!(
        source = %summary.source,
        snapshot = %summary.short_id,
        input_bytes = summary.input_bytes,
        added_bytes = summary.added_bytes,
        seconds = summary.seconds,
        "backup finished"
    );
    if args.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &BackupSummary) {
    let rate = s.input_bytes as f64 / s.seconds.max(1e-9) / (1024.0 * 1024.0);
    println!(
        "snapshot {} of {}: {} read in {:.1}s ({rate:.0} MiB/s), {} chunks ({} new, {} reused), \
         {} added to the repository, locked until {}",
        s.short_id,
        s.source,
        human_bytes(s.input_bytes),
        s.seconds,
        s.chunks,
        s.new_chunks,
        s.reused_chunks,
        human_bytes(s.added_bytes),
        s.retain_until
    );
}
