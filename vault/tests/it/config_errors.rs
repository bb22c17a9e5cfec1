//! A table of malformed configurations: each must fail to load with its own
//! one-line error that names the file and the full key path at fault
//! (`source[1].schedule`, `repository.s3.endpoint`, …), so the operator can
//! go straight to the line. Syntax errors name the line and column.

use lockbox_vault::config::Config;

const RCPT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// A real age secret key (of no use to anyone): it must never be echoed.
const SECRET_KEY: &str =
    "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

fn base() -> String {
    format!(
        "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\nrecipients = [\"{RCPT}\"]\nlock_days = 30\n"
    )
}

fn s3() -> String {
    base().replace("file:///srv/lockbox", "s3://my-vault/lockbox")
}

/// `base()` plus a valid sqlite source `ok`, then `source` (a second one).
fn with_sources(second: &str) -> String {
    format!(
        "{}\n[[source]]\nname = \"ok\"\nkind = \"sqlite\"\npath = \"/srv/ok.db\"\n\n[[source]]\n{second}",
        base()
    )
}

fn pg(extra: &str) -> String {
    with_sources(&format!(
        "name = \"orders\"\nkind = \"postgres\"\nhost = \"db\"\ndatabase = \"orders\"\n{extra}"
    ))
}

/// (case, config text, substrings the error must contain).
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        (
            "syntax error",
            base() + "lock_slack_days = \n",
            vec!["line 6, column", "t.toml"],
        ),
        (
            "duplicate key",
            base() + "lock_days = 31\n",
            vec!["duplicate key", "line 6"],
        ),
        (
            "missing section",
            "state_dir = \"/x\"\n".into(),
            vec!["repository: missing field `repository`"],
        ),
        (
            "missing required key",
            base().replace("url = \"file:///srv/lockbox\"\n", ""),
            vec!["repository.url: missing field `url`"],
        ),
        (
            "unknown key in a table",
            base().replace("lock_days = 30", "lock_dayz = 30"),
            vec!["repository.lock_dayz: unknown field `lock_dayz`", "line 5"],
        ),
        (
            "unknown top-level key",
            base().replace("state_dir", "statedir"),
            vec!["statedir: unknown field `statedir`", "line 1"],
        ),
        (
            "wrong type",
            base().replace("lock_days = 30", "lock_days = \"30\""),
            vec![
                "repository.lock_days: invalid type: string \"30\"",
                "line 5",
            ],
        ),
        (
            "negative number",
            base().replace("lock_days = 30", "lock_days = -1"),
            vec!["repository.lock_days: invalid value: integer `-1`"],
        ),
        (
            "lock days out of range",
            base().replace("lock_days = 30", "lock_days = 3651"),
            vec!["repository.lock_days: must be between 1 and 3650"],
        ),
        (
            "relative state_dir",
            base().replace("/var/lib/lockbox", "var/lib/lockbox"),
            vec!["state_dir: must be an absolute path"],
        ),
        (
            "bad recipient",
            base().replace(RCPT, "age1nope"),
            vec!["repository.recipients: recipient #0 is not an age X25519 recipient"],
        ),
        (
            "no recipients",
            base().replace(&format!("[\"{RCPT}\"]"), "[]"),
            vec!["repository.recipients: no recipients configured"],
        ),
        (
            "the example's placeholder recipient",
            base().replace(RCPT, lockbox_vault::keys::EXAMPLE_RECIPIENT),
            vec![
                "repository.recipients[0]: the placeholder from examples/lockbox.toml, whose \
                 secret key nobody has: backups to it could never be restored; run `lockbox \
                 keygen --output FILE` and paste the recipient it prints",
            ],
        ),
        (
            "a secret key pasted as the second recipient",
            base().replace(
                &format!("\"{RCPT}\""),
                &format!("\"{RCPT}\", \"{SECRET_KEY}\""),
            ),
            vec![
                "repository.recipients[1]: a secret key, not a recipient: paste its public \
                 recipient (`age-keygen -y FILE`), and keep the secret key off the backup host",
            ],
        ),
        (
            "an SSH recipient",
            base().replace(RCPT, SSH_KEY),
            vec![
                "repository.recipients[0]: SSH recipients are not supported; use an age X25519 \
                 recipient (age1…)",
            ],
        ),
        (
            "unknown URL scheme",
            base().replace("file:///srv/lockbox", "ftp://backup.example/x"),
            vec!["repository.url: \"ftp://backup.example/x\" is not a repository URL"],
        ),
        (
            "relative file URL",
            base().replace("file:///srv/lockbox", "file://srv/lockbox"),
            vec!["repository.url: \"file://srv/lockbox\": file:// URLs need an absolute path"],
        ),
        (
            "bad bucket name",
            base().replace("file:///srv/lockbox", "s3://UPPER/x"),
            vec!["repository.url:", "UPPER"],
        ),
        (
            "percentage over 100",
            base() + "delta_max_percent = 101\n",
            vec!["repository.delta_max_percent: is 101; it is a percentage"],
        ),
        (
            "S3 settings on a local repository",
            base() + "[repository.s3]\nregion = \"eu-west-1\"\n",
            vec!["repository.s3: applies only to s3:// repositories"],
        ),
        (
            "S3 endpoint without scheme",
            s3() + "[repository.s3]\nendpoint = \"minio:9000\"\n",
            vec!["repository.s3.endpoint: must be an http:// or https:// URL"],
        ),
        (
            "S3 secret in the config",
            s3() + "[repository.s3]\nsecret_access_key = \"x\"\n",
            vec!["repository.s3.secret_access_key: unknown field `secret_access_key`"],
        ),
        (
            "S3 lock mode misspelt",
            s3() + "lock_mode = \"loose\"\n",
            vec!["repository.lock_mode: unknown variant `loose`"],
        ),
        (
            "source name",
            with_sources("name = \"a b\"\nkind = \"sqlite\"\npath = \"/x.db\"\n"),
            vec!["source[1].name: \"a b\" is not a valid source name"],
        ),
        (
            "duplicate source",
            with_sources("name = \"ok\"\nkind = \"sqlite\"\npath = \"/y.db\"\n"),
            vec!["source[1].name: duplicate source name \"ok\""],
        ),
        (
            "unknown source kind",
            with_sources("name = \"t\"\nkind = \"tape\"\n"),
            vec!["source[1].kind: unknown source kind \"tape\""],
        ),
        (
            "unknown key in a source",
            with_sources("name = \"t\"\nkind = \"sqlite\"\npath = \"/x.db\"\nflavour = 1\n"),
            vec!["source[1].flavour: unknown field `flavour`"],
        ),
        (
            "key of another kind",
            with_sources("name = \"t\"\nkind = \"sqlite\"\npath = \"/x.db\"\ncommand = [\"x\"]\n"),
            vec!["source[1].command: does not apply to kind = \"sqlite\""],
        ),
        (
            "bad schedule",
            with_sources(
                "name = \"t\"\nkind = \"sqlite\"\npath = \"/x.db\"\nschedule = \"61 * * * *\"\n",
            ),
            vec!["source[1].schedule:"],
        ),
        (
            "bad timeout",
            with_sources("name = \"t\"\nkind = \"sqlite\"\npath = \"/x.db\"\ntimeout = \"soon\"\n"),
            vec!["source[1].timeout:"],
        ),
        (
            "port out of range",
            pg("port = 70000\n"),
            vec!["source[1].port: invalid value: integer `70000`"],
        ),
        (
            "password in the URL",
            with_sources(
                "name = \"o\"\nkind = \"postgres\"\nurl = \"postgresql://u:pw@db/orders\"\n",
            ),
            vec!["source[1].url: must not contain a password"],
        ),
        (
            "password instead of a variable name",
            pg("password_env = \"hunter2!\"\n"),
            vec!["source[1].password_env: must be the NAME of an environment variable"],
        ),
        (
            "relative password file",
            pg("password_file = \"pw.txt\"\n"),
            vec!["source[1].password_file: must be an absolute path"],
        ),
        (
            "database missing",
            with_sources("name = \"o\"\nkind = \"mariadb\"\nhost = \"db\"\n"),
            vec!["source[1].database: is required for kind = \"mariadb\""],
        ),
        (
            "drill target",
            pg("[source.drill]\ntarget = \"http://drill\"\n"),
            vec!["source[1].drill.target:"],
        ),
        (
            "drill check key misspelt",
            pg(
                "[source.drill]\ntarget = \"postgresql://d@drill/postgres\"\n[[source.drill.check]]\nname = \"n\"\nsqll = \"select 1\"\n",
            ),
            vec!["source[1].drill.check[0].sqll: unknown field `sqll`"],
        ),
        (
            "retention keep zero",
            base() + "[retention]\nkeep_daily = 0\n",
            vec!["retention.keep_daily: must be at least 1"],
        ),
        (
            "retention keep negative",
            base() + "[retention]\nkeep_weekly = -3\n",
            vec!["retention.keep_weekly: invalid value: integer `-3`"],
        ),
        (
            "source keep zero",
            with_sources("name = \"t\"\nkind = \"sqlite\"\npath = \"/x.db\"\nkeep_last = 0\n"),
            vec!["source[1].keep_last: must be at least 1"],
        ),
        (
            "time zone",
            base() + "[daemon]\ntimezone = \"Mars/Olympus\"\n",
            vec!["daemon.timezone:"],
        ),
        (
            "listen address",
            base() + "[daemon]\nlisten = \"localhost\"\n",
            vec!["daemon.listen: \"localhost\" is not an IP address and port"],
        ),
        (
            "unknown notify event",
            base()
                + "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\non = [\"backup_exploded\"]\n",
            vec![
                "notify[0].on[0]: unknown variant `backup_exploded`",
                "line 9",
            ],
        ),
        (
            "unknown notify kind",
            base() + "[[notify]]\nkind = \"email\"\n",
            vec!["notify[0].kind: unknown notify kind \"email\""],
        ),
        (
            "notify url missing",
            base() + "[[notify]]\nkind = \"ping\"\n",
            vec!["notify[0].url: is required for kind = \"ping\""],
        ),
        (
            "notify secret inline",
            base()
                + "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret = \"hunter2\"\n",
            vec!["notify[0].secret: a secret must not be written in the config"],
        ),
        (
            "zero health threshold",
            base() + "[health]\nmax_backup_age = \"0s\"\n",
            vec!["health.max_backup_age: must be longer than 0s"],
        ),
    ]
}

#[test]
fn each_malformed_config_gets_its_own_error_naming_the_key() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (name, text, needles) in &cases {
        let err = match Config::parse(text, "t.toml") {
            Ok(_) => panic!("case {name:?}: the config was accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            assert!(
                err.contains(needle),
                "case {name:?}: error {err:?} does not contain {needle:?}"
            );
        }
        eprintln!("{name:>36}: {err}");
        assert!(
            err.starts_with("config file t.toml: "),
            "case {name:?}: {err:?}"
        );
        assert!(!err.contains('\n'), "case {name:?}: not one line: {err:?}");
        assert!(
            !err.contains("AGE-SECRET-KEY")
                && !err.contains(&SECRET_KEY[15..40])
                && !err.contains("hunter2"),
            "case {name:?}: echoes a secret: {err:?}"
        );
        if let Some((_, other)) = seen.iter().find(|(e, _)| *e == err) {
            panic!("cases {other:?} and {name:?} give the same error {err:?}");
        }
        seen.push((err, name));
    }
}

/// The same errors reach the operator through `Config::load` with the path.
#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockbox.toml");
    std::fs::write(&path, base().replace("lock_days = 30", "lock_days = 0")).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("repository.lock_days"),
        "{err}"
    );
}
