//! README.md stays true: its command table lists exactly the binary's
//! subcommands, every configuration key it names exists in
//! `examples/lockbox.toml`, every TOML block in it is a configuration the
//! binary accepts, and the first-backup walkthrough runs.
//!
//! The walkthrough is run the way rustdoc runs doc examples: the fenced
//! blocks README marks with `<!-- walkthrough -->` (shell, run with
//! `bash -euo pipefail`, one after another in one temp directory) or
//! `<!-- walkthrough: PATH -->` (a file written to PATH) are extracted and
//! run against the real PostgreSQL on 127.0.0.1:5432 (user `postgres`,
//! trust), with the built binary first on `PATH` as `lockbox`. So that the
//! blocks people read are the blocks that run, the only changes are these
//! textual substitutions:
//!
//! | in README | in the test |
//! |---|---|
//! | `shop` (database and source) | a fresh `lbt_readme_…` database, created with a table first |
//! | `lockbox_backup` (the role) | a fresh `lbt_readme_role_…` role |
//! | `/etc/lockbox` | `TMP/etc` (and `LOCKBOX_CONFIG` names `TMP/etc/lockbox.toml`, the default path's stand-in) |
//! | `/var/lib/lockbox` | `TMP/state` |
//! | `/srv/lockbox` | `TMP/vault` |
//! | `age1…` | the recipient the keygen block printed |
//!
//! and `HOME` is an empty `TMP/home`. The databases and the role are dropped
//! afterwards, also when a block fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::BIN;
use crate::support::db::{self, Engine, TempDb};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn example_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lockbox.toml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fenced code block of README: the fence's info string, the marker
/// comment just before it (if any), and its text.
#[derive(Debug)]
struct Block {
    info: String,
    marker: Option<String>,
    text: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    let mut previous: Option<&str> = None;
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let marker = previous
                .map(str::trim)
                .and_then(|p| p.strip_prefix("<!--"))
                .and_then(|p| p.strip_suffix("-->"))
                .map(|m| m.trim().to_string());
            let mut text = String::new();
            for body in lines.by_ref() {
                if body.starts_with("```") {
                    break;
                }
                text.push_str(body);
                text.push('\n');
            }
            out.push(Block {
                info: info.trim().to_string(),
                marker,
                text,
            });
            previous = None;
        } else if !line.trim().is_empty() {
            previous = Some(line);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The command table.

/// The subcommands listed under "Commands:" in a help text (without `help`).
fn help_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn help_of(words: &[&str]) -> Option<String> {
    let out = crate::support::lockbox()
        .args(words)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockbox --help");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every leaf command path of the binary, e.g. `backup`, `catalog rebuild`.
fn binary_commands() -> BTreeSet<String> {
    let top = help_of(&[]).expect("lockbox --help succeeds");
    let mut out = BTreeSet::new();
    for cmd in help_commands(&top) {
        let help = help_of(&[&cmd]).unwrap_or_else(|| panic!("lockbox {cmd} --help fails"));
        let subs = help_commands(&help);
        if subs.is_empty() {
            out.insert(cmd);
        } else {
            out.extend(subs.into_iter().map(|s| format!("{cmd} {s}")));
        }
    }
    out
}

/// The command words of each row of README's table under `## Commands`:
/// `lockbox restore SNAPSHOT|latest …` gives `restore`, `lockbox notify
/// test [--json]` gives `notify test`.
fn readme_commands(doc: &str) -> Vec<String> {
    let start = doc.find("\n## Commands\n").expect("README has ## Commands");
    let rows = doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2); // header and separator
    rows.map(|row| {
        let cell = row.trim_start_matches('|').split(" | ").next().unwrap();
        let cell = cell.trim().trim_matches('`');
        let words: Vec<&str> = cell
            .split_whitespace()
            .skip_while(|w| *w == "lockbox")
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect();
        assert!(
            !words.is_empty(),
            "README command row without a command: {row}"
        );
        words.join(" ")
    })
    .collect()
}

#[test]
fn the_command_table_lists_exactly_the_binarys_commands() {
    let doc = readme();
    let table: BTreeSet<String> = readme_commands(&doc).into_iter().collect();
    let binary = binary_commands();
    let missing: Vec<&String> = binary.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "README's command table lacks {missing:?} (the binary has {binary:?})"
    );
    for cmd in table.difference(&binary) {
        let words: Vec<&str> = cmd.split(' ').collect();
        let accepted = help_of(&words).is_some();
        assert!(
            accepted,
            "README's command table lists `lockbox {cmd}`, which the binary does not accept"
        );
        if accepted {
            // A command the binary accepts but does not list (hidden).
            panic!("`lockbox {cmd}` is in README but not in the binary's help listing");
        }
    }
}

