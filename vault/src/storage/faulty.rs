//! Fault injection for tests: a decorator around a real backend that makes
//! chosen calls fail, stall, throttle, return truncated bytes, or land and
//! then report failure.
//!
//! Compiled only for this crate's tests and with the `fault-injection`
//! cargo feature, which only dev-dependencies enable: a production binary
//! has no way to reach it (no environment variable, no config key).
//!
//! Rules are checked in order for every call; each rule matches an
//! operation and a key prefix and fires according to its [`Trigger`].
//! Counters of what fired let a test assert that its fault really happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use super::{
    DeleteBackend, ObjectInfo, PutOutcome, ReadBackend, StorageError, StorageResult, Verified,
    VersionInfo, WriteBackend,
};

/// The backend call a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get` and `get_verified`.
    Get,
    /// `head` and `head_version`.
    Head,
    /// `list` and `list_versions`.
    List,
    /// `put`.
    Put,
    /// `extend_retention`.
    Extend,
    /// `flush`.
    Flush,
}

/// What happens when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A transient error, as a connection reset or an HTTP 500 would give.
    Transient,
    /// Throttling, as S3's `503 SlowDown` (transient).
    Throttle,
    /// A permanent error, as `403 AccessDenied` or a full disk would give.
    Permanent,
    /// The call is delayed, then performed.
    Latency(Duration),
    /// A read returns only the first half of the object, without an error
    /// (a body cut short that the transport did not notice).
    Truncate,
    /// A read returns the object with one byte flipped (damage in transit).
    Flip,
    /// A put is performed, then reported as a transient failure: the object
    /// landed, the response was lost.
    LandThenFail,
}

/// When a rule fires, among the calls it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every matching call.
    Always,
    /// The first `n` matching calls for each key (then the key works).
    FirstPerKey(u32),
    /// Every `n`th matching call (counted over all keys).
    Every(u64),
}

/// One fault to inject: which calls it matches, what happens, and when.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The call it applies to.
    pub op: Op,
    /// Only keys starting with this (empty: every key).
    pub prefix: String,
    /// What happens when it fires.
    pub fault: Fault,
    /// Which matching calls it fires on.
    pub trigger: Trigger,
    /// Fires at most this many times in all (`None`: no limit).
    pub limit: Option<u64>,
}

impl Rule {
    /// A rule firing on every `op` call for any key.
    pub fn new(op: Op, fault: Fault) -> Self {
        Self {
            op,
            prefix: String::new(),
            fault,
            trigger: Trigger::Always,
            limit: None,
        }
    }
    /// Only keys starting with `prefix` (e.g. `chunks/`).
    pub fn keys(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Fires on the calls `trigger` selects (default: every matching call).
    pub fn when(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }
    /// Fires at most `n` times in all.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

struct RuleState {
    rule: Rule,
    matched: AtomicU64,
    fired: AtomicU64,
    per_key: Mutex<HashMap<String, u32>>,
}

/// A backend with injected faults. See the module docs.
pub struct Faulty<B: ?Sized> {
    inner: Arc<B>,
    rules: Vec<RuleState>,
}

impl<B: ReadBackend + ?Sized> Faulty<B> {
    /// Wraps `inner`; `rules` are checked in order for every call.
    pub fn new(inner: Arc<B>, rules: Vec<Rule>) -> Self {
        Self {
            inner,
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    rule,
                    matched: AtomicU64::new(0),
                    fired: AtomicU64::new(0),
                    per_key: Mutex::new(HashMap::new()),
                })
                .collect(),
        }
    }

    /// How many times rule `i` (in the order given) fired.
    pub fn fired(&self, i: usize) -> u64 {
        self.rules[i].fired.load(Ordering::SeqCst)
    }

    /// How many times any rule fired.
    pub fn fired_total(&self) -> u64 {
        self.rules
            .iter()
            .map(|r| r.fired.load(Ordering::SeqCst))
            .sum()
    }

