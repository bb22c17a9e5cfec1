//! Command-line interface definitions (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The config file read when neither `--config` nor `LOCKBOX_CONFIG` names
/// one: where the Debian package installs it and the units expect it.
pub const DEFAULT_CONFIG: &str = "/etc/lockbox/lockbox.toml";

/// An `after_help` of examples (each line a full command, checked to parse
/// by a test below), then `tail` (exit codes or notes) when given.
fn examples(lines: &[&str], tail: Option<&str>) -> String {
    let mut out = String::from("Examples:\n");
    for line in lines {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    if let Some(tail) = tail {
        out.push('\n');
        out.push_str(tail);
    }
    out
}

pub const EXIT_CODES: &str = "\
Exit codes:
  0      success
  1      operational failure (storage, source dump, I/O); nothing was lost
  2      usage or configuration error (unknown source, missing identity file, a repository
         written by a newer Lockbox)
  3      integrity failure: data in the repository failed verification
  4      the identity cannot decrypt this repository or snapshot
  75     temporary failure: another run holds the source's lock (it names the pid); retry later
  128+n  stopped by signal n (130 SIGINT, 143 SIGTERM); nothing partial was published";

#[derive(Parser)]
#[command(
    name = "lockbox",
    version,
    about = "Isolated, write-once backup vault for database dumps",
    after_help = examples(&[
        "lockbox quickstart",
        "lockbox config check",
        "lockbox backup orders",
        "lockbox restore latest --source orders --identity key.txt --output orders.dump",
        "lockbox check",
    ], Some(EXIT_CODES))
)]
pub struct Cli {
    /// Configuration file [default: /etc/lockbox/lockbox.toml].
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "LOCKBOX_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More detailed logs (-v debug, -vv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an age identity (for restores); prints its public recipient.
    #[command(after_help = examples(&["lockbox keygen --output /safe/place/lockbox-identity.txt"], None))]
    Keygen(KeygenArgs),
    /// Create the repository named in the config, or join an existing one.
    #[command(after_help = examples(&[
        "lockbox init",
        "lockbox --config /etc/lockbox/lockbox.toml init --identity restore-key.txt",
    ], None))]
    Init(InitArgs),
    /// Back up a configured source, or standard input.
    #[command(after_help = examples(&[
        "lockbox backup orders",
        "lockbox backup --all --json",
        "lockbox backup --stdin orders",
    ], Some(EXIT_CODES)))]
    Backup(BackupArgs),
    /// List snapshots (the catalog is refreshed from the repository first).
    #[command(after_help = examples(&[
        "lockbox snapshots",
        "lockbox snapshots --source orders --json",
        "lockbox snapshots --identity restore-key.txt",
    ], None))]
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot, verifying every chunk and the whole stream.
    #[command(after_help = examples(&[
        "lockbox restore latest --source orders --identity key.txt --output orders.dump",
        "lockbox restore 3f2a9c01 --identity key.txt --output -",
        "lockbox restore latest --source orders --identity key.txt --into postgresql://postgres@localhost:5432/orders_copy",
    ], Some(&("With --output -, data is streamed to stdout as it is verified \
chunk by chunk; the whole-stream check completes only at the end, so the EXIT STATUS IS THE \
VERDICT: treat the output as unverified unless lockbox exits 0.\n\n".to_string() + EXIT_CODES))))]
    Restore(RestoreArgs),
    /// Check the repository for damage without restoring: manifests, the
    /// hash chain, every object's presence, size and lock; with --read-data
    /// also the stored bytes (and, with --identity, the decrypted chunks).
    #[command(after_help = examples(&[
        "lockbox verify",
        "lockbox verify --read-data --sample 5",
        "lockbox verify --source orders --read-data --identity key.txt",
    ], Some(&("Exit 3 if any problem was found (one line each: kind, snapshot, \
object); a full --read-data run (no --sample) records a verdict per snapshot in the catalog.\n\n".to_string() + EXIT_CODES))))]
    Verify(VerifyArgs),
    /// Restore a snapshot into a scratch database (or file) and prove it
    /// works: load, tables, row counts, user checks; writes an attestation.
    #[command(after_help = examples(&[
        "lockbox drill orders",
        "lockbox drill orders --snapshot 3f2a9c01 --target postgresql://drill@localhost:5432/postgres --keep",
    ], Some(&("Exit 3 if a check failed or the snapshot failed verification (the \
message names the check or object).\n\n".to_string() + EXIT_CODES))))]
    Drill(DrillArgs),
    /// Check this host and the storage: permissions, versioning and Object
    /// Lock, and that a locked canary cannot be deleted. Exit 1 on any FAIL.
    #[command(after_help = examples(&[
        "lockbox doctor",
        "lockbox doctor --as-profile production --json",
    ], None))]
    Doctor(DoctorArgs),
    /// Remove snapshots the retention policy no longer keeps, in two
    /// reviewed steps: `--plan FILE` (read-only) writes a plan and prints its
    /// digest; `--apply FILE --confirm DIGEST` deletes exactly what it lists,
    /// with the `[prune] profile` credentials.
    #[command(after_help = examples(&[
        "lockbox prune --plan plan.json",
        "lockbox prune --apply plan.json --confirm DIGEST",
    ], Some(&("Exit 2 if the digest does not match the plan, the plan file is \
malformed or altered, or `[prune] profile` is missing or equals the writer's profile; exit 1 if \
the repository changed since the plan (nothing deleted: make a new plan) or storage refused or \
failed a delete (reported, not retried).\n\n".to_string() + EXIT_CODES))))]
    Prune(PruneArgs),
    /// Maintain the local catalog (a cache of the repository).
    #[command(after_help = examples(&["lockbox catalog rebuild"], None))]
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Run every source's backups on its `schedule` until SIGTERM/SIGINT
    /// (runs in flight get `[daemon] shutdown_grace`, then are aborted with no
    /// snapshot written). SIGHUP reloads the config; a bad one is rejected
    /// and the old one kept.
    #[command(after_help = examples(&[
        "lockbox daemon",
        "lockbox --log-format json daemon",
    ], None))]
    Daemon,
    /// Per-source health: last backup, last verified backup, sizes, dedup,
    /// retention, tampering; OK/WARN/CRIT. Reads the local catalog only.
    #[command(after_help = examples(&["lockbox status", "lockbox status --source orders --json"], None))]
    Status(StatusArgs),
    /// Monitoring-plugin check (Nagios/Icinga, cron, Kubernetes probes): one
    /// summary line, one line per source.
    #[command(after_help = examples(&["lockbox check", "lockbox check --source orders"], Some(CHECK_EXIT_CODES)))]
    Check(CheckArgs),
    /// Prometheus metrics (text format) on stdout, or into a node_exporter
    /// textfile-collector file.
    #[command(after_help = examples(&[
        "lockbox metrics",
        "lockbox metrics --textfile /var/lib/prometheus/node-exporter/lockbox.prom",
    ], None))]
    Metrics(MetricsArgs),
    /// Notifications (`[[notify]]` in the config).
    #[command(after_help = examples(&["lockbox notify test"], None))]
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Try Lockbox end to end in ./lockbox-quickstart: identity, local vault,
    /// a sample SQLite database, a backup, and a verified restore.
    #[command(after_help = examples(&["lockbox quickstart", "lockbox quickstart --dir /tmp/lockbox-demo"], None))]
    Quickstart(QuickstartArgs),
    /// Check the configuration without touching storage or databases: every
    /// source with its kind, schedule and next runs, thresholds and
    /// notification targets. Exit 2 on any problem.
    #[command(after_help = examples(&[
        "lockbox config check",
        "lockbox --config /etc/lockbox/lockbox.toml config check --json",
    ], None))]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script on stdout.
    #[command(after_help = examples(&[
        "lockbox completions bash > /etc/bash_completion.d/lockbox",
        "lockbox completions zsh > ~/.zfunc/_lockbox",
        "lockbox completions fish > ~/.config/fish/completions/lockbox.fish",
    ], None))]
    Completions(CompletionsArgs),
    /// Write man pages (lockbox.1 and one per subcommand) into a directory.
    #[command(after_help = examples(&["lockbox man --output-dir /usr/local/share/man/man1"], None))]
    Man(ManArgs),
}

