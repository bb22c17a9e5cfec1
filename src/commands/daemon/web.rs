//! The daemon's status server: `/metrics` (Prometheus), `/healthz`,
//! `/status` (the JSON of `lockbox status`) and `/`, a small server-rendered
//! HTML page for people (no script, refreshes itself every minute).
//!
//! Every request reads the catalog afresh (backups run as child processes
//! and write it), so what it shows is never older than the request. It has
//! no authentication: it listens on loopback unless `[daemon] listen` says
//! otherwise, and it shows no secret (source names, ages, sizes, errors).

use std::sync::{Arc, RwLock};

use lockbox_vault::config::Config;
use lockbox_vault::health;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::render::{metrics, page};

/// Handle of the running server: the daemon hands it each reloaded config.
pub struct StatusServer {
    config: Arc<RwLock<Config>>,
}

impl StatusServer {
    /// Starts serving on `[daemon] listen` in a thread. A server that cannot
    /// listen is logged, not fatal: backups matter more than their metrics
    /// (and Prometheus reports the target down).
    pub fn start(config: &Config) -> Self {
        let shared = Arc::new(RwLock::new(config.clone()));
        if let Some(addr) = config.daemon_settings().listen {
            match Server::http(addr) {
                Ok(server) => {
                    let shown = server
                        .server_addr()
                        .to_ip()
                        .map_or_else(|| addr.to_string(), |a| a.to_string());
                    tracing::info!(listen = %shown, "status server listening (/, /status, /metrics, /healthz)");
                    let config = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        for request in server.incoming_requests() {
                            let config = config.read().map(|c| c.clone());
                            if let Ok(config) = config {
                                respond(request, &config);
                            }
                        }
                    });
                }
                Err(e) => tracing::error!(
                    listen = %addr,
                    error = %e,
                    "status server cannot listen (change [daemon] listen, or \"off\"); backups go on without it"
                ),
            }
        }
        Self { config: shared }
    }

    /// Serves from `config` from now on (the listen address itself changes
    /// only with a restart).
    pub fn reload(&self, config: &Config) {
        if let Ok(mut c) = self.config.write() {
            *c = config.clone();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(request: Request, config: &Config) {
    let path = request.url().split('?').next().unwrap_or("/").to_string();
    let (status, content_type, body) = if *request.method() != Method::Get {
        (405, "text/plain; charset=utf-8", "only GET\n".to_string())
    } else {
        route(&path, config)
    };
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ));
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "status server: client went away");
    }
}

fn route(path: &str, config: &Config) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !matches!(path, "/" | "/status" | "/metrics" | "/healthz") {
        return (
            404,
            TEXT,
            "not found: try /, /status, /metrics or /healthz\n".into(),
        );
    }
    let report = match health::load_report(config, None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "status server: cannot read the status");
            return (503, TEXT, format!("cannot read the status: {e:#}\n"));
        }
    };
    match path {
        // The daemon is up and can read its catalog; backup health is /status's.
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/status" => match serde_json::to_string_pretty(&report) {
            Ok(json) => (200, "application/json", json + "\n"),
            Err(e) => (500, TEXT, format!("{e}\n")),
        },
        "/metrics" => {
            let counts = health::notification_counts(&config.catalog_path());
            match counts
                .map_err(anyhow::Error::from)
                .and_then(|n| metrics::encode(&report, &n))
            {
                Ok(text) => (200, metrics::CONTENT_TYPE, text),
                Err(e) => (500, TEXT, format!("{e:#}\n")),
            }
        }
        _ => (200, "text/html; charset=utf-8", page::page(&report)),
    }
}
