use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lockbox_restore::{RestoreOptions, RestoreReport};
use lockbox_vault::config::Config;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository;

use super::{human_bytes, open_read, print_json};
use crate::cli::RestoreArgs;
use crate::progress::Bar;

pub fn run(config: &Config, args: RestoreArgs) -> Result<ExitCode> {
    let backend = open_read(config)?;
    let identities = Identities::from_file(&args.identity)?;
    let snap = repository::find_snapshot(backend.as_ref(), &args.source, &args.snapshot)?;
    let opts = RestoreOptions::default();
    let to_stdout = args.output.as_os_str() == "-";
    let context = || format!("restore of snapshot {} ({})", snap.id.short(), args.source);
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
            &args.output,
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
        report_human(&report, &args);
    }
    Ok(ExitCode::SUCCESS)
}

fn report_human(r: &RestoreReport, args: &RestoreArgs) {
    let rate = r.bytes as f64 / r.seconds.max(1e-9) / (1024.0 * 1024.0);
    super::note!(
        "restored and verified snapshot {} of {}: {} in {} chunks, {:.1}s ({rate:.0} MiB/s){}",
        &r.snapshot[..8],
        r.source,
        human_bytes(r.bytes),
        r.chunks,
        r.seconds,
        if args.output.as_os_str() == "-" {
            String::new()
        } else {
            format!(" -> {}", args.output.display())
        }
    );
}
