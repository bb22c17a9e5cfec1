//! `[[notify]]`: where Lockbox sends word of backups, drills and problems
//! (a webhook, a dead-man's-switch ping URL, or a local command), checked
//! once at load into a [`NotifyTarget`] that [`crate::notify::Notifier`]
//! delivers to. Like `[[source]]`, an entry is one flat table whose keys
//! must fit its `kind`.
//!
//! Secrets stay out of the config text: a webhook's signing secret comes from
//! `secret_file` or `secret_env`, read when the `Notifier` is built. A ping
//! URL is itself a secret (whoever knows it can ping), so only its scheme and
//! host are ever shown.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::format::valid_source_name;
use crate::notify::EventKind;

/// One delivery's whole budget (all attempts) when `timeout` is not set.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// A notification may hold up the operation it reports for at most this long.
pub const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(300);

/// Headers Lockbox sets itself; a custom header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "x-lockbox-event",
    "x-lockbox-signature",
];

/// One `[[notify]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `webhook`, `ping` or `command`.
    pub kind: String,
    /// The events this target hears (default depends on `kind`).
    #[serde(default)]
    pub on: Option<Vec<EventKind>>,
    /// Only events of these sources (default: every source).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Budget of one delivery, all attempts together (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// `webhook`, `ping`: the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `ping`: `healthchecks` (default), `cronitor` or `uptime-kuma`.
    #[serde(default)]
    pub style: Option<String>,
    /// `webhook`: a file holding the HMAC-SHA256 signing secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `webhook`: an environment variable of Lockbox's holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `webhook`: extra request headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// `command`: the program and its arguments (no shell).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Accepted only to be refused with guidance; the value is never kept.
    #[serde(default)]
    secret: Option<serde::de::IgnoredAny>,
    /// Filled in by validation.
    #[serde(skip)]
    parsed: Option<NotifyTarget>,
}

/// A validated `[[notify]]` entry.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// `notify[i]`: names the entry in logs, messages and `notify test`.
    pub key: String,
    /// The events this target hears (its `on`, or the default of its kind).
    pub on: BTreeSet<EventKind>,
    /// `None`: every source.
    pub sources: Option<BTreeSet<String>>,
    /// One delivery's whole budget, all attempts and the waits between them together
    /// (default 10 s, at most 300 s).
    pub budget: Duration,
    /// Where deliveries go.
    pub sink: Sink,
}

/// Where a `[[notify]]` entry delivers, with the keys of its `kind`.
#[derive(Debug, Clone)]
pub enum Sink {
    /// An HTTP POST of the event as JSON, signed with HMAC-SHA256 when a secret is set.
    Webhook {
        /// The URL posted to.
        url: TargetUrl,
        /// Where the signing secret comes from; unsigned when `None`.
        secret: Option<SecretFrom>,
        /// Extra request headers (never ones Lockbox sets itself).
        headers: Vec<(String, String)>,
    },
    /// A dead-man's-switch ping: the URL is called when a run starts, succeeds or fails.
    Ping {
        /// The monitor's URL (it may hold a secret token).
        url: TargetUrl,
        /// How outcomes are encoded in the call.
        style: PingStyle,
    },
    /// A local program run with the event in its environment, in its own process group.
    Command {
        /// The program and its arguments (no shell).
        argv: Vec<String>,
    },
}

impl Sink {
    /// The kind as written in `kind = …` (`webhook`, `ping`, `command`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Sink::Webhook { .. } => "webhook",
            Sink::Ping { .. } => "ping",
            Sink::Command { .. } => "command",
        }
    }
}

/// Where a webhook's signing secret comes from. The secret itself is never
/// in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A file holding the secret (its first line).
    File(PathBuf),
    /// An environment variable of Lockbox's holding the secret (never passed on to children).
    Env(String),
}

/// How a ping target's URL is called for each outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStyle {
    /// healthchecks.io: `<url>/start`, `<url>`, `<url>/fail` (the error as
    /// the body), `<url>/log`.
    Healthchecks,
    /// Cronitor telemetry: `<url>?state=run|complete|fail&message=…`.
    Cronitor,
    /// Uptime Kuma push monitor: `<url>?status=up|down&msg=…` (it has no
    /// "started" signal).
    UptimeKuma,
}

