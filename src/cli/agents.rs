//! `herald agents` lists the live agents; `herald replay` prints a stream's recent history.
//! Both only read: no group is created, nothing is acknowledged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use redis::streams::StreamRangeReply;

use crate::config;
use crate::message;
use crate::present::Delivery;
use crate::present::console::{Event, Printer};

/// Where to find Redis, shared by these read-only commands.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Read the Redis URL from this agent config (see also --url)
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Redis URL [default: $HERALD_REDIS_URL, else the config's, else redis://127.0.0.1:6379/]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let config = super::config_if_given(&self.config)?;
        let url = config::redis_target(self.url.as_deref(), config.as_ref())
            .map_err(anyhow::Error::msg)?;
        let client = crate::connect::client(url.as_str())
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::connect::redacted(&url)))?;
        client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| {
                format!(
                    "cannot connect to Redis at {}",
                    crate::connect::redacted(&url)
                )
            })
    }
}

#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    target: Target,
    /// The stream to read
    #[arg(long)]
    stream: String,
    /// How far back, e.g. 1h, 30m
    #[arg(long, default_value = "1h", value_parser = config::parse_duration)]
    since: Duration,
}

pub fn agents(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let mut conn = args.target.connect().await?;
        let agents = crate::presence::live_agents(&mut conn).await?;
        println!(
            "{:<24} {:<8} {:<8} {:<20} CHANNELS",
            "HOST", "VERSION", "OS", "GROUPS"
        );
        for a in &agents {
            println!(
                "{:<24} {:<8} {:<8} {:<20} {}",
                a.hostname,
                a.version,
                a.os,
                a.groups.join(","),
                a.channels.join(" ")
            );
        }
        eprintln!(
            "{} live agent{}",
            agents.len(),
            if agents.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let mut conn = args.target.connect().await?;
        let from = jiff::Timestamp::now().as_millisecond() - args.since.as_millis() as i64;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&args.stream)
            .arg(format!("{}", from.max(0)))
            .arg("+")
            .query_async(&mut conn)
            .await
            .context("XRANGE failed")?;
        let mut shown = 0;
        for entry in reply.ids {
            let payload = match entry.map.get("payload") {
                Some(redis::Value::BulkString(b)) => b.clone(),
                _ => continue,
            };
            match message::decode(&payload, usize::MAX, || entry.id.clone()) {
                Ok(note) => {
                    let delivery = Delivery {
                        channel: args.stream.clone(),
                        note,
                        route: None,
                        ack: None,
                    };
                    Printer.print(&Event::shown(&delivery));
                    shown += 1;
                }
                Err(e) => eprintln!("herald: entry {} skipped: {e}", entry.id),
            }
        }
        eprintln!(
            "{shown} notification{} from the last {}",
            if shown == 1 { "" } else { "s" },
            super::humanize(args.since)
        );
        Ok(ExitCode::SUCCESS)
    })
}
