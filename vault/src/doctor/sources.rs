//! Least-privilege checks of database sources: Lockbox pulls with an
//! account that can read everything and change nothing. Each check logs in
//! exactly as the backup does and WARNs with the statements that fix it.

use crate::config::{Config, DatabaseSource, DbFlavor, SourceKind};
use crate::source;

use super::{Check, Status, check};

/// MariaDB/MySQL privileges a dump account may hold (USAGE is "none").
const MARIADB_ALLOWED: &[&str] = &[
    "SELECT",
    "SHOW VIEW",
    "TRIGGER",
    "LOCK TABLES",
    "EVENT",
    "PROCESS",
    "USAGE",
];

/// What the PostgreSQL role may do, as one JSON document.
const PG_PRIVILEGES_SQL: &str = r#"
select json_build_object(
  'user', current_user,
  'database', current_database(),
  'superuser', r.rolsuper,
  'bootstrap', r.oid = 10,
  'createrole', r.rolcreaterole,
  'createdb', r.rolcreatedb,
  'read_all_data', coalesce((select pg_has_role(current_user, oid, 'MEMBER')
                             from pg_roles where rolname = 'pg_read_all_data'), false),
  'db_create', has_database_privilege(current_database(), 'CREATE'),
  'schema_create', coalesce((select json_agg(nspname order by nspname) from pg_namespace
      where nspname not like 'pg\_%' and nspname <> 'information_schema'
        and has_schema_privilege(oid, 'CREATE')), '[]'::json),
  'write_schemas', coalesce((select json_agg(distinct n.nspname) from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and n.nspname not like 'pg\_%'
        and n.nspname <> 'information_schema'
        and (has_table_privilege(c.oid, 'INSERT') or has_table_privilege(c.oid, 'UPDATE')
             or has_table_privilege(c.oid, 'DELETE') or has_table_privilege(c.oid, 'TRUNCATE'))),
      '[]'::json),
  'owned', (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and n.nspname not like 'pg\_%'
        and n.nspname <> 'information_schema' and pg_get_userbyid(c.relowner) = current_user),
  'unreadable', (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and n.nspname not like 'pg\_%'
        and n.nspname <> 'information_schema' and not has_table_privilege(c.oid, 'SELECT'))
) from pg_roles r where r.rolname = current_user
"#;

/// One check per database source.
pub(super) fn checks(config: &Config, out: &mut Vec<Check>) {
    for src in &config.sources {
        let SourceKind::Database(db) = src.kind() else {
            continue;
        };
        let name = format!("source {}: least privilege", src.name);
        let result = match db.flavor {
            DbFlavor::Postgres => postgres(&src.name, db, config),
            _ => mariadb(&src.name, db, config),
        };
        out.push(match result {
            Ok((status, detail)) => check(&name, status, detail),
            Err(detail) => check(&name, Status::Fail, detail),
        });
    }
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn postgres(
    source_name: &str,
    db: &DatabaseSource,
    config: &Config,
) -> Result<(Status, String), String> {
    let out = source::query_as_source(source_name, db, &config.tmp_dir(), PG_PRIVILEGES_SQL)
        .map_err(|e| format!("cannot log in as the backup role: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("unexpected answer from psql ({e})"))?;
    let user = v["user"].as_str().unwrap_or("?").to_string();
    let role = pg_ident(&user);
    let database = v["database"].as_str().unwrap_or("?");
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if v["superuser"] == true {
        return Ok((
            Status::Warn,
            superuser_advice(source_name, &user, v["bootstrap"] == true),
        ));
    }
    if v["createrole"] == true || v["createdb"] == true {
        problems.push("can create roles or databases".to_string());
        fixes.push(format!("ALTER ROLE {role} NOCREATEROLE NOCREATEDB;"));
    }
    if v["db_create"] == true {
        problems.push(format!("has CREATE on database {database}"));
        fixes.push(format!(
            "REVOKE CREATE ON DATABASE {} FROM {role};",
            pg_ident(database)
        ));
    }
    for s in v["schema_create"].as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or("?");
        problems.push(format!("has CREATE on schema {s}"));
        fixes.push(format!(
            "REVOKE CREATE ON SCHEMA {} FROM {role}, PUBLIC;",
            pg_ident(s)
        ));
    }
    let write: Vec<&str> = v["write_schemas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect();
    if !write.is_empty() {
        problems.push(format!(
            "holds INSERT/UPDATE/DELETE/TRUNCATE on tables in schema(s) {}",
            write.join(", ")
        ));
        for s in &write {
            fixes.push(format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} FROM {role};",
                pg_ident(s)
            ));
        }
        if v["owned"].as_i64().unwrap_or(0) > 0 {
            fixes.push(
                "-- it OWNS tables (owners keep every right): back up as a separate role, \
                 see examples/roles/postgres.sql"
                    .into(),
            );
        }
    }
    if v["unreadable"].as_i64().unwrap_or(0) > 0 && v["read_all_data"] != true {
        problems.push(format!(
            "cannot read {} table(s), so the dump would fail",
            v["unreadable"]
        ));
    }
    if problems.is_empty() {
        return Ok((
            Status::Pass,
            format!("role {user} is read-only on {database}"),
        ));
    }
    if v["read_all_data"] != true {
        fixes.push(format!("GRANT pg_read_all_data TO {role};"));
    }
    Ok((
        Status::Warn,
        format!(
            "role {user} {}; fix with: {}",
            problems.join("; "),
            fixes.join(" ")
        ),
    ))
}

/// What to do when a source logs in as a superuser: back up as a dedicated
/// read-only role and point the source at it. Demoting the role is offered
/// only for a superuser that is not the cluster's bootstrap role (oid 10,
/// usually `postgres`): that one must stay a superuser, and demoting it
/// would lock the administrators out.
fn superuser_advice(source_name: &str, user: &str, bootstrap: bool) -> String {
    let what = if bootstrap || user == "postgres" {
        "the cluster's bootstrap superuser (it can change and delete anything, and must stay a \
         superuser)"
    } else {
        "a superuser (it can change and delete anything)"
    };
    let mut advice = format!(
        "role {user} is {what}. Back up as a dedicated read-only role instead: create it as in \
         examples/roles/postgres.sql (CREATE ROLE lockbox_backup LOGIN PASSWORD '…'; GRANT \
         pg_read_all_data TO lockbox_backup;), then set user = \"lockbox_backup\" and its \
         password_file or password_env in source {source_name}"
    );
    if !(bootstrap || user == "postgres") {
        advice.push_str(&format!(
            ". Only if {user} exists for nothing but backups: ALTER ROLE {} NOSUPERUSER \
             NOCREATEROLE NOCREATEDB; GRANT pg_read_all_data TO {};",
            pg_ident(user),
            pg_ident(user)
        ));
    }
    advice
}

/// The privileges and object of one `SHOW GRANTS` line, e.g.
/// ("SELECT, INSERT", "`shop`.*"); `None` for role grants and others.
fn parse_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.strip_prefix("GRANT ")?;
    let on = rest.find(" ON ")?;
    let privs = &rest[..on];
    let after = &rest[on + 4..];
    let to = after.find(" TO ")?;
    // Column lists, e.g. SELECT (`a`, `b`), contain commas: drop them first.
    let mut plain = String::new();
    let mut depth = 0;
    for c in privs.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let list = plain
        .split(',')
        .map(|p| p.trim().to_uppercase())
        .filter(|p| !p.is_empty())
        .collect();
    Some((list, after[..to].trim().to_string()))
}

