//! Retry decorator: wraps any backend and repeats calls that failed with a
//! transient error ([`StorageError::is_transient`]), with exponential backoff.
//!
//! [`open_write_with`](super::open_write_with) wraps every backend in it, so
//! backup, restore, verify and the other commands share one policy. It sits
//! above the S3 SDK's own per-request retries and covers what those do not:
//! a body cut short or a connection dropped while reading, and outages longer
//! than the SDK's few seconds of backoff (or after its retry quota ran out).
//!
//! Why every operation may be repeated:
//! * get, head, list, get_verified: reads.
//! * put: keys are content addresses and a put never replaces an object, so
//!   a put that landed but reported a failure (the response was lost) returns
//!   [`PutOutcome::AlreadyExists`] when repeated — the same bytes, a success.
//!   Callers that adopt an existing object read it back and record what is
//!   actually stored (backup's `adopt_existing`), so they never trust bytes
//!   they did not see.
//! * extend_retention: only ever raises a retention; repeating it is a no-op.
//! * flush: idempotent.
//!
//! Reads also re-read bytes that fail the caller's check in
//! [`get_verified`](ReadBackend::get_verified) a few times before handing
//! them on: damage in transit passes, damage at rest stays and is reported
//! by the caller (restore names the object). Nothing here ever returns bytes
//! the caller has not checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use time::OffsetDateTime;

use super::{
    DeleteBackend, ObjectInfo, PutOutcome, ReadBackend, StorageError, StorageResult, Verified,
    VersionInfo, WriteBackend,
};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = no retries).
    pub attempts: u32,
    /// Pause before the second attempt; doubled before each further one.
    pub first_delay: Duration,
    /// Longest pause between two attempts.
    pub max_delay: Duration,
    /// Extra reads of bytes that fail the caller's check.
    pub rereads: u32,
    /// Pause before each such re-read.
    pub reread_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, 1 + 2 + 4 + 8 s apart: an outage of about 15 s (on S3
    /// plus the SDK's own backoff) is ridden out; a longer one fails the
    /// call with a clear error, and a backup then writes no snapshot.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            rereads: 2,
            reread_delay: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (tests that want to see the first failure).
    pub fn none() -> Self {
        Self {
            attempts: 1,
            rereads: 0,
            ..Self::default()
        }
    }
}

/// A backend whose transient failures are retried. See the module docs.
pub struct Retrying<B: ?Sized> {
    inner: Arc<B>,
    policy: RetryPolicy,
}

impl<B: ?Sized> Retrying<B> {
    /// Wraps `inner`, retrying its transient failures according to `policy`.
    pub fn new(inner: Arc<B>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    fn run<T>(
        &self,
        op: &'static str,
        key: &str,
        mut call: impl FnMut() -> StorageResult<T>,
    ) -> StorageResult<T> {
        let started = Instant::now();
        let mut delay = self.policy.first_delay;
        let mut attempt = 1;
        loop {
            match call() {
                Err(e) if e.is_transient() && attempt < self.policy.attempts => {
                    tracing::warn!(
                        op,
                        key,
                        attempt,
                        error = %e,
                        "transient storage error; retrying in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(self.policy.max_delay);
                    attempt += 1;
                }
                Err(e) if e.is_transient() && attempt > 1 => {
                    return Err(gave_up(e, attempt, started.elapsed()));
                }
                other => return other,
            }
        }
    }
}

/// Adds how long the decorator kept trying to a transient error's message.
fn gave_up(e: StorageError, attempts: u32, took: Duration) -> StorageError {
    match e {
        StorageError::Io {
            location,
            op,
            key,
            message,
            transient,
        } => StorageError::Io {
            location,
            op,
            key,
            message: format!(
                "{message} (gave up after {attempts} attempts over {:.1} s)",
                took.as_secs_f64()
            ),
            transient,
        },
        other => other,
    }
}

impl<B: ReadBackend + ?Sized> ReadBackend for Retrying<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes> {
        self.run("read", key, || self.inner.get(key, limit))
    }

    fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        self.run("head", key, || self.inner.head(key))
    }

