//! `lockbox quickstart`: the whole job on an embedded default — a local
//! vault, an identity, a sample SQLite database, a backup and a verified
//! restore — using the same code paths as the real commands.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lockbox_vault::config::Config;
use lockbox_vault::keys;

use super::absolute;
use crate::cli::{BackupArgs, Command, InitArgs, QuickstartArgs, RestoreArgs};
use crate::render::human_bytes;

pub fn run(args: QuickstartArgs) -> Result<ExitCode> {
    let dir = absolute(&args.dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let identity = dir.join("identity.txt");
    let recipient = if identity.exists() {
        recipient_of(&identity)?
    } else {
        let (id, rcpt) = keys::generate_identity();
        keys::write_secret_file(&identity, keys::identity_file_text(&id).as_bytes())?;
        rcpt
    };
    let db = dir.join("sample.db");
    let rows = grow_sample_db(&db)?;
    let config_path = dir.join("lockbox.toml");
    if !config_path.exists() {
        std::fs::write(
            &config_path,
            format!(
                "# Written by `lockbox quickstart`; see examples/lockbox.toml for every key.\n\
                 state_dir = \"{state}\"\n\n[repository]\nurl = \"file://{vault}\"\n\
                 recipients = [\"{recipient}\"]\nlock_days = 1\n\n[[source]]\nname = \"sample\"\n\
                 kind = \"sqlite\"\npath = \"{db}\"\n",
                state = dir.join("state").display(),
                vault = dir.join("vault").display(),
                db = db.display(),
            ),
        )?;
    }
    let config = Config::load(&config_path)?;

    println!(
        "== 1. init: a write-once vault at {}",
        dir.join("vault").display()
    );
    super::dispatch(&config, Command::Init(InitArgs { identity: None }))?;
    println!("== 2. backup: sample.db ({rows} rows) through SQLite's online backup API");
    super::dispatch(
        &config,
        Command::Backup(BackupArgs {
            source: Some("sample".into()),
            stdin: None,
            all: false,
            json: false,
        }),
    )?;
    let restored = dir.join("restored.db");
    println!("== 3. restore: latest snapshot, every chunk and the whole stream verified");
    super::dispatch(
        &config,
        Command::Restore(RestoreArgs {
            snapshot: "latest".into(),
            source: Some("sample".into()),
            identity: identity.clone(),
            output: Some(restored.clone()),
            into: None,
            password_file: None,
            overwrite_source: None,
            force: true,
            json: false,
        }),
    )?;
    let back = count_rows(&restored)?;
    if back != rows {
        bail!("restored database has {back} rows, the source had {rows}");
    }
    println!(
        "== 4. the restored database opens and holds all {back} rows: {}",
        restored.display()
    );
    println!("\n{}", dedup_note(&config)?);
    // The commands below must work when pasted, also after `cargo run`,
    // where `lockbox` is not on PATH.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lockbox".into());
    println!(
        "\nTry:\n  \
         {exe} --config {cfg} snapshots\n  \
         {exe} --config {cfg} status\n  \
         {exe} quickstart --dir {dir}   # again: only what changed is stored\n\n\
         Next steps:\n  \
         1. A real database: install Lockbox (README \"Install\"), then copy examples/lockbox.toml \
         to /etc/lockbox/lockbox.toml, add a `kind = \"postgres\"` source with a read-only role \
         (examples/roles/), and run `lockbox config check`, `lockbox init`, `lockbox backup NAME`.\n  \
         2. A drill: `lockbox drill NAME` restores the newest snapshot into a scratch database, \
         checks it and records the last verified backup that `lockbox check` alerts on.\n  \
         3. Storage that cannot be deleted: an S3 bucket with Object Lock (README \"Moving to \
         S3\"), checked by `lockbox doctor`.\n\n\
         Keep {id} off backup hosts: backups need only the public recipient.",
        cfg = config_path.display(),
        dir = dir.display(),
        id = identity.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// What the last backup stored, against what it read: the proof that
/// unchanged data is not stored twice, in the user's own numbers.
fn dedup_note(config: &Config) -> Result<String> {
    let backend = lockbox_vault::access::open_read(config)?;
    let repo = lockbox_vault::repository::load_config(backend.as_ref())?;
    let catalog = lockbox_vault::catalog::Catalog::open(&config.catalog_path(), &repo.id)?;
    let snaps = catalog.snapshots(Some("sample"))?;
    let Some(last) = snaps.last() else {
        bail!("the catalog lists no snapshot of the sample after its backup");
    };
    Ok(if snaps.len() == 1 {
        format!(
            "The first backup read {} and stored {} (compressed and encrypted). Run quickstart \
             again: it adds 100 rows, and the next backup stores only the chunks that changed.",
            human_bytes(last.input_bytes),
            human_bytes(last.added_bytes),
        )
    } else {
        format!(
            "Backup {} of this database read {} but stored only {} new: the dump is split \
             into content-defined chunks named by their content; a chunk an earlier backup \
             stored is reused, and a changed chunk is stored as a small delta against its \
             earlier version, so unchanged data is not stored twice. Each snapshot still \
             restores the whole database on its own.",
            snaps.len(),
            human_bytes(last.input_bytes),
            human_bytes(last.added_bytes),
        )
    })
}

fn recipient_of(identity: &Path) -> Result<String> {
    let text = std::fs::read_to_string(identity)?;
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("{} has no '# public key:' line", identity.display()))
}

/// Creates the sample database, or adds a few rows on later runs so each
/// run has something new to back up.
fn grow_sample_db(path: &Path) -> Result<i64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total_cents INTEGER NOT NULL,
            note TEXT, created_at TEXT NOT NULL DEFAULT (datetime('now')));",
    )?;
    let existing: i64 = conn.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?;
    let add = if existing == 0 { 20_000 } else { 100 };
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt =
            tx.prepare("INSERT INTO orders(customer, total_cents, note) VALUES (?1, ?2, ?3)")?;
        for i in existing..existing + add {
            stmt.execute(rusqlite::params![
                format!("customer-{}", i % 997),
                (i * 7919) % 100_000,
                if i % 5 == 0 {
                    None
                } else {
                    Some(format!("order {i}: gift wrap, ünïcode ✓"))
                }
            ])?;
        }
    }
    tx.commit()?;
    count_rows(path)
}

fn count_rows(path: &Path) -> Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if ok != "ok" {
        bail!("{}: integrity check failed: {ok}", path.display());
    }
    Ok(conn.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?)
}