/// `lockbox check` follows the monitoring-plugin convention instead.
pub const CHECK_EXIT_CODES: &str = "\
Exit codes (monitoring-plugin convention, not the usual ones):
  0   OK: every source is healthy
  1   WARNING: a source is WARN (never verified, verified too long ago, last run or drill failed)
  2   CRITICAL: a source is CRIT (never backed up, backup too old, tampering, failed verify)
  3   UNKNOWN: the check itself could not run (bad config, unreadable catalog, no such source)";

#[derive(Args)]
pub struct StatusArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Print JSON (see README: fields may be added, never changed).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args)]
pub struct MetricsArgs {
    /// Write node_exporter's textfile format to this file (atomically: a
    /// temporary file in the same directory renamed over it), e.g.
    /// /var/lib/prometheus/node-exporter/lockbox.prom.
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Write the identity here (mode 0600) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub struct InitArgs {
    /// Join an existing repository: recover its ID key with this identity
    /// (use once on a trusted machine, or copy state_dir/id.key instead).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Args)]
pub struct BackupArgs {
    /// Source name from the config.
    #[arg(required_unless_present_any = ["stdin", "all"], conflicts_with_all = ["stdin", "all"])]
    pub source: Option<String>,
    /// Back up standard input under this source name.
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub stdin: Option<String>,
    /// Back up every configured source, one after another; a failing source
    /// does not stop the others.
    #[arg(long)]
    pub all: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SnapshotsArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// On a restore host (no ID key): read the repository directly, with
    /// this age identity to check every manifest's name.
    #[arg(long, short = 'i', env = "LOCKBOX_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print JSON (an array of objects; fields may be added, never changed).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["output", "into"])))]
pub struct RestoreArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    pub snapshot: String,
    /// Source the snapshot belongs to: needed for `latest` when the
    /// repository holds more than one source, and for an id prefix that
    /// several sources share.
    #[arg(long)]
    pub source: Option<String>,
    /// age identity file that can decrypt the repository.
    #[arg(long, short = 'i', env = "LOCKBOX_IDENTITY", value_name = "FILE")]
    pub identity: PathBuf,
    /// Output file, or - for stdout. A file appears only after verification.
    #[arg(long, short = 'o', value_name = "FILE|-")]
    pub output: Option<PathBuf>,
    /// Load into a database instead: postgresql://USER@HOST:PORT/DB,
    /// mysql:// or mariadb:// (same form), or sqlite:///ABS/PATH.db. The
    /// snapshot is verified completely before anything is loaded; a missing
    /// database is created. Never put a password in the URL.
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,
    /// With --into: a file whose first line is the database password
    /// (default: the LOCKBOX_RESTORE_PASSWORD environment variable, if set).
    #[arg(long, value_name = "FILE", requires = "into")]
    pub password_file: Option<PathBuf>,
    /// With --into: allow loading into the database of a configured source,
    /// which must be named here exactly (it is overwritten).
    #[arg(long, value_name = "DBNAME", requires = "into")]
    pub overwrite_source: Option<String>,
    /// Replace an existing output file (only after verification succeeded);
    /// with --into, load into a non-empty database.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only this snapshot (id or unique prefix); skips the chain check.
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Also download every object and check the BLAKE3 of its bytes.
    #[arg(long)]
    pub read_data: bool,
    /// With --read-data: read only this percentage of the objects, chosen
    /// reproducibly by --seed (printed), e.g. a slice a day.
    #[arg(long, value_name = "PCT", requires = "read_data")]
    pub sample: Option<f64>,
    /// Seed of the --sample choice (default: random, printed).
    #[arg(long, requires = "sample")]
    pub seed: Option<u64>,
    /// age identity: decrypt each chunk and check its keyed id (with
    /// --read-data); on a host without an ID key, also unseals the ID key.
    #[arg(long, short = 'i', env = "LOCKBOX_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("step").required(true).args(["plan", "apply"])))]
pub struct PruneArgs {
    /// Compute a plan (read-only) and write it to FILE.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Apply the reviewed plan in FILE (needs --confirm).
    #[arg(long, value_name = "FILE", requires = "confirm")]
    pub apply: Option<PathBuf>,
    /// The plan's digest, as its summary printed it.
    #[arg(long, value_name = "DIGEST", requires = "apply")]
    pub confirm: Option<String>,
    /// Print the plan summary or the apply report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DrillArgs {
    /// Source name from the config.
    pub source: String,
    /// Snapshot id or unique prefix (default: the newest).
    #[arg(long, value_name = "ID", default_value = "latest")]
    pub snapshot: String,
    /// Drill server URL, overriding `[source.drill] target`.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Keep the scratch database (or file) afterwards, for inspection.
    #[arg(long)]
    pub keep: bool,
    /// age identity (default: `[source.drill] identity`).
    #[arg(long, short = 'i', env = "LOCKBOX_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the checklist as JSON (an array of {check, status, detail}).
    #[arg(long)]
    pub json: bool,
    /// Repeat the delete probe with this AWS profile too (e.g. production's
    /// credentials): it must be refused as well.
    #[arg(long, value_name = "NAME")]
    pub as_profile: Option<String>,
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Rebuild the catalog's snapshots and chunks from the repository alone.
    #[command(after_help = examples(&["lockbox catalog rebuild"], None))]
    Rebuild,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the config offline: print each source, its kind, its
    /// schedule with the next three run times, its thresholds, and the
    /// notification targets. Exit 2 on any problem.
    #[command(after_help = examples(&[
        "lockbox config check",
        "lockbox --config lockbox.toml config check --json",
    ], None))]
    Check(ConfigCheckArgs),
}

