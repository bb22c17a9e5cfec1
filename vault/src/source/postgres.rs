//! `kind = "postgres"`: `pg_dump --format=custom --compress=0`, with table
//! metadata from `psql` first. The password reaches both only through a
//! temporary passfile (0600) named by `PGPASSFILE`, never argv.

use std::path::Path;
use std::process::Command;

use crate::config::DatabaseSource;

use super::db::{self, Wrap};
use super::{DumpStream, SourceError};
use crate::dbtool;

/// Tables with fewer estimated rows than this are counted exactly.
pub const EXACT_COUNT_BELOW: u64 = 100_000;

/// One JSON document: server version, database size, tables with row
/// counts (exact `count(*)` when cheap, else the planner's estimate).
const METADATA_SQL: &str = r#"
select json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'database', current_database(),
  'database_size', pg_database_size(current_database()),
  'tables', coalesce((
    select json_agg(json_build_object(
             'schema', t.schema, 'name', t.name, 'rows', t.rows, 'exact', t.cheap)
           order by t.schema, t.name)
    from (
      select n.nspname as schema, c.relname as name, x.cheap,
             case when x.cheap
                  then (xpath('/row/c/text()', query_to_xml(
                          format('select count(*) as c from %I.%I', n.nspname, c.relname),
                          false, true, '')))[1]::text::bigint
                  when c.reltuples >= 0 then c.reltuples::bigint
             end as rows
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      cross join lateral (
        select has_table_privilege(c.oid, 'SELECT')
               and ((c.reltuples >= 0 and c.reltuples < __LIMIT__)
                    or (c.reltuples < 0 and pg_relation_size(c.oid) < 16777216)) as cheap
      ) x
      where c.relkind = 'r'
        and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname not like 'pg\_toast%'
        and n.nspname not like 'pg\_temp%'
    ) t), '[]'::json))
"#;

fn connection_args(db: &DatabaseSource) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(url) = &db.url {
        args.push(format!("--dbname={url}"));
        return args;
    }
    if let Some(h) = &db.host {
        args.push(format!("--host={h}"));
    }
    if let Some(p) = db.port {
        args.push(format!("--port={p}"));
    }
    if let Some(u) = &db.user {
        args.push(format!("--username={u}"));
    }
    if let Some(d) = &db.database {
        args.push(format!("--dbname={d}"));
    }
    args
}

/// Environment shared by psql and pg_dump: the passfile, never a password.
fn configure(cmd: &mut Command, db: &DatabaseSource, passfile: Option<&Path>) {
    dbtool::postgres::configure_env(cmd, passfile, "lockbox");
    if let Some(crate::config::PasswordFrom::Env(var)) = &db.password {
        cmd.env_remove(var);
    }
}

/// psql as the source's role, in a read-only transaction, unaligned and
/// tuples only, running `statements` in order (each one `-c`).
fn psql(db: &DatabaseSource, passfile: Option<&Path>, statements: &[&str]) -> Command {
    let mut q = Command::new(db::client_beside(&db.dump_tool, "psql"));
    q.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .args(connection_args(db))
    .args(["-c", "set default_transaction_read_only = on"]);
    for sql in statements {
        q.args(["-c", sql]);
    }
    configure(&mut q, db, passfile);
    q
}

pub(super) fn open(
    source_name: &str,
    db: &DatabaseSource,
    tmp_dir: &Path,
) -> Result<DumpStream, SourceError> {
    let login = db::login(source_name, db.password.as_ref(), tmp_dir)?;
    let passfile = db::credentials_file(
        source_name,
        &login,
        dbtool::postgres::PASSFILE_PREFIX,
        dbtool::postgres::passfile_line,
    )?;
    let pf_path = passfile.as_ref().map(|f| f.path().to_path_buf());
    let conn = connection_args(db);

    let mut info = serde_json::json!({
        "dump_tool": db.dump_tool,
        "format": "pg_dump custom, --compress=0 (restore with pg_restore)",
    });
    let metadata_sql = METADATA_SQL.replace("__LIMIT__", &EXACT_COUNT_BELOW.to_string());
    let q = psql(
        db,
        pf_path.as_deref(),
        &["set statement_timeout = '120s'", &metadata_sql],
    );
    match db::run_query(source_name, q, &login) {
        Ok(out) => match serde_json::from_str::<serde_json::Value>(out.trim()) {
            Ok(serde_json::Value::Object(m)) => {
                info.as_object_mut().expect("object").extend(m);
                info["metadata"] = "collected by psql just before the dump".into();
            }
            _ => {
                tracing::warn!(source = %source_name, "psql metadata output is not JSON; ignored");
                info["metadata"] = "unavailable".into();
            }
        },
        Err(Some(e)) => return Err(e),
        Err(None) => info["metadata"] = "unavailable".into(),
    }

    let mut cmd = Command::new(&db.dump_tool);
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .args(&conn);
    if let Some(wait) = db.lock_wait_timeout {
        cmd.arg(format!("--lock-wait-timeout={}", wait.as_millis()));
    }
    configure(&mut cmd, db, pf_path.as_deref());
    db::spawn_dump(
        source_name,
        cmd,
        Wrap {
            kind: "postgres",
            info,
            login,
            temp_files: passfile.into_iter().collect(),
            trailer: None,
        },
    )
}

/// Runs `sql` with psql as the source's role (read-only transaction);
/// unaligned, tuples only.
pub(crate) fn query(
    source_name: &str,
    db: &DatabaseSource,
    tmp_dir: &Path,
    sql: &str,
) -> Result<String, SourceError> {
    let login = db::login(source_name, db.password.as_ref(), tmp_dir)?;
    let passfile = db::credentials_file(
        source_name,
        &login,
        dbtool::postgres::PASSFILE_PREFIX,
        dbtool::postgres::passfile_line,
    )?;
    let q = psql(db, passfile.as_ref().map(|f| f.path()), &[sql]);
    db::run_checked(source_name, q, &login)
}
