//! `lockbox completions SHELL` and `lockbox man --output-dir DIR`: shell
//! completion scripts and man pages, generated from the same clap
//! definitions that parse the command line, so they cannot drift from it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "lockbox", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `lockbox.1`, then `lockbox-<sub>.1` for every subcommand, nested ones as
/// `lockbox-catalog-rebuild.1`: the names `man lockbox-backup` looks for.
pub fn man_pages(args: ManArgs) -> Result<ExitCode> {
    let dir = &args.output_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    for page in pages {
        println!("{}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}
