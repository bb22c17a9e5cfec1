//! `lockbox notify test`: a `test` event to every `[[notify]]` target,
//! whatever it subscribes to, so a new webhook, ping URL or hook can be
//! proven before the first real failure needs it.

use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::{Config, ConfigError};
use lockbox_vault::notify::{Event, EventKind, Notifier};

use super::{note, record_notifications};
use crate::cli::NotifyTestArgs;
use crate::render::print_json;

pub fn test(config: &Config, args: NotifyTestArgs) -> Result<ExitCode> {
    if config.notify.is_empty() {
        return Err(ConfigError::Invalid {
            path: config.path.display().to_string(),
            key: "notify".into(),
            message: "no [[notify]] entry to test; see examples/lockbox.toml".into(),
        }
        .into());
    }
    let notifier = Notifier::new(&config.notify)?;
    let deliveries = notifier.send(&Event::new(EventKind::Test, ""));
    record_notifications(config, &deliveries);
    if args.json {
        print_json(&deliveries)?;
    } else {
        for d in &deliveries {
            let (word, why) = match &d.error {
                None => ("ok", String::new()),
                Some(e) => ("FAILED", format!(": {e}")),
            };
            println!("{word:<6}  {:<7}  {}{why}", d.kind, d.target);
        }
    }
    let failed = deliveries.iter().filter(|d| !d.ok).count();
    note!(
        "{} target(s): {} delivered, {failed} failed",
        deliveries.len(),
        deliveries.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        crate::error::exit(lockbox_vault::error::ErrorClass::Operational)
    })
}