// ---------------------------------------------------------------------------
// Links and audience.

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as
/// hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn readme_is_short_for_users_and_links_only_into_the_repository() {
    let doc = readme();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = doc.lines().count();
    assert!(
        lines <= 400,
        "README has {lines} lines; move reference material out"
    );
    let start = "# Lockbox\n\n```sh\n\
                 cargo run --release -- quickstart          # local vault + sample SQLite db: backup, then verified restore\n\
                 cargo test --workspace --release           # the test suite (.ci/run installs what it needs first)\n```\n";
    assert!(
        doc.starts_with(start),
        "README must start with the two commands"
    );
    for word in ["issue ", "Issue ", "(issue", "not built yet"] {
        assert!(!doc.contains(word), "README mentions {word:?}");
    }
    // No dated measurements: no ISO dates at all.
    let bytes = doc.as_bytes();
    for i in 0..bytes.len().saturating_sub(10) {
        let d = |j: usize| bytes[i + j].is_ascii_digit();
        let date = d(0) && d(1) && d(2) && d(3) && bytes[i + 4] == b'-' && d(5) && d(6);
        assert!(
            !(date && bytes[i + 7] == b'-' && d(8) && d(9)),
            "README holds a date: {}",
            &doc[i..i + 10]
        );
    }
    let mut checked = 0;
    for link in doc.split("](").skip(1) {
        let target = link.split(')').next().unwrap();
        assert!(
            !target.contains("://") && !target.starts_with("//") && !target.starts_with("mailto:"),
            "README links outside the repository: {target}"
        );
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = if path.is_empty() {
            root.join("README.md")
        } else {
            root.join(path)
        };
        assert!(
            file.exists(),
            "README links to {path}, which does not exist"
        );
        if !anchor.is_empty() {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                anchors(&text).contains(anchor),
                "README links to {path}#{anchor}, a heading {path} does not have"
            );
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} links found");
}

// ---------------------------------------------------------------------------
// Configuration keys.

/// Maps whose keys are data, not configuration keys.
const MAP_KEYS: &[&str] = &["env", "headers"];

/// Every key path of a TOML document (`repository.lock_days`,
/// `source.drill.check.sql`: arrays of tables share one path).
fn key_paths(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                if !MAP_KEYS.contains(&k.as_str()) {
                    key_paths(v, &path, out);
                }
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                if item.is_table() {
                    key_paths(item, prefix, out);
                }
            }
        }
        _ => {}
    }
}

/// The keys `examples/lockbox.toml` documents: as assignments, commented
/// out or not (`# lock_mode = …`, under the table header before them, which
/// may be commented out too), and, for keys that are explained in a comment
/// list (`#   password_env   Or: …`), by name.
struct Documented {
    paths: BTreeSet<String>,
    listed: BTreeSet<String>,
}

fn documented_keys(example: &str) -> Documented {
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut paths = BTreeSet::new();
    let mut listed = BTreeSet::new();
    let mut table = String::new();
    for line in example.lines() {
        let bare = line.trim_start_matches('#').trim();
        let header = bare
            .strip_prefix("[[")
            .and_then(|h| h.strip_suffix("]]"))
            .or_else(|| bare.strip_prefix('[').and_then(|h| h.strip_suffix(']')));
        if let Some(h) = header.filter(|h| h.split('.').all(ident)) {
            table = h.to_string();
            paths.insert(table.clone());
            continue;
        }
        if let Some((key, _)) = bare.split_once('=')
            && ident(key.trim())
        {
            let key = key.trim();
            paths.insert(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
            continue;
        }
        // "#   host, port, user, database  Where …", "#   secret_file / secret_env  …"
        if let Some(rest) = line.strip_prefix("#   ")
            && let Some((names, _)) = rest.trim_start().split_once("  ")
        {
            let names: Vec<&str> = names.split([',', '/']).map(str::trim).collect();
            if names.iter().all(|n| ident(n)) {
                listed.extend(names.iter().map(|n| n.to_string()));
            }
        }
    }
    Documented { paths, listed }
}

impl Documented {
    fn has(&self, path: &str) -> bool {
        let leaf = path.rsplit('.').next().unwrap();
        let table = path.rsplit_once('.').map(|(t, _)| t).unwrap_or("");
        self.paths.contains(path)
            || (self.listed.contains(leaf) && (table.is_empty() || self.paths.contains(table)))
    }
}

/// Key paths README names in backticks: `[daemon] listen`,
/// `repository.lock_days`, `[health]`, `[[notify]]`.
fn backticked_keys(doc: &str, tables: &BTreeSet<String>) -> BTreeSet<String> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut prose = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut out = BTreeSet::new();
    for span in prose.split('`').skip(1).step_by(2) {
        let header = |s: &str| {
            s.strip_prefix("[[")
                .and_then(|h| h.strip_suffix("]]"))
                .or_else(|| s.strip_prefix('[').and_then(|h| h.strip_suffix(']')))
                .filter(|h| h.split('.').all(ident))
                .map(str::to_string)
        };
        if let Some((head, key)) = span.split_once("] ").map(|(h, k)| (format!("{h}]"), k)) {
            if let Some(table) = header(&head)
                && ident(key)
            {
                out.insert(format!("{table}.{key}"));
            }
        } else if let Some(table) = header(span) {
            out.insert(table);
        } else if span.contains('.')
            && span.split('.').all(ident)
            && tables.contains(span.split('.').next().unwrap())
        {
            out.insert(span.to_string());
        }
    }
    out
}

