//! A typed builder for the `lockbox.toml` a test runs with, so tests say what
//! differs from the default vault instead of editing config text.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Where the repository lives.
#[derive(Clone, Debug)]
enum Repository {
    /// `file://DIR/repo`.
    Local,
    /// `s3://BUCKET/vault` on the test server at `endpoint`.
    S3 {
        endpoint: String,
        bucket: String,
        profile: Option<String>,
    },
}

/// A test vault's configuration: state in `DIR/state`, one recipient,
/// two-day locks, plus whatever the test adds.
#[derive(Clone, Debug)]
pub struct TestConfig {
    dir: PathBuf,
    state_dir: PathBuf,
    repository: Repository,
    recipients: Vec<String>,
    lock_days: u32,
    /// Further `key = value` lines of `[repository]`.
    repository_lines: String,
    /// `[[source]]` tables.
    sources: String,
    /// Any further TOML, appended verbatim.
    extra: String,
}

impl TestConfig {
    /// A local repository in `dir/repo`.
    pub fn local(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            state_dir: dir.join("state"),
            repository: Repository::Local,
            recipients: Vec::new(),
            lock_days: 2,
            repository_lines: String::new(),
            sources: String::new(),
            extra: String::new(),
        }
    }

    /// `s3://BUCKET/vault` on the S3 test server `endpoint` (path-style).
    pub fn s3(dir: &Path, endpoint: &str, bucket: &str) -> Self {
        Self {
            repository: Repository::S3 {
                endpoint: endpoint.to_string(),
                bucket: bucket.to_string(),
                profile: None,
            },
            ..Self::local(dir)
        }
    }

    pub fn recipient(mut self, recipient: &str) -> Self {
        self.recipients.push(recipient.to_string());
        self
    }

    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = dir.to_path_buf();
        self
    }

    pub fn lock_days(mut self, days: u32) -> Self {
        self.lock_days = days;
        self
    }

    /// One more `key = value` line in `[repository]`.
    pub fn repository_setting(mut self, line: &str) -> Self {
        let _ = writeln!(self.repository_lines, "{}", line.trim_end());
        self
    }

    /// The AWS profile of `[repository.s3]` (S3 repositories only).
    pub fn s3_profile(mut self, name: &str) -> Self {
        match &mut self.repository {
            Repository::S3 { profile, .. } => *profile = Some(name.to_string()),
            Repository::Local => panic!("s3_profile on a local repository"),
        }
        self
    }

    /// A `kind = "command"` source running `argv`, with further `key = value`
    /// lines `settings` (e.g. a schedule).
    pub fn source_command(mut self, name: &str, argv: &[&str], settings: &[&str]) -> Self {
        let argv: Vec<String> = argv.iter().map(|a| toml_string(a)).collect();
        let _ = write!(
            self.sources,
            "[[source]]\nname = {}\nkind = \"command\"\ncommand = [{}]\n",
            toml_string(name),
            argv.join(", ")
        );
        for line in settings {
            let _ = writeln!(self.sources, "{}", line.trim_end());
        }
        self
    }

    /// TOML appended after the repository (sections such as `[[source]]`,
    /// `[prune]`, `[daemon]`). For backwards compatibility with tests that
    /// pass such text whole, text before its first table header lands in
    /// `[repository]`.
    pub fn raw(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        if !toml.is_empty() && !toml.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The config text.
    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "state_dir = {}",
            toml_string(&self.state_dir.display().to_string())
        );
        t.push_str("[repository]\n");
        let url = match &self.repository {
            Repository::Local => format!("file://{}", self.dir.join("repo").display()),
            Repository::S3 { bucket, .. } => format!("s3://{bucket}/vault"),
        };
        let _ = writeln!(t, "url = {}", toml_string(&url));
        let recipients: Vec<String> = self.recipients.iter().map(|r| toml_string(r)).collect();
        let _ = writeln!(t, "recipients = [{}]", recipients.join(", "));
        let _ = writeln!(t, "lock_days = {}", self.lock_days);
        t.push_str(&self.repository_lines);
        // Raw text may begin with `[repository]` keys: it follows them.
        let (repo_keys, tables) = split_leading_keys(&self.extra);
        t.push_str(repo_keys);
        if let Repository::S3 {
            endpoint, profile, ..
        } = &self.repository
        {
            t.push_str("[repository.s3]\n");
            let _ = writeln!(t, "endpoint = {}", toml_string(endpoint));
            t.push_str("path_style = true\n");
            if let Some(p) = profile {
                let _ = writeln!(t, "profile = {}", toml_string(p));
            }
        }
        t.push_str(&self.sources);
        t.push_str(tables);
        t
    }

    /// Writes the config text to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml()).unwrap();
    }
}

/// `text` split before its first table header (`[` at the start of a line).
fn split_leading_keys(text: &str) -> (&str, &str) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return text.split_at(offset);
        }
        offset += line.len();
    }
    (text, "")
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
