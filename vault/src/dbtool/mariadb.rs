//! MariaDB/MySQL tools (`mariadb-dump`/`mysqldump`, `mariadb`/`mysql`): the
//! options file and the environment every one of them gets. The options file
//! must be the tool's very first argument ([`defaults_arg`]), or it is
//! ignored.

use std::process::Command;

use super::Secret;

/// Prefix of options file names in the private directory.
pub const OPTIONS_PREFIX: &str = "my-";

/// The options file for the password: quoted, with the escapes MySQL
/// option files understand.
pub fn options_file(password: &Secret) -> String {
    let mut v = String::new();
    for c in password.expose().chars() {
        match c {
            '\\' => v.push_str("\\\\"),
            '"' => v.push_str("\\\""),
            '\n' => v.push_str("\\n"),
            '\r' => v.push_str("\\r"),
            '\t' => v.push_str("\\t"),
            c => v.push(c),
        }
    }
    format!("[client]\npassword=\"{v}\"\n")
}

/// `--defaults-extra-file=PATH`, to be the first argument.
pub fn defaults_arg(file: &tempfile::NamedTempFile) -> String {
    format!("--defaults-extra-file={}", file.path().display())
}

/// The environment of a MariaDB/MySQL tool: no `MYSQL_PWD` (the tools read
/// the password from the options file only) and no password variable of
/// Lockbox's.
pub fn configure_env(cmd: &mut Command) {
    cmd.env_remove("MYSQL_PWD");
    super::scrub_child_env(cmd);
}

/// Quotes an identifier (`` `a``b` ``).
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_file_quotes_the_password() {
        let s = Secret::new("p\"a\\ss w");
        assert_eq!(options_file(&s), "[client]\npassword=\"p\\\"a\\\\ss w\"\n");
    }
}