#[test]
fn every_config_key_readme_names_is_documented() {
    let doc = readme();
    let documented = documented_keys(&example_config());
    let tables: BTreeSet<String> = documented
        .paths
        .iter()
        .filter(|p| !p.contains('.'))
        .cloned()
        .collect();
    let mut named = backticked_keys(&doc, &tables);
    let mut toml_blocks = 0;
    for block in blocks(&doc).iter().filter(|b| b.info == "toml") {
        let value: toml::Value = toml::from_str(&block.text)
            .unwrap_or_else(|e| panic!("README TOML block does not parse: {e}\n{}", block.text));
        key_paths(&value, "", &mut named);
        toml_blocks += 1;
    }
    assert!(toml_blocks >= 3, "README has {toml_blocks} TOML blocks");
    assert!(named.contains("daemon.listen"), "{named:?}");
    let unknown: Vec<&String> = named.iter().filter(|k| !documented.has(k)).collect();
    assert!(
        unknown.is_empty(),
        "README names config keys examples/lockbox.toml does not document: {unknown:?}"
    );
}

/// README's paths, moved into `tmp`.
fn localise(text: &str, tmp: &Path) -> String {
    let t = tmp.display();
    text.replace("/etc/lockbox", &format!("{t}/etc"))
        .replace("/var/lib/lockbox", &format!("{t}/state"))
        .replace("/srv/lockbox", &format!("{t}/vault"))
}

fn keygen(dir: &Path) -> String {
    crate::support::keygen(&dir.join("identity.txt"))
}

/// Asks `lockbox config check` whether `config` is valid, without touching
/// storage.
fn config_problems(config: &Path, aws: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        crate::support::lockbox()
            .arg("--config")
            .arg(config)
            .args(args)
            .env("NO_COLOR", "1")
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run lockbox")
    };
    let out = run(&["config", "check"]);
    (out.status.code() == Some(2)).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Creates what a README config names, as its reader would have it: the
/// files of `*_file` and `identity` keys (under `dir`, after [`localise`]),
/// and each AWS `profile` in the AWS files under `aws`.
fn provide_what_it_names(value: &toml::Value, dir: &Path, aws: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(table) = value.as_table() else {
        if let Some(items) = value.as_array() {
            for item in items {
                provide_what_it_names(item, dir, aws);
            }
        }
        return;
    };
    for (key, v) in table {
        match v.as_str() {
            Some(path)
                if (key.ends_with("_file") || key == "identity")
                    && path.starts_with(&*dir.to_string_lossy()) =>
            {
                let path = Path::new(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let content = if key == "identity" {
                    std::fs::read(dir.join("identity.txt")).unwrap()
                } else {
                    b"not-a-real-password\n".to_vec()
                };
                let _ = std::fs::remove_file(path);
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut f| f.write_all(&content))
                    .unwrap();
            }
            Some(name) if key == "profile" => {
                let append = |file: &str, text: String| {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(aws.join(file))
                        .and_then(|mut f| f.write_all(text.as_bytes()))
                        .unwrap();
                };
                append("config", format!("[profile {name}]\nregion = us-east-1\n"));
                append(
                    "credentials",
                    format!("[{name}]\naws_access_key_id = test\naws_secret_access_key = test\n"),
                );
            }
            _ => provide_what_it_names(v, dir, aws),
        }
    }
}

