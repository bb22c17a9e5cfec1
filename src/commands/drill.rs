use std::process::ExitCode;

use anyhow::{Result, bail};
use lockbox_vault::config::Config;

use crate::cli::DrillArgs;

pub fn run(_config: &Config, _args: DrillArgs) -> Result<ExitCode> {
    bail!("not yet")
}