    /// The faults that fire for this call. Latency is applied here.
    fn faults(&self, op: Op, key: &str) -> Vec<Fault> {
        let mut out = Vec::new();
        for r in &self.rules {
            if r.rule.op != op || !key.starts_with(&r.rule.prefix) {
                continue;
            }
            let n = r.matched.fetch_add(1, Ordering::SeqCst) + 1;
            let fire = match r.rule.trigger {
                Trigger::Always => true,
                Trigger::Every(every) => every > 0 && n % every == 0,
                Trigger::FirstPerKey(first) => {
                    let mut seen = r.per_key.lock().unwrap();
                    let c = seen.entry(key.to_string()).or_insert(0);
                    *c += 1;
                    *c <= first
                }
            };
            if !fire {
                continue;
            }
            let fired = r.fired.fetch_add(1, Ordering::SeqCst);
            if r.rule.limit.is_some_and(|l| fired >= l) {
                r.fired.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            match r.rule.fault {
                Fault::Latency(d) => std::thread::sleep(d),
                f => out.push(f),
            }
        }
        out
    }

    fn error(&self, op: &'static str, key: &str, fault: Fault) -> Option<StorageError> {
        let (message, transient) = match fault {
            Fault::Transient => ("injected fault: connection reset by peer", true),
            Fault::Throttle => (
                "SlowDown (HTTP 503): Please reduce your request rate (injected fault)",
                true,
            ),
            Fault::Permanent => ("AccessDenied (HTTP 403): injected fault", false),
            Fault::LandThenFail => (
                "injected fault: the response was lost after the object landed",
                true,
            ),
            _ => return None,
        };
        Some(StorageError::Io {
            location: self.inner.location(),
            op,
            key: key.to_string(),
            message: message.into(),
            transient,
        })
    }

    /// Errors for a call that is not performed (anything but a late failure).
    fn before(&self, op: Op, name: &'static str, key: &str) -> StorageResult<Vec<Fault>> {
        let faults = self.faults(op, key);
        for f in &faults {
            if *f != Fault::LandThenFail
                && let Some(e) = self.error(name, key, *f)
            {
                return Err(e);
            }
        }
        Ok(faults)
    }

    fn damage(faults: &[Fault], data: Bytes) -> Bytes {
        let mut data = data;
        for f in faults {
            match f {
                Fault::Truncate => data = data.slice(..data.len() / 2),
                Fault::Flip if !data.is_empty() => {
                    let mut v = data.to_vec();
                    let mid = v.len() / 2;
                    v[mid] ^= 0x01;
                    data = Bytes::from(v);
                }
                _ => {}
            }
        }
        data
    }
}

impl<B: ReadBackend + ?Sized> ReadBackend for Faulty<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn get(&self, key: &str, limit: u64) -> StorageResult<Bytes> {
        let faults = self.before(Op::Get, "read", key)?;
        Ok(Self::damage(&faults, self.inner.get(key, limit)?))
    }

    fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        self.before(Op::Head, "head", key)?;
        self.inner.head(key)
    }

    fn list(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(ObjectInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.before(Op::List, "list", prefix)?;
        self.inner.list(prefix, f)
    }

    fn get_verified(
        &self,
        key: &str,
        limit: u64,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> StorageResult<Verified> {
        let faults = self.before(Op::Get, "read", key)?;
        let v = self.inner.get_verified(key, limit, accept)?;
        Ok(Verified {
            data: Self::damage(&faults, v.data),
            tampering: v.tampering,
        })
    }

    fn list_versions(
        &self,
        prefix: &str,
        f: &mut dyn FnMut(VersionInfo) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.before(Op::List, "list versions of", prefix)?;
        self.inner.list_versions(prefix, f)
    }

    fn head_version(&self, key: &str, version: Option<&str>) -> StorageResult<Option<ObjectInfo>> {
        self.before(Op::Head, "head", key)?;
        self.inner.head_version(key, version)
    }

    fn check_ready(&self) -> StorageResult<()> {
        self.inner.check_ready()
    }
}

impl<B: WriteBackend + ?Sized> WriteBackend for Faulty<B> {
    fn put(
        &self,
        key: &str,
        data: Bytes,
        retain_until: OffsetDateTime,
    ) -> StorageResult<PutOutcome> {
        let faults = self.before(Op::Put, "write", key)?;
        let outcome = self.inner.put(key, data, retain_until)?;
        if faults.contains(&Fault::LandThenFail) {
            // The object is there; the caller is told it may not be.
            self.inner.flush()?;
            return Err(self
                .error("write", key, Fault::LandThenFail)
                .expect("an error"));
        }
        Ok(outcome)
    }

    fn extend_retention(&self, key: &str, until: OffsetDateTime) -> StorageResult<()> {
        self.before(Op::Extend, "extend retention of", key)?;
        self.inner.extend_retention(key, until)
    }

    fn flush(&self) -> StorageResult<()> {
        self.before(Op::Flush, "flush", "")?;
        self.inner.flush()
    }
}

impl<B: DeleteBackend + ?Sized> DeleteBackend for Faulty<B> {
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key)
    }

    fn delete_version(&self, key: &str, version: Option<&str>) -> StorageResult<()> {
        self.inner.delete_version(key, version)
    }
}