/// A checked http(s) URL. Its path and query may hold a secret (a ping
/// UUID, a token), so `Debug` and [`TargetUrl::label`] show only the scheme
/// and host.
#[derive(Clone)]
pub struct TargetUrl {
    full: String,
    label: String,
}

impl TargetUrl {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            "must be an http:// or https:// URL with a host, e.g. https://hooks.example/lockbox"
                .to_string()
        };
        let uri: ureq::http::Uri = text.parse().map_err(|_| bad())?;
        let scheme = uri.scheme_str().ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        if text.contains('#') {
            return Err("must not contain a #fragment".into());
        }
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Self {
            full: text.to_string(),
            label: format!("{scheme}://{host}{port}"),
        })
    }

    /// The whole URL, secret parts included: only for making the request.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// Scheme, host and port: safe to log.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetUrl({}/…)", self.label)
    }
}

impl NotifyConfig {
    /// The validated form (filled in when the config was parsed; `None`
    /// only for a value built some other way).
    pub fn target(&self) -> Option<&NotifyTarget> {
        self.parsed.as_ref()
    }

    fn parse_target(&self, i: usize) -> Result<NotifyTarget, (String, String)> {
        let entry = format!("notify[{i}]");
        let key = |k: &str| format!("{entry}.{k}");
        if self.secret.is_some() {
            return Err((
                key("secret"),
                "a secret must not be written in the config: put it in a file (secret_file) \
                 or an environment variable (secret_env)"
                    .into(),
            ));
        }
        let present: Vec<&str> = [
            ("url", self.url.is_some()),
            ("style", self.style.is_some()),
            ("secret_file", self.secret_file.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("headers", self.headers.is_some()),
            ("command", self.command.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(k, _)| *k)
        .collect();
        let allowed: &[&str] = match self.kind.as_str() {
            "webhook" => &["url", "secret_file", "secret_env", "headers"],
            "ping" => &["url", "style"],
            "command" => &["command"],
            other => {
                return Err((
                    key("kind"),
                    format!(
                        "unknown notify kind {other:?}; expected \"webhook\", \"ping\" or \"command\""
                    ),
                ));
            }
        };
        if let Some(extra) = present.iter().find(|k| !allowed.contains(k)) {
            return Err((
                key(extra),
                format!("does not apply to kind = {:?}", self.kind),
            ));
        }
        let url = || -> Result<TargetUrl, (String, String)> {
            let text = self.url.as_deref().ok_or_else(|| {
                (
                    key("url"),
                    format!("is required for kind = {:?}", self.kind),
                )
            })?;
            TargetUrl::parse(text).map_err(|m| (key("url"), m))
        };
        let sink = match self.kind.as_str() {
            "webhook" => Sink::Webhook {
                url: url()?,
                secret: self.secret_from(&key)?,
                headers: self.checked_headers(&key)?,
            },
            "ping" => Sink::Ping {
                url: url()?,
                style: match self.style.as_deref().unwrap_or("healthchecks") {
                    "healthchecks" => PingStyle::Healthchecks,
                    "cronitor" => PingStyle::Cronitor,
                    "uptime-kuma" => PingStyle::UptimeKuma,
                    other => {
                        return Err((
                            key("style"),
                            format!(
                                "unknown ping style {other:?}; expected \"healthchecks\", \
                                 \"cronitor\" or \"uptime-kuma\""
                            ),
                        ));
                    }
                },
            },
            _ => {
                let argv = self.command.clone().unwrap_or_default();
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err((
                        key("command"),
                        "must name a program, e.g. [\"/usr/local/bin/page-oncall\"]".into(),
                    ));
                }
                Sink::Command { argv }
            }
        };
        let on: BTreeSet<EventKind> = match &self.on {
            Some(list) if list.is_empty() => {
                return Err((
                    key("on"),
                    "names no event; remove the entry or list events, e.g. [\"backup_failed\"]"
                        .into(),
                ));
            }
            Some(list) => list.iter().copied().collect(),
            None => default_events(&sink).iter().copied().collect(),
        };
        if let Sink::Ping {
            style: PingStyle::UptimeKuma,
            ..
        } = sink
            && on.contains(&EventKind::BackupStarted)
        {
            return Err((
                key("on"),
                "an Uptime Kuma push monitor has no \"started\" signal; remove \
                 \"backup_started\""
                    .into(),
            ));
        }
        let sources = match &self.sources {
            None => None,
            Some(list) if list.is_empty() => {
                return Err((
                    key("sources"),
                    "names no source; leave it out to hear every source".into(),
                ));
            }
            Some(list) => {
                if let Some(bad) = list.iter().find(|s| !valid_source_name(s)) {
                    return Err((
                        key("sources"),
                        format!("{bad:?} is not a valid source name"),
                    ));
                }
                Some(list.iter().cloned().collect())
            }
        };
        let budget = match &self.timeout {
            None => DEFAULT_NOTIFY_TIMEOUT,
            Some(t) => {
                let d = crate::scheduler::parse_duration(t).map_err(|e| (key("timeout"), e))?;
                if d.is_zero() || d > MAX_NOTIFY_TIMEOUT {
                    return Err((
                        key("timeout"),
                        format!(
                            "must be longer than 0s and at most {}s (a notification never \
                             holds up a backup longer)",
                            MAX_NOTIFY_TIMEOUT.as_secs()
                        ),
                    ));
                }
                d
            }
        };
        Ok(NotifyTarget {
            key: entry,
            on,
            sources,
            budget,
            sink,
        })
    }

    fn secret_from(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Option<SecretFrom>, (String, String)> {
        match (&self.secret_file, &self.secret_env) {
            (Some(_), Some(_)) => Err((
                key("secret_env"),
                "give at most one of secret_file and secret_env".into(),
            )),
            (Some(f), None) if !f.is_absolute() => {
                Err((key("secret_file"), "must be an absolute path".into()))
            }
            (Some(f), None) => Ok(Some(SecretFrom::File(f.clone()))),
            (None, Some(e)) => {
                if e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((
                        key("secret_env"),
                        "must be the NAME of an environment variable (A-Z, 0-9, _), not a secret"
                            .into(),
                    ));
                }
                Ok(Some(SecretFrom::Env(e.clone())))
            }
            (None, None) => Ok(None),
        }
    }

    fn checked_headers(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Vec<(String, String)>, (String, String)> {
        let mut out = Vec::new();
        for (name, value) in self.headers.iter().flatten() {
            if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((
                    key("headers"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err((key("headers"), format!("{name:?} is set by Lockbox")));
            }
            // The value may be a token: the message names the header only.
            if ureq::http::HeaderValue::from_str(value).is_err() {
                return Err((
                    key("headers"),
                    format!("the value of {name:?} is not a valid header value"),
                ));
            }
            out.push((name.clone(), value.clone()));
        }
        Ok(out)
    }
}

/// What a target hears when its `on` is not set: a webhook or command
/// hears of problems; a ping URL is a dead-man's switch and needs to hear
/// every run, or it raises the alarm each day.
pub fn default_events(sink: &Sink) -> &'static [EventKind] {
    use EventKind::*;
    match sink {
        Sink::Ping {
            style: PingStyle::UptimeKuma,
            ..
        } => &[BackupSucceeded, BackupFailed],
        Sink::Ping { .. } => &[BackupStarted, BackupSucceeded, BackupFailed],
        _ => &[BackupFailed, DrillFailed, VerifyProblem, Stale],
    }
}

/// Validates every `[[notify]]` entry and keeps its parsed form.
pub(super) fn check(entries: &mut [NotifyConfig]) -> Result<(), (String, String)> {
    for (i, n) in entries.iter_mut().enumerate() {
        n.parsed = Some(n.parse_target(i)?);
    }
    // Hidden from every child Lockbox starts (dump tools, hooks), like the
    // database password variables.
    crate::sys::register_secret_env_names(entries.iter().filter_map(|n| n.secret_env.as_deref()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const RCPT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn with(notify: &str) -> String {
        format!(
            "state_dir = \"/var/lib/lockbox\"\n[repository]\nurl = \"file:///srv/lockbox\"\nrecipients = [\"{RCPT}\"]\nlock_days = 30\n{notify}"
        )
    }

    #[test]
    fn defaults_by_kind() {
        let c = Config::parse(
            &with(
                "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example/x\"\n\
                 [[notify]]\nkind = \"ping\"\nurl = \"https://hc-ping.com/1234-abcd\"\nsources = [\"orders\"]\n\
                 [[notify]]\nkind = \"command\"\ncommand = [\"/bin/true\"]\ntimeout = \"3s\"\non = [\"test\"]\n",
            ),
            "t.toml",
        )
        .unwrap();
        let t: Vec<&NotifyTarget> = c.notify.iter().map(|n| n.target().unwrap()).collect();
        use EventKind::*;
        assert_eq!(
            t[0].on,
            [BackupFailed, DrillFailed, VerifyProblem, Stale].into()
        );
        assert_eq!(t[0].budget, DEFAULT_NOTIFY_TIMEOUT);
        assert_eq!(
            t[1].on,
            [BackupStarted, BackupSucceeded, BackupFailed].into()
        );
        assert_eq!(t[1].sources, Some(["orders".to_string()].into()));
        assert!(matches!(
            t[1].sink,
            Sink::Ping {
                style: PingStyle::Healthchecks,
                ..
            }
        ));
        assert_eq!(t[2].budget, Duration::from_secs(3));
        assert_eq!(t[2].on, [Test].into());
        assert_eq!(t[2].key, "notify[2]");
    }

    #[test]
    fn a_url_shows_only_scheme_and_host() {
        let u = TargetUrl::parse("https://hc-ping.com:8443/5f1e-secret-uuid?x=1").unwrap();
        assert_eq!(u.label(), "https://hc-ping.com:8443");
        assert!(!format!("{u:?}").contains("secret"));
        for bad in [
            "ftp://x/y",
            "hooks.example/x",
            "https:///x",
            "https://h/x#frag",
            "",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// Each mistake is refused with a message naming the entry and key.
    #[test]
    fn malformed_entries_name_the_key() {
        let cases = [
            (
                "kind = \"email\"",
                "notify[0].kind: unknown notify kind \"email\"",
            ),
            (
                "kind = \"webhook\"",
                "notify[0].url: is required for kind = \"webhook\"",
            ),
            (
                "kind = \"webhook\"\nurl = \"hooks.example\"",
                "notify[0].url: must be an http",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\non = [\"backup_exploded\"]",
                "notify[0].on[0]: unknown variant `backup_exploded`",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\non = []",
                "notify[0].on: names no event",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nsecret = \"hunter2\"",
                "notify[0].secret: a secret must not be written in the config",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nsecret_env = \"hunter2!\"",
                "notify[0].secret_env: must be the NAME",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nsecret_file = \"s.txt\"",
                "notify[0].secret_file: must be an absolute path",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nsecret_file = \"/s\"\nsecret_env = \"S\"",
                "notify[0].secret_env: give at most one",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nheaders = { \"X-Lockbox-Signature\" = \"x\" }",
                "notify[0].headers: \"X-Lockbox-Signature\" is set by Lockbox",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nheaders = { \"Bad Name\" = \"x\" }",
                "notify[0].headers: \"Bad Name\" is not a valid header name",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\ncommand = [\"x\"]",
                "notify[0].command: does not apply",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\nstyle = \"nagios\"",
                "notify[0].style: unknown ping style",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\nstyle = \"uptime-kuma\"\non = [\"backup_started\"]",
                "notify[0].on: an Uptime Kuma push monitor",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\nsources = [\"a b\"]",
                "notify[0].sources: \"a b\"",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\ntimeout = \"1h\"",
                "notify[0].timeout: must be",
            ),
            (
                "kind = \"ping\"\nurl = \"https://h/x\"\ntimeout = \"soon\"",
                "notify[0].timeout:",
            ),
            (
                "kind = \"command\"\ncommand = []",
                "notify[0].command: must name a program",
            ),
            (
                "kind = \"command\"\ncommand = [\"x\"]\nurl = \"https://h\"",
                "notify[0].url: does not apply",
            ),
            (
                "kind = \"command\"\ncommand = [\"x\"]\nflavour = 1",
                "notify[0].flavour: unknown field",
            ),
        ];
        for (entry, needle) in cases {
            let text = with(&format!("[[notify]]\n{entry}\n"));
            let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(err.contains(needle), "{entry:?}: {err:?} lacks {needle:?}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    /// The commented `[[notify]]` examples in examples/lockbox.toml parse.
    #[test]
    fn shipped_notify_examples_parse() {
        let text = crate::config::shipped_example();
        let examples: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(examples.contains("[[notify]]"), "{examples}");
        let c = Config::parse(&(text.to_string() + &examples), "examples/lockbox.toml").unwrap();
        let kinds: BTreeSet<&str> = c
            .notify
            .iter()
            .map(|n| n.target().unwrap().sink.kind_name())
            .collect();
        assert_eq!(kinds, ["command", "ping", "webhook"].into());
    }
}