fn mariadb(
    source_name: &str,
    db: &DatabaseSource,
    config: &Config,
) -> Result<(Status, String), String> {
    let out = source::query_as_source(
        source_name,
        db,
        &config.tmp_dir(),
        "SELECT CURRENT_USER(); SHOW GRANTS",
    )
    .map_err(|e| format!("cannot log in as the backup account: {e}"))?;
    let mut lines = out.lines();
    let current = lines.next().unwrap_or("?").to_string();
    let account = match current.rsplit_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => current.clone(),
    };
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for line in lines {
        if line.starts_with("GRANT PROXY ") {
            problems.push("holds PROXY".to_string());
            continue;
        }
        let Some((privs, object)) = parse_grant(line) else {
            if line.starts_with("GRANT ") {
                // A role granted to the account: its rights are not listed here.
                let granted = line.split(" TO ").next().unwrap_or(line);
                problems.push(format!("has a role ({granted}); check its grants too"));
            }
            continue;
        };
        let bad: Vec<&String> = privs
            .iter()
            .filter(|p| !MARIADB_ALLOWED.contains(&p.as_str()))
            .collect();
        if !bad.is_empty() {
            let list = bad
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            problems.push(format!("{list} on {object}"));
            fixes.push(format!("REVOKE {list} ON {object} FROM {account};"));
        }
        if line.contains("WITH GRANT OPTION") {
            problems.push(format!("GRANT OPTION on {object}"));
            fixes.push(format!("REVOKE GRANT OPTION ON {object} FROM {account};"));
        }
    }
    if problems.is_empty() {
        return Ok((
            Status::Pass,
            format!(
                "account {current} holds only read-only privileges ({})",
                MARIADB_ALLOWED[..6].join(", ")
            ),
        ));
    }
    let database = db.database.as_deref().unwrap_or("DB");
    Ok((
        Status::Warn,
        format!(
            "account {current} can change data: {}. Back up as a dedicated read-only account \
             (see examples/roles/mariadb.sql): CREATE USER 'lockbox_backup'@'HOST' IDENTIFIED BY \
             '…'; GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `{database}`.* TO \
             'lockbox_backup'@'HOST'; GRANT PROCESS ON *.* TO 'lockbox_backup'@'HOST'; \
             or, if {current} exists only for backups: {}",
            problems.join("; "),
            fixes.join(" ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grant_lines() {
        let (p, o) = parse_grant(
            "GRANT SELECT, INSERT, SHOW VIEW ON `shop`.* TO `bk`@`%` IDENTIFIED BY PASSWORD '*AB'",
        )
        .unwrap();
        assert_eq!(p, ["SELECT", "INSERT", "SHOW VIEW"]);
        assert_eq!(o, "`shop`.*");
        let (p, _) =
            parse_grant("GRANT SELECT (`a`, `b`), UPDATE (`c`) ON `s`.`t` TO `x`@`%`").unwrap();
        assert_eq!(p, ["SELECT", "UPDATE"]);
        assert!(parse_grant("GRANT `reader` TO `x`@`%`").is_none());
    }

    /// The bootstrap superuser is never told to give up superuser.
    #[test]
    fn superuser_advice_never_demotes_the_bootstrap_role() {
        for (user, bootstrap) in [("postgres", true), ("admin", true), ("postgres", false)] {
            let a = superuser_advice("orders", user, bootstrap);
            assert!(!a.contains("NOSUPERUSER"), "{a}");
            assert!(a.contains("bootstrap superuser"), "{a}");
            assert!(
                a.contains("examples/roles/postgres.sql")
                    && a.contains("set user = \"lockbox_backup\"")
                    && a.contains("in source orders"),
                "{a}"
            );
        }
        let a = superuser_advice("orders", "backup", false);
        assert!(a.contains("ALTER ROLE \"backup\" NOSUPERUSER"), "{a}");
        assert!(a.contains("set user = \"lockbox_backup\""), "{a}");
    }
}
