//! `herald run`: load the config, take the single-instance lock, run the agent until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::ConfigArg;
use crate::agent::{self, RunOptions};
use crate::config;
use crate::lock::InstanceLock;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Redis URL [default: $HERALD_REDIS_URL, else the config's [redis] url]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Where handled stream ids are kept [default: $XDG_STATE_HOME/herald]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Pin the rules' clock to this time (RFC 3339), so benchmarks behave the same at any hour
    #[arg(long, value_name = "TIME", hide = true)]
    rules_clock: Option<jiff::Timestamp>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let redis_url = config::resolve_redis_url(args.url.as_deref(), Some(&config));
    config::check_redis_url(&redis_url, &config.redis.tls).map_err(anyhow::Error::msg)?;
    let _lock = InstanceLock::acquire(&config.path)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let options = RunOptions {
            url_flag: args.url,
            state_dir: args.state_dir,
            rules_clock: args.rules_clock,
        };
        agent::run(config, options, shutdown)
            .await
            .context("herald cannot start")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop herald with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    info!(signal = name, "stop requested");
    shutdown.cancel();
}
