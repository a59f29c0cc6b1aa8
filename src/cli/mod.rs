//! The command line: clap definitions, logging setup, and the mapping from errors to exit codes.
//!
//! Exit codes: 0 success, 1 failure (bad config, Redis unreachable for a one-shot command, another agent
//! running), 2 usage errors (clap's own). Every failure prints one `herald: ...` paragraph on stderr.

mod agents;
mod check;
mod keygen;
mod pack;
mod publish;
mod rules;
mod run;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigErrors};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Desktop notifications from Redis, filtered by your Lua rules"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: subscribe, show notifications, send answers back.
    Run(run::Args),
    /// Validate a config file and report every error in it.
    Check(check::Args),
    /// Publish a notification (and optionally wait for the answers).
    Publish(Box<publish::Args>),
    /// Test rules, or trace one message through them.
    #[command(subcommand)]
    Rules(rules::Command),
    /// Make a key pair for signing notifications and rule packs.
    Keygen(keygen::Args),
    /// Sign rule packs.
    #[command(subcommand)]
    Pack(pack::Command),
    /// List the agents that are running now (their presence keys in Redis).
    Agents(agents::AgentsArgs),
    /// Print a stream's recent notifications (read-only: acknowledges nothing).
    Replay(agents::ReplayArgs),
}

/// `--config`, shared by the commands that read the agent's file.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Config file [default: $XDG_CONFIG_HOME/herald/herald.toml]
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(config::default_path)
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        Config::load(&self.path())
    }
}

/// For commands that work without a config (`publish`, `agents`, `replay`): the file at `path`
/// when one is given, else none.
fn config_if_given(path: &Option<PathBuf>) -> Result<Option<Config>, ConfigErrors> {
    path.as_deref().map(Config::load).transpose()
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Publish(args) => publish::run(*args),
        Command::Rules(command) => rules::run(command),
        Command::Agents(args) => agents::agents(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Pack(command) => pack::run(command),
        Command::Replay(args) => agents::replay(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout is for machine-readable output); `HERALD_LOG` filters, default `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// A tokio runtime for one command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `30s`, `1h 5m`: a duration as people write it.
fn humanize(d: std::time::Duration) -> String {
    format!(
        "{:#}",
        jiff::SignedDuration::try_from(d).unwrap_or_default()
    )
}
