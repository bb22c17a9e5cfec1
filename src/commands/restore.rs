use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lockbox_restore::load::{self, DbTarget, LoadOptions, LoadReport};
use lockbox_restore::{RestoreOptions, RestoreReport};
use lockbox_vault::config::Config;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository;

use lockbox_vault::access::open_read;

use crate::cli::RestoreArgs;
use crate::progress::Bar;
use crate::render::{human_bytes, print_json};

pub fn run(config: &Config, args: RestoreArgs) -> Result<ExitCode> {
    if let Some(url) = &args.into {
        lockbox_vault::sys::set_stop_note(
            "the load was stopped; the target database may hold part of the dump",
        );
        return run_into(config, &args, url);
    }
    lockbox_vault::sys::set_stop_note(if args.output.as_deref() == Some(Path::new("-")) {
        "the output on stdout is incomplete"
    } else {
        "no output written"
    });
    let output = args
        .output
        .as_deref()
        .expect("clap requires --output or --into");
    let backend = open_read(config)?;
    let identities = Identities::from_file(&args.identity)?;
    let snap = repository::find_snapshot(backend.as_ref(), args.source.as_deref(), &args.snapshot)?;
    let opts = RestoreOptions::default();
    let to_stdout = output.as_os_str() == "-";
    let context = || format!("restore of snapshot {} ({})", snap.id.short(), snap.source);
    let bar = Bar::restore();
    let result = if to_stdout {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        lockbox_restore::restore_to_writer(
            backend.as_ref(),
            &identities,
            &snap,
            &mut out,
            &opts,
            &bar,
        )
        .map_err(anyhow::Error::from)
        .and_then(|r| out.flush().map(|_| r).map_err(Into::into))
    } else {
        lockbox_restore::restore_to_file(
            backend.as_ref(),
            &identities,
            &snap,
            output,
            args.force,
            &opts,
            &bar,
        )
        .map_err(Into::into)
    };
    bar.finish();
    let report = result.with_context(context)?;
    super::record_tampering(config, backend.as_ref(), &report.tampering);
    if args.json {
        print_json(&report)?;
    } else {
        report_human(&report, output);
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore --into URL`: verified restore, then load into a database.
fn run_into(config: &Config, args: &RestoreArgs, url: &str) -> Result<ExitCode> {
    let target = DbTarget::parse(url)?;
    load::guard_sources(&config.sources, &target, args.overwrite_source.as_deref())?;
    // Credential files and the verified dump go to the state directory's
    // private tmp, never the system temp directory.
    let login = load::login(args.password_file.as_deref(), &config.tmp_dir())?;
    let backend = open_read(config)?;
    let identities = Identities::from_file(&args.identity)?;
    let snap = repository::find_snapshot(backend.as_ref(), args.source.as_deref(), &args.snapshot)?;
    let opts = LoadOptions {
        force: args.force,
        restore: RestoreOptions::default(),
    };
    let bar = Bar::restore();
    let result = load::restore_into(
        backend.as_ref(),
        &identities,
        &snap,
        &target,
        &login,
        &opts,
        &bar,
    );
    bar.finish();
    let report = result.with_context(|| {
        format!(
            "restore of snapshot {} ({}) into {target}",
            snap.id.short(),
            snap.source
        )
    })?;
    super::record_tampering(config, backend.as_ref(), &report.tampering);
    if args.json {
        print_json(&report)?;
    } else {
        report_loaded(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn report_human(r: &RestoreReport, output: &Path) {
    let rate = r.bytes as f64 / r.seconds.max(1e-9) / (1024.0 * 1024.0);
    super::note!(
        "restored and verified snapshot {} of {}: {} in {} chunks, {:.1}s ({rate:.0} MiB/s){}",
        &r.snapshot[..8],
        r.source,
        human_bytes(r.bytes),
        r.chunks,
        r.seconds,
        if output.as_os_str() == "-" {
            String::new()
        } else {
            format!(" -> {}", output.display())
        }
    );
}

fn report_loaded(r: &LoadReport) {
    super::note!(
        "restored and verified snapshot {} of {} ({} in {} chunks, {:.1}s), then loaded into {}{} in {:.1}s",
        &r.snapshot[..8],
        r.source,
        human_bytes(r.bytes),
        r.chunks,
        r.restore_seconds,
        r.target,
        if r.created { " (created)" } else { "" },
        r.load_seconds
    );
}
