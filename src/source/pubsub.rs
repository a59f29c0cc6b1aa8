//! The Redis pub/sub session loop: connect, subscribe to everything, read, PING; when the session ends
//! for any reason, back off and do it all again — forever, until shutdown.
//!
//! redis-rs's async `PubSub` never reconnects (its stream just ends), and its own retry budgets give up
//! after seconds. Owning the loop here makes the policy ours: exponential backoff from 100 ms up to
//! `max_backoff`, reset only after a session that proved healthy (subscribed and answered a PING), and
//! a periodic PING so a half-open TCP connection is noticed instead of waiting silently forever.
//!
//! Settings arrive through a `watch` channel, so a config reload reaches a live session: added
//! channels and patterns are subscribed and removed ones unsubscribed on the same connection (messages
//! on the others keep flowing); a new URL ends the session and the next one connects there at once.
//!
//! Messages pass through a [`Backlog`] bounded in bytes (`[agent] max_backlog_mb`), so the
//! connection is always read at full speed: when the agent falls behind, Redis would otherwise hold
//! the excess in the client's output buffer and cut the connection past its limit, losing everything
//! buffered plus the reconnect gap, silently.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Incoming;
use super::backlog::{self, Backlog};
use crate::config::Subscription;
use crate::connect::redacted;
use crate::stats::Stats;

/// What one pub/sub source needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct PubSubSettings {
    pub url: String,
    pub subscriptions: Vec<Subscription>,
    pub max_backoff: Duration,
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
    /// Bytes held while the agent is behind; beyond it the oldest messages are dropped.
    pub max_backlog_bytes: usize,
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    /// Could not connect or subscribe.
    Failed(String),
    /// Was subscribed, then lost the connection. `healthy` = a PING had succeeded first.
    Lost {
        reason: String,
        healthy: bool,
    },
    /// The URL changed: connect to the new server now.
    Moved,
}

/// Runs sessions until `shutdown` fires. Messages go to `out` through the backlog; when `out` is
/// closed, it stops too.
pub async fn run(
    settings: watch::Receiver<PubSubSettings>,
    out: mpsc::Sender<Incoming>,
    stats: &Stats,
    shutdown: CancellationToken,
) {
    let (backlog, relay) = backlog::backlog();
    // On shutdown the sessions end and drop the backlog, which closes it; the relay then hands on
    // what is left, unless the agent has stopped reading.
    tokio::join!(sessions(settings, backlog, stats, shutdown), relay.run(out));
}