#[derive(Args)]
pub struct ConfigCheckArgs {
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Send a `test` event to every `[[notify]]` target, whatever its `on`
    /// and `sources`, and print one line per target. Exit 1 if any delivery
    /// failed.
    #[command(after_help = examples(&["lockbox notify test", "lockbox notify test --json"], None))]
    Test(NotifyTestArgs),
}

#[derive(Args)]
pub struct NotifyTestArgs {
    /// Print the deliveries as JSON (an array of {kind, target, ok, error,
    /// attempts}; fields may be added).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct QuickstartArgs {
    /// Directory for the demo (created if missing).
    #[arg(long, default_value = "lockbox-quickstart")]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command's help ends with examples, and every example parses as
    /// the command whose help shows it: a renamed flag breaks this test,
    /// not a reader at 3 a.m.
    #[test]
    fn every_command_has_examples_that_parse() {
        fn walk(cmd: &clap::Command, path: Vec<String>, seen: &mut usize) {
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let examples: Vec<&str> = help
                .split("Examples:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("`{}` --help has no examples", path.join(" ")))
                .lines()
                .take_while(|l| l.starts_with("  "))
                .map(str::trim)
                .collect();
            assert!(
                !examples.is_empty(),
                "`{}`: no example lines",
                path.join(" ")
            );
            for example in examples {
                // A shell redirection is not part of the command line.
                let line = example.split(" > ").next().unwrap();
                let words: Vec<&str> = line.split_whitespace().collect();
                let parsed = Cli::try_parse_from(&words);
                assert!(
                    parsed.is_ok(),
                    "example `{example}` does not parse: {:?}",
                    parsed.err()
                );
                for part in &path[1..] {
                    assert!(
                        words.contains(&part.as_str()),
                        "example `{example}` is shown under `{}`",
                        path.join(" ")
                    );
                }
                *seen += 1;
            }
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                walk(sub, p, seen);
            }
        }
        let mut seen = 0;
        walk(&Cli::command(), vec!["lockbox".into()], &mut seen);
        assert!(seen > 30, "only {seen} examples");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
