//! A very large dump (20 GiB by default) streamed through `backup --stdin`
//! into a local vault and restored to a pipe: peak RSS of each stays within
//! the foundation's bound (150 MiB, issue 2), whatever the input size, and
//! the restored stream is byte-identical to what went in.
//!
//! Ignored by default (minutes of CPU and a few GiB of disk); run with
//!
//! ```text
//! cargo test --release --test large_stream -- --ignored --nocapture
//! LOCKBOX_LARGE_GIB=4 cargo test --release --test large_stream -- --ignored --nocapture
//! ```
//!
//! The generated rows are fresh all the way (a row counter), so dedup does
//! not hide the work, and compress about like a text dump, so the vault
//! needs roughly a tenth of the input on disk.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use support::Vault;

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

/// Peak RSS (KiB) of the largest child this process has waited for.
#[allow(unsafe_code)] // a raw syscall is the point here
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut u), 0);
        u.ru_maxrss
    }
}

#[test]
#[ignore = "20 GiB: minutes of CPU; run by hand (see the module doc)"]
fn twenty_gib_stream_keeps_peak_rss_bounded() {
    let gib: u64 = std::env::var("LOCKBOX_LARGE_GIB")
        .ok()
        .map(|v| v.parse().expect("LOCKBOX_LARGE_GIB is a whole number"))
        .unwrap_or(20);
    let total = gib << 30;
    let v = Vault::new("");
    let before = children_max_rss_kib();
    let block = 1 << 20;

    let clock = std::time::Instant::now();
    let mut child = v
        .cmd()
        .args(["-q", "backup", "--json", "--stdin", "big"])
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
    let backup_rss = children_max_rss_kib();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["input_bytes"].as_u64(), Some(total));

    // Restore to a pipe and compare with the regenerated stream as it comes.
    let clock = std::time::Instant::now();
    let mut child = v
        .cmd()
        .args(["-q", "restore", "latest", "--source", "big", "--identity"])
        .arg(&v.identity)
        .args(["--output", "-"])
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
    let restore_rss = children_max_rss_kib();

    let mib = total as f64 / (1u64 << 20) as f64;
    eprintln!(
        "{gib} GiB: backup {backup_secs:.1} s ({:.0} MiB/s, peak RSS {} MiB, stored {} MiB); \
         restore {restore_secs:.1} s ({:.0} MiB/s, peak RSS so far {} MiB)",
        mib / backup_secs,
        backup_rss / 1024,
        summary["stored_bytes"].as_u64().unwrap_or(0) >> 20,
        mib / restore_secs,
        restore_rss / 1024,
    );
    assert!(before < RSS_BOUND_KIB);
    assert!(
        backup_rss <= RSS_BOUND_KIB,
        "backup peaked at {backup_rss} KiB RSS"
    );
    // RUSAGE_CHILDREN is a maximum over all children: a restore above the
    // bound raises it past the backup's figure.
    assert!(
        restore_rss <= RSS_BOUND_KIB,
        "restore peaked at {restore_rss} KiB RSS"
    );
}
