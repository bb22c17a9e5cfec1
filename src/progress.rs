//! Progress bars for interactive runs: drawn on stderr only when it is a
//! terminal and `--quiet` is off; cron and systemd see nothing extra.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
    new_chunks: AtomicU64,
    reused_chunks: AtomicU64,
}

impl Bar {
    fn new(template: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() && !crate::commands::is_quiet() {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self {
            bar,
            new_chunks: AtomicU64::new(0),
            reused_chunks: AtomicU64::new(0),
        }
    }

    /// For a backup: the total is unknown (a dump is a stream).
    pub fn backup() -> Self {
        Self::new("{spinner} {elapsed_precise} read {bytes} ({bytes_per_sec}) {msg}")
    }

    /// For a restore: the total comes from the manifest.
    pub fn restore() -> Self {
        Self::new(
            "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl lockbox_vault::backup::Progress for Bar {
    fn read(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn chunk(&self, new: bool, _stored_bytes: u64) {
        let counter = if new {
            &self.new_chunks
        } else {
            &self.reused_chunks
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bar.set_message(format!(
            "chunks: {} new, {} reused",
            self.new_chunks.load(Ordering::Relaxed),
            self.reused_chunks.load(Ordering::Relaxed)
        ));
    }
}

impl lockbox_restore::RestoreProgress for Bar {
    fn start(&self, total_bytes: u64) {
        self.bar.set_length(total_bytes);
    }
    fn written(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}
