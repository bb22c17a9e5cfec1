//! `lockbox metrics [--textfile PATH]`: the status as Prometheus metrics, on
//! stdout or replacing a node_exporter textfile.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lockbox_vault::config::Config;
use lockbox_vault::{health, state};

use crate::cli::MetricsArgs;
use crate::render::metrics;

pub fn run(config: &Config, args: MetricsArgs) -> Result<ExitCode> {
    let report = health::load_report(config, None)?;
    let counts = health::notification_counts(&config.catalog_path())?;
    let text = metrics::encode(&report, &counts)?;
    match &args.textfile {
        // Readable by all: node_exporter usually runs as another user, and
        // the metrics hold no secret. The temporary name does not end in
        // `.prom`, so node_exporter skips it.
        Some(path) => state::replace_file(path, text.as_bytes(), 0o644)
            .with_context(|| format!("replacing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
