//! SQLite targets: the file itself. Loading is a verified file renamed into
//! place (see `restore_into`); queries use the bundled SQLite.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{LoadError, TableName};

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> LoadError {
    LoadError::Io {
        what: format!("SQLite database {}: {what}", path.display()),
        reason: e.to_string(),
    }
}

fn open_ro(path: &Path) -> Result<Connection, LoadError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| err(path, "opening", e))
}

pub(super) fn create(path: &Path) -> Result<(), LoadError> {
    if path.exists() {
        return Err(err(path, "creating", "it already exists"));
    }
    Connection::open(path)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 0"))
        .map_err(|e| err(path, "creating", e))
}

pub(super) fn drop(path: &Path) -> Result<(), LoadError> {
    for p in [
        path.to_path_buf(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&p, "removing", e)),
        }
    }
    Ok(())
}

pub(super) fn is_empty(path: &Path) -> Result<bool, LoadError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(err(path, "inspecting", e)),
        Ok(m) if m.len() == 0 => return Ok(true),
        Ok(_) => {}
    }
    let n: i64 = open_ro(path)?
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| err(path, "reading its schema", e))?;
    Ok(n == 0)
}

pub(super) fn query_scalar(path: &Path, sql: &str) -> Result<Option<String>, LoadError> {
    let c = open_ro(path)?;
    let mut stmt = c.prepare(sql).map_err(|e| err(path, "query", e))?;
    let mut rows = stmt.query([]).map_err(|e| err(path, "query", e))?;
    let Some(row) = rows.next().map_err(|e| err(path, "query", e))? else {
        return Ok(None);
    };
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(0).map_err(|e| err(path, "query", e))? {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(hex::encode(b)),
    })
}

pub(super) fn list_tables(path: &Path) -> Result<Vec<TableName>, LoadError> {
    let c = open_ro(path)?;
    let mut stmt = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .map_err(|e| err(path, "listing tables", e))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(path, "listing tables", e))?;
    Ok(names
        .into_iter()
        .map(|name| TableName { schema: None, name })
        .collect())
}
