//! A very large dump (20 GiB by default) streamed through `backup --stdin`
//! into a local vault and restored to a pipe: peak RSS of each stays within
//! the foundation's bound (150 MiB, issue 2), whatever the input size, and
//! the restored stream is byte-identical to what went in.
//!
//! Ignored by default (minutes of CPU and a few GiB of disk); run with
//!
//! ```text
//! cargo test --release --test it large_stream:: -- --ignored --nocapture
//! LOCKBOX_LARGE_GIB=4 cargo test --release --test it large_stream:: -- --ignored --nocapture
//! ```
//!
//! The generated rows are fresh all the way (a row counter), so dedup does
//! not hide the work, and compress about like a text dump, so the vault
//! needs roughly a tenth of the input on disk.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Vault, skip};

/// The foundation's memory target: peak RSS ≤ 150 MiB at any input size.
const RSS_BOUND_KIB: i64 = 150 * 1024;

/// Deterministic dump-like rows, generated on the fly: `fill` refills `buf`
/// with the next bytes of the stream.
struct Rows {
    n: u64,
    seed: u64,
    pending: Vec<u8>,
}

impl Rows {
    fn new() -> Self {
        Self {
            n: 0,
            seed: 0x2545_f491_4f6c_dd1d,
            pending: Vec::new(),
        }
    }

    /// Appends one row.
    fn row(&mut self) {
        self.n += 1;
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let s = self.seed;
        self.pending.extend_from_slice(
            format!(
                "{}\tcustomer-{}\t{}.{:02}\t2026-11-{:02}\tnote {:04x}\n",
                self.n,
                s % 9973,
                s % 100_000,
                s % 100,
                s % 28 + 1,
                s >> 52
            )
            .as_bytes(),
        );
    }

    /// Fills `buf` completely with the next bytes of the stream.
    fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            if self.pending.is_empty() {
                for _ in 0..1024 {
                    self.row();
                }
            }
            let n = (buf.len() - at).min(self.pending.len());
            buf[at..at + n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            at += n;
        }
    }
}

/// `cmd` run under GNU time, which writes the command's own peak RSS (KiB)
/// to `report` when it exits. Measured per command, not with
/// `getrusage(RUSAGE_CHILDREN)`: in the shared test binary that maximum
/// would include every other test's children.
fn under_time(time: &Path, cmd: &Command, report: &Path) -> Command {
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    timed
}

/// The peak RSS (KiB) GNU time reported: its last line (a failed command's
/// exit status comes before it).
fn peak_rss_kib(report: &Path) -> i64 {
    let text = std::fs::read_to_string(report).unwrap();
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {}: {text:?}", report.display()))
}

#[test]
#[ignore = "20 GiB: minutes of CPU; run by hand (see the module doc)"]
fn twenty_gib_stream_keeps_peak_rss_bounded() {
    let gib: u64 = std::env::var("LOCKBOX_LARGE_GIB")
        .ok()
        .map(|v| v.parse().expect("LOCKBOX_LARGE_GIB is a whole number"))
        .unwrap_or(20);
    let total = gib << 30;
    let Some(time) = skip::tool("/usr/bin/time", "time") else {
        return;
    };
    let v = Vault::new("");
    let backup_report = v.path().join("backup.rss");
    let restore_report = v.path().join("restore.rss");
    let block = 1 << 20;

    let clock = std::time::Instant::now();
    let mut backup = v.cmd();
    backup.args(["-q", "backup", "--json", "--stdin", "big"]);
    let mut child = under_time(&time, &backup, &backup_report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut rows = Rows::new();
    let mut buf = vec![0u8; block];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(block as u64) as usize;
        rows.fill(&mut buf[..n]);
        stdin.write_all(&buf[..n]).unwrap();
        sent += n as u64;
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "backup failed");
    let backup_secs = clock.elapsed().as_secs_f64();
    let backup_rss = peak_rss_kib(&backup_report);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["input_bytes"].as_u64(), Some(total));

    // Restore to a pipe and compare with the regenerated stream as it comes.
    let clock = std::time::Instant::now();
    let mut restore = v.cmd();
    restore
        .args(["-q", "restore", "latest", "--source", "big", "--identity"])
        .arg(&v.identity)
        .args(["--output", "-"]);
    let mut child = under_time(&time, &restore, &restore_report)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut restored = BufReader::with_capacity(block, child.stdout.take().unwrap());
    let mut expected = Rows::new();
    let mut want = vec![0u8; block];
    let mut got = 0u64;
    loop {
        let chunk = restored.fill_buf().unwrap();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        expected.fill(&mut want[..n]);
        assert!(
            chunk == &want[..n],
            "restored bytes differ near offset {got}"
        );
        got += n as u64;
        restored.consume(n);
    }
    assert!(child.wait().unwrap().success(), "restore failed");
    assert_eq!(got, total);
    let restore_secs = clock.elapsed().as_secs_f64();
    let restore_rss = peak_rss_kib(&restore_report);

    let mib = total as f64 / (1u64 << 20) as f64;
    eprintln!(
        "{gib} GiB: backup {backup_secs:.1} s ({:.0} MiB/s, peak RSS {} MiB, stored {} MiB); \
         restore {restore_secs:.1} s ({:.0} MiB/s, peak RSS {} MiB)",
        mib / backup_secs,
        backup_rss / 1024,
        summary["stored_bytes"].as_u64().unwrap_or(0) >> 20,
        mib / restore_secs,
        restore_rss / 1024,
    );
    assert!(
        backup_rss <= RSS_BOUND_KIB,
        "backup peaked at {backup_rss} KiB RSS"
    );
    assert!(
        restore_rss <= RSS_BOUND_KIB,
        "restore peaked at {restore_rss} KiB RSS"
    );
}