    /// A listing that fails part-way is resumed: the retry skips keys up to
    /// the last one already handed to `f` (listings are in key order), so
    /// `f` sees each key once and nothing is buffered.
    fn list(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let mut last: Option<String> = None;
        // An error of `f` itself is the caller's, never retried.
        let mut from_f: Option<StorageError> = None;
        let result = self.run("list", prefix, || {
            self.inner.list(prefix, &mut |i| {
                if last.as_deref().is_some_and(|l| i.key.as_str() <= l) {
                    return Ok(());
                }
                let key = i.key.clone();
                match f(i) {
                    Ok(()) => {
                        last = Some(key);
                        Ok(())
                    }
                    Err(e) => {
                        from_f = Some(e);
                        Err(StorageError::Io {
                            location: String::new(),
                            op: "list",
                            key,
                            message: "stopped by the caller".into(),
                            transient: false,
                        })
                    }
                }
            })
        });
        match from_f {
            Some(e) => Err(e),
            None => result,
        }
    }

    fn get_verified(
        &self,
        key: &str,
        limit: u64,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> StorageResult<Verified> {
        let mut rereads = 0;
        loop {
            let v = self.run("read", key, || self.inner.get_verified(key, limit, accept))?;
            if accept(&v.data) || rereads >= self.policy.rereads {
                return Ok(v);
            }
            rereads += 1;
            tracing::warn!(
                key,
                reread = rereads,
                "object failed its check; reading it again in case it was damaged in transit"
            );
            std::thread::sleep(self.policy.reread_delay);
        }
    }

    /// Retried only while nothing has been handed to `f`: versions of one
    /// key come in no defined order, so a listing cannot be resumed safely.
    fn list_versions(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(VersionInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let mut handed = false;
        let mut from_f: Option<StorageError> = None;
        let result = self.run("list versions of", prefix, || {
            if handed {
                // Already part-way: hand the error up rather than repeat.
                return Err(StorageError::Io {
                    location: self.inner.location(),
                    op: "list versions of",
                    key: prefix.to_string(),
                    message: "the listing failed part-way and cannot be resumed".into(),
                    transient: false,
                });
            }
            self.inner.list_versions(prefix, &mut |v| {
                handed = true;
                f(v).map_err(|e| {
                    let key = e.to_string();
                    from_f = Some(e);
                    StorageError::Io {
                        location: String::new(),
                        op: "list versions of",
                        key,
                        message: "stopped by the caller".into(),
                        transient: false,
                    }
                })
            })
        });
        match from_f {
            Some(e) => Err(e),
            None => result,
        }
    }

    fn head_version(&self, key: &str, version: Option<&str>) -> StorageResult<Option<ObjectInfo>> {
        self.run("head", key, || self.inner.head_version(key, version))
    }

    fn check_ready(&self) -> StorageResult<()> {
        self.run("check", "the bucket", || self.inner.check_ready())
    }
}

impl<B: WriteBackend + ?Sized> WriteBackend for Retrying<B> {
    fn put(
        &self,
        key: &str,
        data: Bytes,
        retain_until: OffsetDateTime,
    ) -> StorageResult<PutOutcome> {
        // `Bytes` clones share the buffer: no copy per attempt.
        self.run("write", key, || {
            self.inner.put(key, data.clone(), retain_until)
        })
    }

    fn extend_retention(&self, key: &str, until: OffsetDateTime) -> StorageResult<()> {
        self.run("extend retention of", key, || {
            self.inner.extend_retention(key, until)
        })
    }

    fn flush(&self) -> StorageResult<()> {
        self.run("flush", "", || self.inner.flush())
    }
}

/// A refusal (still retained) is permanent and never retried; a transient
/// failure is, and a delete that landed before its answer was lost comes
/// back as not found, which prune reports as already gone.
impl<B: DeleteBackend + ?Sized> DeleteBackend for Retrying<B> {
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.run("delete", key, || self.inner.delete(key))
    }

    fn delete_version(&self, key: &str, version: Option<&str>) -> StorageResult<()> {
        self.run("delete", key, || self.inner.delete_version(key, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalBackend;
    use crate::storage::conformance;
    use crate::storage::faulty::{Fault, Faulty, Op, Rule, Trigger};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            rereads: 2,
            reread_delay: Duration::from_millis(1),
        }
    }

    fn faulty(dir: &std::path::Path, rules: Vec<Rule>) -> Arc<Faulty<LocalBackend>> {
        Arc::new(Faulty::new(
            Arc::new(LocalBackend::open(dir).unwrap()),
            rules,
        ))
    }

    fn later() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::days(1)
    }

    #[test]
    fn conformance_holds_with_every_first_call_failing() {
        let dir = tempfile::tempdir().unwrap();
        let ops = [Op::Get, Op::Head, Op::List, Op::Put, Op::Extend, Op::Flush];
        let rules = ops
            .iter()
            .map(|op| Rule::new(*op, Fault::Transient).when(Trigger::FirstPerKey(1)))
            .collect();
        let f = faulty(dir.path(), rules);
        conformance::run_all(&Retrying::new(f.clone(), quick()));
        for i in 0..ops.len() {
            assert!(f.fired(i) > 0, "rule {i} never fired");
        }
    }

    #[test]
    fn a_put_that_landed_but_failed_is_already_there_when_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let f = faulty(
            dir.path(),
            vec![Rule::new(Op::Put, Fault::LandThenFail).when(Trigger::FirstPerKey(1))],
        );
        let r = Retrying::new(f.clone(), quick());
        let got = r.put("chunks/aa/x", Bytes::from_static(b"data"), later());
        assert_eq!(got.unwrap(), PutOutcome::AlreadyExists);
        assert_eq!(f.fired(0), 1);
        assert_eq!(&r.get("chunks/aa/x", 100).unwrap()[..], b"data");
    }

