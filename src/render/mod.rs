//! How results look to people and machines: sizes, ages, JSON on stdout,
//! the Prometheus exposition and the daemon's status page. Commands and the
//! daemon share these; none of them decides anything.

pub mod metrics;
pub mod page;

use anyhow::Result;
use lockbox_vault::health::human_duration;

/// A size in binary units, one decimal (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Pretty JSON on stdout (the `--json` contract: fields may be added).
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A past moment as an age (`3h 5m ago`); the future counts as now.
pub fn ago(seconds: i64) -> String {
    format!("{} ago", human_duration(seconds.max(0) as u64))
}
