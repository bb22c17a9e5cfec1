//! Behaviour every backend must show. Run against each backend: the local one
//! here, the S3 one against the test server.

use bytes::Bytes;
use time::{Duration, OffsetDateTime};

use super::{DeleteBackend, PutOutcome, StorageError};

/// Storage may round a retention up to its resolution, never down.
fn assert_locked_until(got: Option<OffsetDateTime>, wanted: OffsetDateTime) {
    let got = got.expect("a retention is reported");
    assert!(
        got >= wanted.replace_nanosecond(0).unwrap() && got - wanted < Duration::seconds(2),
        "retained until {got}, asked for {wanted}"
    );
    assert!(got.unix_timestamp() >= wanted.unix_timestamp() + i64::from(wanted.nanosecond() > 0));
}

pub fn run_all(b: &dyn DeleteBackend) {
    let now = OffsetDateTime::now_utc();
    let soon = now + Duration::days(1);
    let later = now + Duration::days(10);

    // Put, get, head.
    assert_eq!(
        b.put("chunks/aa/one", Bytes::from_static(b"first"), soon)
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(&b.get("chunks/aa/one", 1024).unwrap()[..], b"first");
    let info = b.head("chunks/aa/one").unwrap().unwrap();
    assert_eq!(info.size, 5);
    assert_locked_until(info.retain_until, soon);
    assert!(b.head("chunks/aa/missing").unwrap().is_none());
    assert!(b.get("chunks/aa/missing", 1024).unwrap_err().is_not_found());
    assert!(matches!(
        b.get("chunks/aa/one", 2).unwrap_err(),
        StorageError::TooLarge { .. }
    ));

    // Never overwrite.
    assert_eq!(
        b.put("chunks/aa/one", Bytes::from_static(b"other"), later)
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(&b.get("chunks/aa/one", 1024).unwrap()[..], b"first");

    // Retention only grows.
    b.extend_retention("chunks/aa/one", later).unwrap();
    b.extend_retention("chunks/aa/one", soon).unwrap();
    let info = b.head("chunks/aa/one").unwrap().unwrap();
    assert_locked_until(info.retain_until, later);
    assert!(
        b.extend_retention("chunks/aa/missing", later)
            .unwrap_err()
            .is_not_found()
    );

    // Delete refused while retained.
    let err = b.delete("chunks/aa/one").unwrap_err();
    assert!(matches!(err, StorageError::Retained { .. }), "{err}");
    assert!(b.head("chunks/aa/one").unwrap().is_some());

    // An expired object may be deleted (only prune holds a DeleteBackend).
    let past = now - Duration::seconds(5);
    b.put("snapshots/s/expired", Bytes::from_static(b"x"), past)
        .unwrap();
    b.delete("snapshots/s/expired").unwrap();
    assert!(b.head("snapshots/s/expired").unwrap().is_none());

    // List by prefix, in key order, with sizes.
    b.put("snapshots/s/b", Bytes::from_static(b"bb"), soon)
        .unwrap();
    b.put("snapshots/s/a", Bytes::from_static(b"a"), soon)
        .unwrap();
    b.put("snapshots/t/a", Bytes::from_static(b"t"), soon)
        .unwrap();
    let mut seen = Vec::new();
    b.list("snapshots/s/", &mut |i| {
        seen.push((i.key, i.size));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            ("snapshots/s/a".to_string(), 1),
            ("snapshots/s/b".to_string(), 2)
        ]
    );

    // Versions: every listed version can be headed; exactly one is deleted
    // by delete_version, and only once its retention has passed.
    b.put("chunks/bb/gone", Bytes::from_static(b"old"), past)
        .unwrap();
    let mut versions = Vec::new();
    b.list_versions("chunks/", &mut |v| {
        versions.push(v);
        Ok(())
    })
    .unwrap();
    let locked = versions.iter().find(|v| v.key == "chunks/aa/one").unwrap();
    let expired = versions.iter().find(|v| v.key == "chunks/bb/gone").unwrap();
    assert!(!locked.delete_marker && locked.size == 5 && locked.last_modified.is_some());
    let info = b
        .head_version(&locked.key, locked.version.as_deref())
        .unwrap()
        .unwrap();
    assert_locked_until(info.retain_until, later);
    let err = b
        .delete_version(&locked.key, locked.version.as_deref())
        .unwrap_err();
    assert!(matches!(err, StorageError::Retained { .. }), "{err}");
    b.delete_version(&expired.key, expired.version.as_deref())
        .unwrap();
    assert!(b.head("chunks/bb/gone").unwrap().is_none());
    assert!(
        b.delete_version(&expired.key, expired.version.as_deref())
            .is_err()
    );
    // A deleted object cannot have its lock extended (a backup then stores it again).
    assert!(
        b.extend_retention("chunks/bb/gone", later)
            .unwrap_err()
            .is_not_found()
    );
    b.flush().unwrap();
}