    #[test]
    fn permanent_errors_are_not_retried_and_transient_ones_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let f = faulty(
            dir.path(),
            vec![
                Rule::new(Op::Put, Fault::Permanent).keys("a/"),
                Rule::new(Op::Put, Fault::Throttle).keys("b/"),
            ],
        );
        let r = Retrying::new(f.clone(), quick());
        let e = r.put("a/x", Bytes::from_static(b"1"), later()).unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert_eq!(f.fired(0), 1);
        let e = r.put("b/x", Bytes::from_static(b"1"), later()).unwrap_err();
        assert_eq!(f.fired(1), 3);
        let text = e.to_string();
        assert!(
            text.contains("SlowDown") && text.contains("gave up after 3 attempts"),
            "{text}"
        );
        assert!(text.contains("b/x") && text.contains("file://"), "{text}");
    }

    #[test]
    fn bytes_that_fail_the_check_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::open(dir.path())
            .unwrap()
            .put("k/v", Bytes::from_static(b"0123456789"), later())
            .unwrap();
        let whole = |b: &[u8]| b == b"0123456789";
        // Cut short once: the re-read passes.
        let f = faulty(
            dir.path(),
            vec![Rule::new(Op::Get, Fault::Truncate).when(Trigger::FirstPerKey(1))],
        );
        let r = Retrying::new(f.clone(), quick());
        assert!(whole(&r.get_verified("k/v", 100, &whole).unwrap().data));
        assert_eq!(f.fired(0), 1);
        // Always damaged: handed on after the re-reads, for the caller to reject.
        let f = faulty(dir.path(), vec![Rule::new(Op::Get, Fault::Flip)]);
        let r = Retrying::new(f.clone(), quick());
        assert!(!whole(&r.get_verified("k/v", 100, &whole).unwrap().data));
        assert_eq!(f.fired(0), 3);
    }

    #[test]
    fn a_listing_that_fails_part_way_resumes_without_repeats() {
        /// Fails the listing once, after handing on two keys.
        struct Flaky {
            inner: LocalBackend,
            failed: std::sync::atomic::AtomicBool,
        }
        impl ReadBackend for Flaky {
            fn location(&self) -> String {
                self.inner.location()
            }
            fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes> {
                self.inner.get(key, limit)
            }
            fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
                self.inner.head(key)
            }
            fn list(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
            ) -> StorageResult<()> {
                let mut n = 0;
                self.inner.list(prefix, &mut |i| {
                    n += 1;
                    if n == 3 && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return Err(StorageError::Io {
                            location: self.location(),
                            op: "list",
                            key: prefix.into(),
                            message: "connection reset".into(),
                            transient: true,
                        });
                    }
                    f(i)
                })
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::open(dir.path()).unwrap();
        for k in ["p/a", "p/b", "p/c", "p/d"] {
            local.put(k, Bytes::from_static(b"x"), later()).unwrap();
        }
        let r = Retrying::new(
            Arc::new(Flaky {
                inner: local,
                failed: Default::default(),
            }),
            quick(),
        );
        let mut seen = Vec::new();
        r.list("p/", &mut |i| {
            seen.push(i.key);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["p/a", "p/b", "p/c", "p/d"]);
    }
}
