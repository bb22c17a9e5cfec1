//! The status page the daemon serves at `/`: server-rendered HTML, no
//! script, refreshing itself every minute.

use std::fmt::Write as _;

use lockbox_vault::health::{Health, SourceStatus, StatusReport};

use super::{ago, human_bytes};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "2026-11-21 22:43 UTC": a person does not need nanoseconds.
fn when(rfc3339: &str) -> String {
    match lockbox_vault::rfc3339::parse(rfc3339) {
        Some(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        None => escape(rfc3339),
    }
}

fn colour(h: Health) -> &'static str {
    match h {
        Health::Ok => "#1a7f37",
        Health::Warn => "#b26a00",
        Health::Crit => "#c62828",
    }
}

/// The status page: one card per source, worst first.
pub fn page(report: &StatusReport) -> String {
    let mut sources: Vec<&SourceStatus> = report.sources.iter().collect();
    sources.sort_by_key(|s| std::cmp::Reverse(s.health));
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="60">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lockbox: {overall}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #f6f7f9; color: #1b1f24; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .2rem; }}
.meta {{ color: #57606a; margin-bottom: 1rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; }}
.card {{ background: #fff; border-radius: 6px; border-left: 8px solid; padding: .8rem 1rem; box-shadow: 0 1px 2px #0002; }}
.card h2 {{ font-size: 1.15rem; margin: 0 0 .5rem; display: flex; justify-content: space-between; }}
.badge {{ color: #fff; border-radius: 4px; padding: 0 .5rem; font-size: 1rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .15rem .8rem; margin: 0; }}
dt {{ color: #57606a; }} dd {{ margin: 0; }}
.verified {{ font-size: 1.1rem; font-weight: 600; }}
ul {{ margin: .5rem 0 0; padding-left: 1.2rem; }}
.err {{ color: #c62828; font-family: ui-monospace, monospace; font-size: .85rem; white-space: pre-wrap; }}
</style></head><body>
<h1>Lockbox <span class="badge" style="background:{overall_colour}">{overall}</span></h1>
<div class="meta">{n} source(s) · generated {generated} · refreshes every minute · <a href="/status">JSON</a> · <a href="/metrics">metrics</a></div>
<div class="grid">
"#,
        overall = report.health.as_str(),
        overall_colour = colour(report.health),
        n = report.sources.len(),
        generated = when(&report.generated_at),
    );
    if sources.is_empty() {
        html.push_str("<p>No sources: add a [[source]] to the config.</p>\n");
    }
    for s in sources {
        card(&mut html, s);
    }
    html.push_str("</div>\n</body></html>\n");
    html
}

fn card(html: &mut String, s: &SourceStatus) {
    let c = colour(s.health);
    let _ = write!(
        html,
        r#"<section class="card" id="source-{name}" style="border-color:{c}">
<h2><span class="name">{name}{note}</span><span class="badge health" style="background:{c}">{health}</span></h2>
<dl>
"#,
        name = escape(&s.source),
        note = if s.configured {
            ""
        } else {
            " <small>(not in config)</small>"
        },
        health = s.health.as_str(),
    );
    let mut item = |label: &str, class: &str, value: String| {
        let _ = writeln!(
            html,
            "<dt>{label}</dt><dd class=\"{class}\">{value}</dd>",
            label = escape(label),
        );
    };
    item(
        "Last verified backup",
        "verified",
        match &s.last_verified {
            Some(v) => format!(
                "{} <small>({} of {}, {})</small>",
                escape(&ago(v.age_seconds)),
                v.kind.as_str(),
                escape(&v.snapshot[..8.min(v.snapshot.len())]),
                when(&v.snapshot_started_at)
            ),
            None => "never".into(),
        },
    );
    item(
        "Last backup",
        "backup",
        match &s.last_backup {
            Some(b) => format!(
                "{} <small>({}, took {:.0}s)</small>",
                escape(&ago(b.age_seconds)),
                when(&b.started_at),
                b.duration_seconds
            ),
            None => "never".into(),
        },
    );
    item(
        "Last run",
        "run",
        match &s.last_run {
            Some(r) => format!(
                "{} <small>({})</small>",
                escape(&r.outcome),
                when(r.finished_at.as_deref().unwrap_or(&r.started_at))
            ),
            None => "none".into(),
        },
    );
    if let Some(e) = &s.last_error {
        item(
            "Last error",
            "err",
            format!(
                "{} ({}): {}",
                when(&e.at),
                escape(&e.outcome),
                escape(e.error.as_deref().unwrap_or("no message"))
            ),
        );
    }
    item(
        "Last drill",
        "drill",
        match &s.last_drill {
            Some(d) => format!(
                "{} <small>({}{})</small>{}",
                if d.passed { "passed" } else { "FAILED" },
                when(&d.finished_at),
                d.restore_seconds
                    .map(|r| format!(", restore {r:.1}s"))
                    .unwrap_or_default(),
                d.detail
                    .as_deref()
                    .filter(|_| !d.passed)
                    .map(|x| format!(": {}", escape(x)))
                    .unwrap_or_default()
            ),
            None => "never".into(),
        },
    );
    item(
        "Snapshots",
        "size",
        format!(
            "{}{}",
            s.snapshots,
            match (s.logical_bytes, s.stored_bytes) {
                (Some(l), Some(st)) => format!(
                    " · newest {} (stored {}){}",
                    human_bytes(l),
                    human_bytes(st),
                    s.dedup_ratio
                        .map(|r| format!(" · dedup {r:.1}x"))
                        .unwrap_or_default()
                ),
                _ => String::new(),
            }
        ),
    );
    if let Some(r) = &s.retain_until_min {
        item("Locked until (earliest)", "retain", when(r));
    }
    item("Tamper events", "tamper", s.tamper_events.to_string());
    html.push_str("</dl>\n");
    if !s.reasons.is_empty() {
        html.push_str("<ul class=\"reasons\">\n");
        for r in &s.reasons {
            let _ = writeln!(html, "<li>{}</li>", escape(r));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</section>\n");
}
