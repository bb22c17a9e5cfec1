//! Notification counts: how many deliveries to `[[notify]]` targets went
//! through or failed, by kind, for `lockbox_notifications_total`. One-shot
//! commands send their own notifications, so the count lives here rather
//! than in a process. Like run history, only the catalog holds it.

use rusqlite::params;

use super::{Catalog, CatalogError};

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notifications (
    kind TEXT NOT NULL, outcome TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (kind, outcome)) WITHOUT ROWID;";

impl Catalog {
    /// Adds each delivery, given as (kind, delivered), to its (kind,
    /// `ok`|`failed`) count.
    pub fn count_notifications(&self, deliveries: &[(&str, bool)]) -> Result<(), CatalogError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // One transaction, without needing `&mut`: callers share the catalog.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(super::sqlite_err(&self.path))?;
        for (kind, ok) in deliveries {
            tx.execute(
                "INSERT INTO notifications (kind, outcome, count) VALUES (?1, ?2, 1)
                 ON CONFLICT(kind, outcome) DO UPDATE SET count = count + 1",
                params![kind, if *ok { "ok" } else { "failed" }],
            )
            .map_err(super::sqlite_err(&self.path))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every (kind, outcome, count), sorted.
    pub fn notification_counts(&self) -> Result<Vec<(String, String, u64)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, outcome, count FROM notifications ORDER BY kind, outcome")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_deliveries_are_counted_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let cat = Catalog::open(&path, "repo").unwrap();
        assert!(cat.notification_counts().unwrap().is_empty());
        cat.count_notifications(&[("webhook", true), ("ping", false)])
            .unwrap();
        drop(cat);
        let cat = Catalog::open(&path, "repo").unwrap();
        cat.count_notifications(&[("webhook", true)]).unwrap();
        assert_eq!(
            cat.notification_counts().unwrap(),
            vec![
                ("ping".into(), "failed".into(), 1),
                ("webhook".into(), "ok".into(), 2)
            ]
        );
    }
}
