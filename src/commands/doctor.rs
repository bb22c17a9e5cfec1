use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::config::Config;
use lockbox_vault::doctor::{self, Status};
use lockbox_vault::error::ErrorClass;

use crate::cli::DoctorArgs;
use crate::error;
use crate::render::print_json;

pub fn run(config: &Config, args: DoctorArgs) -> Result<ExitCode> {
    let checks = doctor::run(config, args.as_profile.as_deref());
    if args.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {:<48} {}", c.check, c.detail);
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    if !args.json {
        println!(
            "{} checks: {failed} failed, {warned} warnings",
            checks.len()
        );
    }
    Ok(if failed > 0 {
        error::exit(ErrorClass::Operational)
    } else {
        ExitCode::SUCCESS
    })
}
