//! `herald keygen`: a new Ed25519 key pair for signing notifications. The private key goes to a file
//! only its owner can read (never overwriting one); the config line for agents goes to stdout.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::trust;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Key id publishers sign with and agents list under [trust] keys
    #[arg(long)]
    name: String,
    /// Private key file [default: ./<name>.key]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.name.is_empty() || args.name.contains(['"', '\\', '\n']) {
        anyhow::bail!("--name must be a plain key id such as `ops`");
    }
    let path = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.name)));
    let key = trust::generate().map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(trust::private_key_text(&key).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "private key written to {} (mode 0600); add this line to [trust] keys on every agent:",
        path.display()
    );
    println!("{} = \"{}\"", args.name, trust::public_key_text(&key));
    Ok(ExitCode::SUCCESS)
}
