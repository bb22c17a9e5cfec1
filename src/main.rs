//! The `lockbox` binary: argument parsing, logging, and mapping errors to
//! exit codes (`error`). The work is done by the `lockbox-vault` and
//! `lockbox-restore` crates.

mod cli;
mod commands;
mod error;
mod progress;
mod render;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, LogFormat};
use lockbox_vault::error::ErrorClass;

fn main() -> ExitCode {
    lockbox_vault::sys::bound_allocator_retention();
    let cli = Cli::parse();
    init_logging(&cli);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(signal) = lockbox_vault::sys::stop_signal() {
                // One line, whatever the error chain says: the tool was
                // killed by us, and what matters is what was left behind.
                tracing::debug!(error = %error::render(&err), "stopped");
                eprintln!(
                    "error: interrupted by {}: {}",
                    lockbox_vault::sys::signal_name(signal),
                    lockbox_vault::sys::stop_note()
                );
                return error::exit(ErrorClass::Interrupted { signal });
            }
            if is_broken_pipe(&err) {
                return error::exit(ErrorClass::Operational);
            }
            eprintln!("error: {}", error::render(&err));
            error::exit(error::class_of(&err))
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        // The AWS SDK's own warnings (e.g. each credential provider it tried)
        // are noise here: its errors reach the user as Lockbox's errors.
        (false, 0) => {
            "info,aws_config=error,aws_runtime=error,aws_smithy_runtime=error,aws_smithy_http_client=error,aws_sdk_s3=error"
        }
        (false, 1) => "debug",
        _ => "trace",
    };
    // ureq can log request URLs (paths when its trace level is on), and a
    // ping URL's path is its secret: its own logs stay at warn, whatever
    // LOCKBOX_LOG asks for. Lockbox logs each delivery itself.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCKBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        .add_directive("ureq=warn".parse().expect("valid directive"))
        .add_directive("ureq_proto=warn".parse().expect("valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.compact().init(),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
