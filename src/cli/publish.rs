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
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, Config};
use crate::connect::redacted;
use crate::message::{self, Answer, Kind, Priority, ReceivedResponse, WireNotification};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("content").required(true).args(["title", "json"]))]
#[command(group = clap::ArgGroup::new("target").required(true).args(["channel", "stream"]))]
pub struct Args {
    /// Read the Redis URL from this agent config (see also --url)
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Redis URL [default: $HERALD_REDIS_URL, else the config's, else redis://127.0.0.1:6379/]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Channel to PUBLISH on (fire and forget: only agents listening now get it)
    #[arg(long, value_name = "CHANNEL")]
    channel: Option<String>,
    /// Stream to XADD to (agents that are away get it when they come back)
    #[arg(long, value_name = "STREAM")]
    stream: Option<String>,
    /// With --stream: trim it to about this many entries (MAXLEN ~); 0 keeps everything
    #[arg(long, value_name = "N", default_value_t = 100_000, requires = "stream")]
    maxlen: u64,
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
    /// With --wait: follow receipts too, and end with a per-host table (delivered, shown, answer)
    /// that names the live agents that never got the message
    #[arg(long, requires = "wait")]
    track: bool,
    /// Sign with this private key file (from `herald keygen`)
    #[arg(long, value_name = "KEYFILE")]
    sign: Option<PathBuf>,
    /// Key id to sign as [default: the key file's name without .key]
    #[arg(long, requires = "sign")]
    kid: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = super::config_if_given(&args.config)?;
    let url =
        config::redis_target(args.url.as_deref(), config.as_ref()).map_err(anyhow::Error::msg)?;
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

    let receipt_channel = match (
        args.track,
        doc.get("receipt_channel").and_then(Value::as_str),
    ) {
        (true, None) => {
            let channel = format!("receipts:{}", message::new_id());
            doc.insert("receipt_channel".into(), Value::String(channel.clone()));
            Some(channel)
        }
        (true, Some(existing)) => Some(existing.to_owned()),
        (false, _) => None,
    };
    let mut payload = serde_json::to_string(&doc)?;
    if let Some(keyfile) = &args.sign {
        payload = signed(&payload, &id, keyfile, args.kid.as_deref())?;
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let client = crate::connect::client(url.as_str())?;
        let connect_error = || format!("cannot connect to Redis at {}", redacted(&url));
        // Subscribe before publishing, so no fast answer is missed.
        let listener = match (args.wait, &reply_channel) {
            (Some(wait), Some(replies)) => {
                let mut pubsub = client
                    .get_async_pubsub()
                    .await
                    .with_context(connect_error)?;
                pubsub.subscribe(replies).await?;
                if let Some(receipts) = &receipt_channel {
                    pubsub.subscribe(receipts).await?;
                }
                Some((pubsub, wait))
            }
            _ => None,
        };
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(connect_error)?;
        let target = send(&mut conn, &args, &payload).await?;
        let Some((pubsub, wait)) = listener else {
            println!("{id}");
            eprintln!("published {id} to {target}");
            return anyhow::Ok(());
        };
        eprintln!(
            "published {id} to {target}; waiting {} for replies on {}",
            super::humanize(wait),
            reply_channel.as_deref().unwrap_or_default()
        );
        let channels = Channels {
            receipts: receipt_channel.as_deref(),
        };
        let outcome = collect(pubsub, &id, wait, args.expect, channels).await;
        if args.track {
            let live = crate::presence::live_agents(&mut conn)
                .await
                .unwrap_or_default();
            print!("{}", outcome.table(&live));
        }
        eprintln!("{}", summary(&outcome.counts));
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Wraps `payload` in a signed envelope.
fn signed(
    payload: &str,
    id: &str,
    keyfile: &std::path::Path,
    kid: Option<&str>,
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(keyfile)
        .with_context(|| format!("cannot read {}", keyfile.display()))?;
    let key = crate::trust::read_private_key(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", keyfile.display()))?;
    let kid = match kid {
        Some(k) => k.to_owned(),
        None => keyfile
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let envelope = crate::trust::sign(&key, &kid, id, jiff::Timestamp::now().as_second(), payload);
    Ok(serde_json::to_string(&envelope)?)
}

/// PUBLISHes or XADDs the payload; says where it went.
async fn send(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &Args,
    payload: &str,
) -> anyhow::Result<String> {
    if let Some(channel) = &args.channel {
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(conn)
            .await
            .context("PUBLISH failed")?;
        return Ok(format!(
            "{channel} ({receivers} subscriber{})",
            plural(receivers)
        ));
    }
    let stream = args
        .stream
        .as_deref()
        .expect("clap requires --channel or --stream");
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream);
    if args.maxlen > 0 {
        cmd.arg("MAXLEN").arg("~").arg(args.maxlen);
    }
    let entry: String = cmd
        .arg("*")
        .arg("payload")
        .arg(payload)
        .query_async(conn)
        .await
        .context("XADD failed")?;
    Ok(format!("stream {stream} (entry {entry})"))
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

/// Which of the subscribed channels carries receipts (the other one carries replies).
struct Channels<'a> {
    receipts: Option<&'a str>,
}

/// What came back: answers by kind, and per host what its receipts said.
#[derive(Default)]
struct Outcome {
    counts: BTreeMap<usize, (Answer, usize)>,
    hosts: BTreeMap<String, HostProgress>,
}

#[derive(Default)]
struct HostProgress {
    delivered: bool,
    shown: bool,
    answer: Option<String>,
}

impl Outcome {
    /// The `--track` table; live agents with no receipt at all are listed as never having it.
    fn table(&self, live: &[crate::presence::AgentInfo]) -> String {
        let mut out = format!(
            "{:<24} {:<10} {:<6} {}\n",
            "HOST", "DELIVERED", "SHOWN", "ANSWER"
        );
        for (host, p) in &self.hosts {
            let yes = |b: bool| if b { "yes" } else { "no" };
            out += &format!(
                "{host:<24} {:<10} {:<6} {}\n",
                yes(p.delivered),
                yes(p.shown),
                p.answer.as_deref().unwrap_or("-")
            );
        }
        let missing: Vec<&str> = live
            .iter()
            .map(|a| a.hostname.as_str())
            .filter(|h| !self.hosts.contains_key(*h))
            .collect();
        for host in &missing {
            out += &format!(
                "{host:<24} {:<10} {:<6} - (live, never acknowledged)\n",
                "no", "no"
            );
        }
        out += &format!(
            "{} agent{} acknowledged; {} live agent{} did not\n",
            self.hosts.len(),
            if self.hosts.len() == 1 { "" } else { "s" },
            missing.len(),
            if missing.len() == 1 { "" } else { "s" }
        );
        out
    }
}

/// Prints replies for `id` until `wait` is over or `expect` replies came; follows receipts too.
async fn collect(
    pubsub: redis::aio::PubSub,
    id: &str,
    wait: Duration,
    expect: Option<usize>,
    channels: Channels<'_>,
) -> Outcome {
    let mut outcome = Outcome::default();
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
        if channels.receipts == Some(msg.get_channel_name()) {
            track(&mut outcome, id, &text);
            continue;
        }
        let Ok(reply) = serde_json::from_str::<ReceivedResponse>(&text) else {
            eprintln!("herald: ignoring a message that is not a response: {text}");
            continue;
        };
        if reply.id.as_deref().is_some_and(|r| r != id) {
            continue; // an answer to another notification on a shared reply channel
        }
        println!("{text}");
        total += 1;
        outcome
            .hosts
            .entry(reply.hostname.clone())
            .or_default()
            .answer = Some(reply.response.as_str().to_owned());
        let slot = Answer::ALL
            .iter()
            .position(|a| *a == reply.response)
            .unwrap_or(0);
        outcome.counts.entry(slot).or_insert((reply.response, 0)).1 += 1;
    }
    outcome
}

/// Records one receipt and says it on stderr as it happens.
fn track(outcome: &mut Outcome, id: &str, text: &str) {
    #[derive(Deserialize)]
    struct Receipt {
        id: String,
        hostname: String,
        event: String,
        response: Option<String>,
    }
    let Ok(r) = serde_json::from_str::<Receipt>(text) else {
        return;
    };
    if r.id != id {
        return;
    }
    eprintln!(
        "{:<24} {}{}",
        r.hostname,
        r.event,
        r.response
            .as_deref()
            .map(|a| format!(" {a}"))
            .unwrap_or_default()
    );
    let p = outcome.hosts.entry(r.hostname).or_default();
    p.delivered = true;
    match r.event.as_str() {
        "shown" => p.shown = true,
        "answered" | "expired" | "dropped" if p.answer.is_none() => {
            p.answer = Some(r.response.unwrap_or(r.event));
        }
        _ => {}
    }
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

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
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