async fn sessions(
    mut settings: watch::Receiver<PubSubSettings>,
    mut backlog: Backlog,
    stats: &Stats,
    shutdown: CancellationToken,
) {
    let new_backoff = |max: Duration| {
        ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(max.max(Duration::from_millis(100)))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = new_backoff(settings.borrow().max_backoff);
    let mut outage: Option<Outage> = None;
    loop {
        let current = settings.borrow_and_update().clone();
        let end = session(
            current.clone(),
            &mut settings,
            &mut backlog,
            stats,
            &mut outage,
            &shutdown,
        )
        .await;
        let reason = match end {
            SessionEnd::Shutdown => return,
            SessionEnd::Moved => {
                info!(url = %redacted(&settings.borrow().url), "Redis URL changed; moving");
                backoff = new_backoff(settings.borrow().max_backoff);
                continue;
            }
            SessionEnd::Failed(reason) => reason,
            SessionEnd::Lost { reason, healthy } => {
                if healthy {
                    backoff = new_backoff(current.max_backoff);
                }
                stats.outages.inc();
                warn!(url = %redacted(&current.url), %reason, outages = stats.outages.get(), "lost the Redis connection");
                outage = Some(Outage::new());
                reason
            }
        };
        let outage = outage.get_or_insert_with(|| {
            stats.outages.inc();
            Outage::new()
        });
        outage.attempts += 1;
        let delay = backoff.next().unwrap_or(current.max_backoff);
        warn!(
            url = %redacted(&current.url),
            %reason,
            attempt = outage.attempts,
            retry_in_ms = delay.as_millis() as u64,
            "Redis unavailable; retrying"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
            // A reload during an outage (say, a corrected URL) is tried at once.
            Ok(()) = settings.changed() => {}
        }
    }
}

/// Bookkeeping for the log line that says how long Redis was gone.
struct Outage {
    since: Instant,
    attempts: u32,
}

impl Outage {
    fn new() -> Self {
        Outage {
            since: Instant::now(),
            attempts: 0,
        }
    }
}

async fn session(
    mut current: PubSubSettings,
    updates: &mut watch::Receiver<PubSubSettings>,
    backlog: &mut Backlog,
    stats: &Stats,
    outage: &mut Option<Outage>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let connected = tokio::select! {
        _ = shutdown.cancelled() => return SessionEnd::Shutdown,
        r = connect_and_subscribe(&current) => r,
    };
    let (mut sink, mut stream) = match connected {
        Ok(parts) => parts,
        Err(reason) => return SessionEnd::Failed(reason),
    };
    let (channels, patterns) = count(&current.subscriptions);
    match outage.take() {
        Some(o) => info!(
            channels,
            patterns,
            outage_ms = o.since.elapsed().as_millis() as u64,
            attempts = o.attempts,
            "reconnected to Redis and resubscribed"
        ),
        None => info!(channels, patterns, url = %redacted(&current.url), "subscribed"),
    }
    let mut healthy = false;
    let mut ping = tokio::time::interval(current.ping_interval);
    ping.tick().await; // the first tick is immediate; the subscription just proved the link
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return SessionEnd::Lost { reason: "connection closed".into(), healthy };
                };
                let incoming = Incoming {
                    channel: msg.get_channel_name().to_owned(),
                    payload: msg.get_payload_bytes().to_vec(),
                    ack: None,
                };
                backlog.push(incoming, current.max_backlog_bytes, stats);
            }
            _ = ping.tick() => {
                let timeout = current.ping_interval.min(Duration::from_secs(5));
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => { healthy = true; debug!("PING ok"); }
                    Ok(Err(e)) => return SessionEnd::Lost { reason: format!("PING failed: {e}"), healthy },
                    Err(_) => return SessionEnd::Lost {
                        reason: format!("no PING reply within {} ms (half-open connection?)", timeout.as_millis()),
                        healthy,
                    },
                }
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    return SessionEnd::Shutdown;
                }
                let next = updates.borrow_and_update().clone();
                if next.url != current.url {
                    return SessionEnd::Moved;
                }
                if let Err(e) = resubscribe(&mut sink, &current.subscriptions, &next.subscriptions).await {
                    return SessionEnd::Lost { reason: format!("changing subscriptions failed: {e}"), healthy };
                }
                if next.subscriptions != current.subscriptions {
                    let added: Vec<_> = next.subscriptions.iter().filter(|s| !current.subscriptions.contains(s)).collect();
                    let removed: Vec<_> = current.subscriptions.iter().filter(|s| !next.subscriptions.contains(s)).collect();
                    info!(added = ?names_of(&added), removed = ?names_of(&removed), "subscriptions changed");
                }
                if next.ping_interval != current.ping_interval {
                    ping = tokio::time::interval(next.ping_interval);
                    ping.tick().await;
                }
                current = next;
            }
        }
    }
}

/// Applies the difference between two subscription lists to a live connection.
async fn resubscribe(
    sink: &mut PubSubSink,
    old: &[Subscription],
    new: &[Subscription],
) -> redis::RedisResult<()> {
    let added: Vec<Subscription> = new.iter().filter(|s| !old.contains(s)).cloned().collect();
    let removed: Vec<Subscription> = old.iter().filter(|s| !new.contains(s)).cloned().collect();
    let (add_c, add_p) = (names(&added, false), names(&added, true));
    let (del_c, del_p) = (names(&removed, false), names(&removed, true));
    if !add_c.is_empty() {
        sink.subscribe(&add_c).await?;
    }
    if !add_p.is_empty() {
        sink.psubscribe(&add_p).await?;
    }
    if !del_c.is_empty() {
        sink.unsubscribe(&del_c).await?;
    }
    if !del_p.is_empty() {
        sink.punsubscribe(&del_p).await?;
    }
    Ok(())
}

async fn connect_and_subscribe(
    settings: &PubSubSettings,
) -> Result<(PubSubSink, PubSubStream), String> {
    let client = crate::connect::client(settings.url.as_str()).map_err(|e| e.to_string())?;
    let connect = async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        resubscribe(&mut sink, &[], &settings.subscriptions).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(parts)) => Ok(parts),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "connect and subscribe took longer than {} ms",
            settings.connect_timeout.as_millis()
        )),
    }
}

fn names(subs: &[Subscription], patterns: bool) -> Vec<&str> {
    subs.iter()
        .filter(|s| matches!(s, Subscription::Pattern(_)) == patterns)
        .map(Subscription::name)
        .collect()
}

fn names_of(subs: &[&Subscription]) -> Vec<String> {
    subs.iter().map(ToString::to_string).collect()
}

fn count(subs: &[Subscription]) -> (usize, usize) {
    let patterns = names(subs, true).len();
    (subs.len() - patterns, patterns)
}
