//! PostgreSQL tools (`pg_dump`, `psql`, `pg_restore`): the passfile and the
//! environment every one of them gets.

use std::path::Path;
use std::process::Command;

use super::Secret;

/// Prefix of passfile names in the private directory.
pub const PASSFILE_PREFIX: &str = "pgpass-";

/// The passfile line `host:port:database:user:password` with `:` and `\`
/// escaped; wildcards match whatever the arguments name.
pub fn passfile_line(password: &Secret) -> String {
    let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

/// The environment of a PostgreSQL tool: the password through `passfile`
/// (`PGPASSWORD` would take precedence, so it is removed then), no password
/// variable of Lockbox's, a connect timeout unless the operator set one, and
/// `app_name` as the application name the server logs.
pub fn configure_env(cmd: &mut Command, passfile: Option<&Path>, app_name: &str) {
    if let Some(pf) = passfile {
        cmd.env_remove("PGPASSWORD").env("PGPASSFILE", pf);
    }
    super::scrub_child_env(cmd);
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", "30");
    }
    cmd.env("PGAPPNAME", app_name);
}

/// Quotes an identifier (`"a""b"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_escapes_separators() {
        let s = Secret::new("a:b\\c");
        assert_eq!(passfile_line(&s), "*:*:*:*:a\\:b\\\\c\n");
    }
}