#[test]
fn every_toml_block_in_readme_is_a_valid_config() {
    let doc = readme();
    let dir = tempfile::tempdir().unwrap();
    let recipient = keygen(dir.path());
    // The check itself can tell: a misspelt key is a problem.
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        format!(
            "state_dir = \"{0}/state\"\n[repository]\nurl = \"file://{0}/vault\"\n\
             recipients = [\"{recipient}\"]\nlock_dayz = 30\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let aws = dir.path().join("aws");
    std::fs::create_dir(&aws).unwrap();
    assert!(config_problems(&typo, &aws).is_some_and(|p| p.contains("lock_dayz")));
    for (n, block) in blocks(&doc).iter().filter(|b| b.info == "toml").enumerate() {
        let text = localise(&block.text, dir.path()).replace("age1…", &recipient);
        let config = dir.path().join(format!("block{n}.toml"));
        std::fs::write(&config, &text).unwrap();
        provide_what_it_names(&toml::from_str(&text).unwrap(), dir.path(), &aws);
        if let Some(problem) = config_problems(&config, &aws) {
            panic!(
                "README's TOML block {n} is not a valid config:\n{problem}\n{}",
                block.text
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The walkthrough.

/// Drops the role when the test ends, however it ends (after the databases:
/// declare it first).
struct TempRole(String);

impl Drop for TempRole {
    fn drop(&mut self) {
        let q = format!("DROP ROLE IF EXISTS {};", self.0);
        if let Err(e) = db::try_sql(Engine::Postgres, None, &q) {
            eprintln!("cleanup: could not drop role {}: {e}", self.0);
        }
    }
}

#[test]
fn the_first_backup_walkthrough_runs_against_postgresql() {
    let doc = readme();
    let steps: Vec<Block> = blocks(&doc)
        .into_iter()
        .filter(|b| {
            b.marker
                .as_deref()
                .is_some_and(|m| m.split(':').next() == Some("walkthrough"))
        })
        .collect();
    let all: String = steps.iter().map(|b| b.text.as_str()).collect();
    for needed in [
        "CREATE ROLE lockbox_backup",
        "lockbox keygen",
        "kind = \"postgres\"",
        "lockbox init",
        "lockbox backup shop",
        "lockbox snapshots",
        "lockbox restore latest --source shop",
        "--output shop.dump",
        "--into postgresql://",
        "lockbox check",
    ] {
        assert!(
            all.contains(needed),
            "README's walkthrough no longer contains {needed:?}"
        );
    }
    if !db::reachable(Engine::Postgres) {
        return;
    }

    let role = TempRole(db::unique("readme_role"));
    let shop = TempDb::create(Engine::Postgres, "readme");
    let restored = TempDb {
        engine: Engine::Postgres,
        name: format!("{}_restored", shop.name),
    };
    shop.sql(
        "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, \
         created_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 1000) g;",
    );

    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("lockbox")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let substitute = |text: &str| {
        localise(
            &text
                .replace("lockbox_backup", &role.0)
                .replace("shop", &shop.name),
            tmp.path(),
        )
    };

    let mut recipient: Option<String> = None;
    for (n, step) in steps.iter().enumerate() {
        let marker = step.marker.as_deref().unwrap();
        if let Some((_, file)) = marker.split_once(':') {
            let file = substitute(file.trim());
            let mut text = substitute(&step.text);
            if text.contains("age1…") {
                let r = recipient
                    .as_deref()
                    .expect("a walkthrough block before the config prints a recipient");
                text = text.replace("age1…", r);
            }
            std::fs::create_dir_all(Path::new(&file).parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
            continue;
        }
        assert_eq!(step.info, "sh", "walkthrough block {n} is not sh");
        let script = substitute(&step.text);
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(tmp.path())
            .env("PATH", &path)
            .env("HOME", &home)
            .env("LOCKBOX_CONFIG", tmp.path().join("etc/lockbox.toml"))
            .env("NO_COLOR", "1")
            .env_remove("LOCKBOX_IDENTITY")
            .env_remove("LOCKBOX_RESTORE_PASSWORD")
            .env_remove("PGPASSWORD")
            .env_remove("PGDATABASE")
            .env_remove("PGUSER")
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README walkthrough block {n} failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(r) = stdout.split_whitespace().find(|w| w.starts_with("age1")) {
            recipient = Some(r.to_string());
        }
    }

    // What the walkthrough promised: the restored database holds the data.
    assert!(restored.exists(), "restore --into made no database");
    let count = |db: &TempDb| db.sql("select count(*), sum(id) from orders;");
    assert_eq!(count(&restored), count(&shop));
    assert!(tmp.path().join(format!("{}.dump", shop.name)).exists());
}
