//! Webhook and ping deliveries over HTTP(S), with ureq.
//!
//! Nothing that comes back is shown: a server's error page may echo the
//! request path, which for a ping URL is the secret. A failure is described
//! by its status code or the kind of transport error only.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use ureq::http::{Response, Uri};

use super::retry::{self, Failure};
use super::{Event, EventKind};
use crate::config::{PingStyle, TargetUrl};

/// A ping's body (healthchecks keeps up to 100 kB of it) and a query
/// message (Cronitor, Uptime Kuma) are cut to these lengths.
const MAX_PING_BODY: usize = 10_000;
const MAX_PING_MESSAGE: usize = 200;

pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // A status is an answer to judge, not a transport error.
        .http_status_as_error(false)
        // A redirect would carry the signed body and custom headers to
        // another URL; the configured one must be the final one.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(format!("lockbox/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `sha256=<hex>`: HMAC-SHA256 of exactly `body` under `secret`.
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(super) fn webhook(
    agent: &ureq::Agent,
    url: &TargetUrl,
    headers: &[(String, String)],
    secret: Option<&[u8]>,
    event: &Event,
    body: &[u8],
    budget: Duration,
) -> (Result<(), String>, u32) {
    let signature = secret.map(|s| signature(s, body));
    retry::within(budget, |left| {
        let mut req = agent
            .post(url.expose())
            .config()
            .timeout_global(Some(left))
            .build()
            .header("Content-Type", "application/json")
            .header("X-Lockbox-Event", event.kind.as_str());
        if let Some(sig) = &signature {
            req = req.header("X-Lockbox-Signature", sig);
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        judge(req.send(body), &[url.expose()], url.label())
    })
}

/// What a ping says about the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Start,
    Success,
    Fail,
    /// `notify test`: healthchecks logs it without changing the check's
    /// state; the other styles have no such signal and get a success.
    Log,
}

fn signal(kind: EventKind) -> Signal {
    match kind {
        EventKind::BackupStarted => Signal::Start,
        EventKind::BackupSucceeded | EventKind::DrillPassed => Signal::Success,
        EventKind::Test => Signal::Log,
        _ => Signal::Fail,
    }
}

pub(super) fn ping(
    agent: &ureq::Agent,
    url: &TargetUrl,
    style: PingStyle,
    event: &Event,
    budget: Duration,
) -> (Result<(), String>, u32) {
    let signal = signal(event.kind);
    let summary = event.summary();
    let message = cut(&summary, MAX_PING_MESSAGE);
    retry::within(budget, |left| match style {
        PingStyle::Healthchecks => {
            let suffix = match signal {
                Signal::Start => "/start",
                Signal::Success => "",
                Signal::Fail => "/fail",
                Signal::Log => "/log",
            };
            let target = with_path_suffix(url.expose(), suffix);
            let r = agent
                .post(&target)
                .config()
                .timeout_global(Some(left))
                .build()
                .header("Content-Type", "text/plain; charset=utf-8")
                .send(cut(&summary, MAX_PING_BODY));
            judge(r, &[url.expose(), &target], url.label())
        }
        PingStyle::Cronitor | PingStyle::UptimeKuma => {
            // Their tokens are in the path; a query copied from their UI
            // (`?status=up&msg=OK`) would repeat the parameters set here.
            let target = url.expose().split('?').next().unwrap_or_default();
            let (key, value, text_key) = match (style, signal) {
                (PingStyle::Cronitor, Signal::Start) => ("state", "run", "message"),
                (PingStyle::Cronitor, Signal::Fail) => ("state", "fail", "message"),
                (PingStyle::Cronitor, _) => ("state", "complete", "message"),
                (_, Signal::Fail) => ("status", "down", "msg"),
                _ => ("status", "up", "msg"),
            };
            let r = agent
                .get(target)
                .config()
                .timeout_global(Some(left))
                .build()
                .query(key, value)
                .query(text_key, message)
                .call();
            judge(r, &[url.expose(), target], url.label())
        }
    })
}

/// `https://h/ping/uuid?x` + `/fail` → `https://h/ping/uuid/fail?x`.
fn with_path_suffix(url: &str, suffix: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = if suffix.is_empty() {
        base
    } else {
        base.trim_end_matches('/')
    };
    match query {
        Some(q) => format!("{base}{suffix}?{q}"),
        None => format!("{base}{suffix}"),
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A 2xx is delivered; 408, 429 and 5xx may pass and are retried; any
/// other status is final. Transport errors are retried.
fn judge<B>(
    r: Result<Response<B>, ureq::Error>,
    urls: &[&str],
    label: &str,
) -> Result<(), Failure> {
    match r {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let code = status.as_u16();
            let hint = if status.is_redirection() {
                " (redirects are not followed: configure the final URL)"
            } else {
                ""
            };
            Err(Failure {
                message: format!(
                    "HTTP {code} {}{hint}",
                    status.canonical_reason().unwrap_or_default()
                )
                .replace("  ", " "),
                retry: code == 408 || code == 429 || status.is_server_error(),
            })
        }
        Err(e) => {
            use ureq::Error as E;
            let (message, retry) = match &e {
                E::Timeout(_) => ("timed out".to_string(), true),
                E::HostNotFound => ("host not found".to_string(), true),
                E::ConnectionFailed => ("connection failed".to_string(), true),
                E::Io(io) => (format!("I/O error: {io}"), true),
                E::Protocol(p) => (format!("protocol error: {p}"), true),
                other => (other.to_string(), false),
            };
            Err(Failure {
                message: redact(message, urls, label),
                retry,
            })
        }
    }
}

/// Removes every URL in `urls`, and their paths, from `message` (an error
/// text from below us could quote the request).
fn redact(mut message: String, urls: &[&str], label: &str) -> String {
    let mut urls = urls.to_vec();
    // Longest first, so no URL's tail survives a shorter one's replacement.
    urls.sort_by_key(|u| std::cmp::Reverse(u.len()));
    for url in urls {
        message = message.replace(url, label);
        if let Ok(uri) = url.parse::<Uri>() {
            if let Some(pq) = uri.path_and_query().map(|p| p.as_str())
                && pq.len() > 1
            {
                message = message.replace(pq, "/…");
            }
            if uri.path().len() > 1 {
                message = message.replace(uri.path(), "/…");
            }
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_into_the_path() {
        assert_eq!(
            with_path_suffix("https://hc-ping.com/abc", "/fail"),
            "https://hc-ping.com/abc/fail"
        );
        assert_eq!(
            with_path_suffix("https://hc-ping.com/abc/?create=1", "/start"),
            "https://hc-ping.com/abc/start?create=1"
        );
        assert_eq!(
            with_path_suffix("https://hc-ping.com/abc", ""),
            "https://hc-ping.com/abc"
        );
    }

    #[test]
    fn errors_are_redacted_and_cut_safely() {
        let m = redact(
            "bad uri https://hc-ping.com/SECRET-UUID/fail near /SECRET-UUID".into(),
            &[
                "https://hc-ping.com/SECRET-UUID",
                "https://hc-ping.com/SECRET-UUID/fail",
            ],
            "https://hc-ping.com",
        );
        assert!(!m.contains("SECRET"), "{m}");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(
            signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            // As `printf '…' | openssl dgst -sha256 -hmac key` computes it.
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
