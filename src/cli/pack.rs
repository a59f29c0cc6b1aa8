//! `herald pack sign`: sign a rule pack folder so agents with `require_signed_packs` accept it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::rules::packsig;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sign every rule file of a pack folder (writes DIR/herald-pack.sig)
    Sign(SignArgs),
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The pack folder
    dir: PathBuf,
    /// Private key file from `herald keygen`
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// Key id agents know the key by [default: the key file's name without .key]
    #[arg(long)]
    kid: Option<String>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Sign(args) = command;
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = crate::trust::read_private_key(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    let kid = args.kid.unwrap_or_else(|| {
        args.key
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let files = packsig::sign(&args.dir, &key, &kid).map_err(anyhow::Error::msg)?;
    eprintln!(
        "signed {} file{} in {} as `{kid}`",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
