use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use lockbox_vault::keys;

use crate::cli::KeygenArgs;

pub fn run(args: KeygenArgs) -> Result<ExitCode> {
    let (identity, recipient) = keys::generate_identity();
    let text = keys::identity_file_text(&identity);
    match &args.output {
        Some(path) => {
            keys::write_secret_file(path, text.as_bytes())?;
            super::note!(
                "wrote identity to {} (mode 0600); keep it OFF the backup host",
                path.display()
            );
            println!("{recipient}");
        }
        None => {
            // Like age-keygen: the identity on stdout, the recipient on stderr.
            std::io::stdout().write_all(text.as_bytes())?;
            eprintln!("Public key: {recipient}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
