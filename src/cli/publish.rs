//! `herald publish`: send one notification, and with `--wait` collect the answers from every agent.
//!
//! With `--wait` the reply channel is subscribed *before* the notification is published, so no fast
//! answer can be missed. stdout carries only the replies (one JSON object per line, as received);
//! progress and the closing summary go to stderr.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::ConfigArg;
use crate::config::{self, Config};
use crate::message::{self, Answer, Kind, Priority, ReceivedResponse, WireNotification};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("content").required(true).args(["title", "json"]))]
pub struct Args {
    /// Read the Redis URL from this agent config (see also --url)
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Redis URL [default: $HERALD_REDIS_URL, else the config's, else redis://127.0.0.1:6379/]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Channel to publish on
    #[arg(long, value_name = "CHANNEL")]
    channel: String,
    /// Title of the notification
    #[arg(long, requires = "message", conflicts_with = "json")]
    title: Option<String>,
    /// Body of the notification
    #[arg(long, requires = "title")]
    message: Option<String>,
    /// Simple, OK or OKCancel
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind, default_value = "Simple")]
    kind: Kind,
    /// low, normal, high or critical
    #[arg(long, value_parser = parse_priority, default_value = "normal")]
    priority: Priority,
    /// Where agents send their answers [default with --wait: a fresh replies:<uuid>]
    #[arg(long, value_name = "CHANNEL")]
    reply_channel: Option<String>,
    /// Notification id [default: a fresh UUID]
    #[arg(long)]
    id: Option<String>,
    /// Expire the notification after this long, e.g. 10m (sets expires_at)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires_in: Option<Duration>,
    /// Publish this JSON document (a file, or - for stdin) instead of building one from flags
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Wait this long for replies, printing each as it arrives, e.g. 30s
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    wait: Option<Duration>,
    /// With --wait: stop as soon as this many replies have arrived
    #[arg(long, value_name = "N", requires = "wait")]
    expect: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Some(
            ConfigArg {
                config: Some(path.clone()),
            }
            .load()?,
        ),
        None => None,
    };
    let url = config::resolve_redis_url(args.url.as_deref(), config.as_ref());
    config::check_redis_url(&url).map_err(anyhow::Error::msg)?;
    let (mut doc, id) = build(&args)?;
    let reply_channel = match (&args.wait, doc.get("reply_channel").and_then(Value::as_str)) {
        (Some(_), None) => {
            let channel = format!("replies:{}", message::new_id());
            doc.insert("reply_channel".into(), Value::String(channel.clone()));
            Some(channel)
        }
        (_, existing) => existing.map(str::to_owned),
    };
    let payload = serde_json::to_string(&doc)?;
    let limit = config
        .as_ref()
        .map_or(message::DEFAULT_MAX_PAYLOAD, |c: &Config| {
            c.agent.max_payload_bytes
        });
    message::decode(payload.as_bytes(), limit, String::new)
        .context("the notification would be rejected by agents")?;

    let runtime = super::runtime()?;
    runtime.block_on(async {
        let client = redis::Client::open(url.as_str())?;
        let replies = match (args.wait, &reply_channel) {
            (Some(wait), Some(channel)) => {
                let mut pubsub = client
                    .get_async_pubsub()
                    .await
                    .with_context(|| format!("cannot connect to Redis at {}", redacted(&url)))?;
                pubsub.subscribe(channel).await?;
                Some((pubsub, wait))
            }
            _ => None,
        };
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("cannot connect to Redis at {}", redacted(&url)))?;
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(&args.channel)
            .arg(&payload)
            .query_async(&mut conn)
            .await
            .context("PUBLISH failed")?;
        match replies {
            None => {
                println!("{id}");
                eprintln!(
                    "published {id} to {} ({receivers} subscriber{})",
                    args.channel,
                    plural(receivers)
                );
            }
            Some((pubsub, wait)) => {
                eprintln!(
                    "published {id} to {} ({receivers} subscriber{}); waiting {} for replies on {}",
                    args.channel,
                    plural(receivers),
                    humanize(wait),
                    reply_channel.as_deref().unwrap_or_default()
                );
                let counts = collect(pubsub, &id, wait, args.expect).await;
                eprintln!("{}", summary(&counts));
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The notification document and its id, from flags or from `--json`.
fn build(args: &Args) -> anyhow::Result<(Map<String, Value>, String)> {
    let mut doc = match &args.json {
        Some(path) => read_json(path)?,
        None => {
            let wire = WireNotification {
                id: None,
                title: args.title.clone().unwrap_or_default(),
                message: args.message.clone().unwrap_or_default(),
                kind: args.kind,
                reply_channel: None,
                priority: args.priority,
                expires_at: None,
                extra: Map::new(),
            };
            match serde_json::to_value(wire)? {
                Value::Object(map) => map,
                _ => unreachable!("a struct serialises to an object"),
            }
        }
    };
    if let Some(channel) = &args.reply_channel {
        doc.insert("reply_channel".into(), channel.clone().into());
    }
    if let Some(ttl) = args.expires_in {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::try_from(ttl)?;
        doc.insert("expires_at".into(), at.to_string().into());
    }
    let id = match (&args.id, doc.get("id")) {
        (Some(id), _) => id.clone(),
        (None, Some(Value::String(id))) => id.clone(),
        (None, Some(other)) => bail!("`id` must be a string, found {other}"),
        (None, None) => message::new_id(),
    };
    doc.insert("id".into(), Value::String(id.clone()));
    Ok((doc, id))
}

fn read_json(path: &PathBuf) -> anyhow::Result<Map<String, Value>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    match serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?
    {
        Value::Object(map) => Ok(map),
        other => bail!(
            "{} must hold a JSON object, found {}",
            path.display(),
            message::json_kind(&other)
        ),
    }
}

/// Prints replies for `id` until `wait` is over or `expect` replies came; returns the count per answer.
async fn collect(
    pubsub: redis::aio::PubSub,
    id: &str,
    wait: Duration,
    expect: Option<usize>,
) -> BTreeMap<usize, (Answer, usize)> {
    let mut counts: BTreeMap<usize, (Answer, usize)> = BTreeMap::new();
    let mut total = 0;
    let mut stream = pubsub.into_on_message();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    while expect.is_none_or(|n| total < n) {
        let msg = tokio::select! {
            _ = &mut deadline => break,
            msg = stream.next() => match msg {
                Some(msg) => msg,
                None => { eprintln!("herald: lost the Redis connection while waiting"); break; }
            },
        };
        let text = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
        let Ok(reply) = serde_json::from_str::<ReceivedResponse>(&text) else {
            eprintln!("herald: ignoring a message that is not a response: {text}");
            continue;
        };
        if reply.id.as_deref().is_some_and(|r| r != id) {
            continue; // an answer to another notification on a shared reply channel
        }
        println!("{text}");
        total += 1;
        let slot = Answer::ALL
            .iter()
            .position(|a| *a == reply.response)
            .unwrap_or(0);
        counts.entry(slot).or_insert((reply.response, 0)).1 += 1;
    }
    counts
}

/// `3 replies: 2 OK, 1 Cancel`.
fn summary(counts: &BTreeMap<usize, (Answer, usize)>) -> String {
    let total: usize = counts.values().map(|(_, n)| n).sum();
    let noun = if total == 1 { "reply" } else { "replies" };
    if total == 0 {
        return format!("0 {noun}");
    }
    let parts: Vec<String> = counts
        .values()
        .map(|(answer, n)| format!("{n} {}", answer.as_str()))
        .collect();
    format!("{total} {noun}: {}", parts.join(", "))
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.to_ascii_lowercase().parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s)
}

fn humanize(d: Duration) -> String {
    format!(
        "{:#}",
        jiff::SignedDuration::try_from(d).unwrap_or_default()
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn redacted(url: &str) -> String {
    crate::source::pubsub::redacted(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_in_protocol_order() {
        let mut counts = BTreeMap::new();
        counts.insert(1, (Answer::Cancel, 1));
        counts.insert(0, (Answer::Ok, 2));
        assert_eq!(summary(&counts), "3 replies: 2 OK, 1 Cancel");
        assert_eq!(summary(&BTreeMap::new()), "0 replies");
    }
}
