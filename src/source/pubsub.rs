//! The Redis pub/sub session loop: connect, subscribe to everything, read, PING; when the session ends
//! for any reason, back off and do it all again — forever, until shutdown.
//!
//! redis-rs's async `PubSub` never reconnects (its stream just ends), and its own retry budgets give up
//! after seconds. Owning the loop here makes the policy ours: exponential backoff from 100 ms up to
//! `max_backoff`, reset only after a session that proved healthy (subscribed and answered a PING), and
//! a periodic PING so a half-open TCP connection is noticed instead of waiting silently forever.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Incoming;
use crate::config::Subscription;
use crate::stats::Stats;

/// What one pub/sub source needs to know.
#[derive(Debug, Clone)]
pub struct PubSubSettings {
    pub url: String,
    pub subscriptions: Vec<Subscription>,
    pub max_backoff: Duration,
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
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
}

/// Runs sessions until `shutdown` fires. Messages go to `out`; when `out` is closed, it stops too.
pub async fn run(
    settings: PubSubSettings,
    out: mpsc::Sender<Incoming>,
    stats: &Stats,
    shutdown: CancellationToken,
) {
    let new_backoff = || {
        ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(settings.max_backoff.max(Duration::from_millis(100)))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = new_backoff();
    let mut outage: Option<Outage> = None;
    loop {
        let end = session(&settings, &out, &mut outage, &shutdown).await;
        let reason = match end {
            SessionEnd::Shutdown => return,
            SessionEnd::Failed(reason) => reason,
            SessionEnd::Lost { reason, healthy } => {
                if healthy {
                    backoff = new_backoff();
                }
                stats.outages.inc();
                warn!(url = %redacted(&settings.url), %reason, outages = stats.outages.get(), "lost the Redis connection");
                outage = Some(Outage::new());
                reason
            }
        };
        let outage = outage.get_or_insert_with(|| {
            stats.outages.inc();
            Outage::new()
        });
        outage.attempts += 1;
        let delay = backoff.next().unwrap_or(settings.max_backoff);
        warn!(
            url = %redacted(&settings.url),
            %reason,
            attempt = outage.attempts,
            retry_in_ms = delay.as_millis() as u64,
            "Redis unavailable; retrying"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
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
    settings: &PubSubSettings,
    out: &mpsc::Sender<Incoming>,
    outage: &mut Option<Outage>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let connected = tokio::select! {
        _ = shutdown.cancelled() => return SessionEnd::Shutdown,
        r = connect_and_subscribe(settings) => r,
    };
    let (mut sink, mut stream) = match connected {
        Ok(parts) => parts,
        Err(reason) => return SessionEnd::Failed(reason),
    };
    let (channels, patterns) = count(&settings.subscriptions);
    match outage.take() {
        Some(o) => info!(
            channels,
            patterns,
            outage_ms = o.since.elapsed().as_millis() as u64,
            attempts = o.attempts,
            "reconnected to Redis and resubscribed"
        ),
        None => info!(channels, patterns, url = %redacted(&settings.url), "subscribed"),
    }
    let mut healthy = false;
    let mut ping = tokio::time::interval(settings.ping_interval);
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
                };
                if out.send(incoming).await.is_err() {
                    return SessionEnd::Shutdown;
                }
            }
            _ = ping.tick() => {
                let timeout = settings.ping_interval.min(Duration::from_secs(5));
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => { healthy = true; debug!("PING ok"); }
                    Ok(Err(e)) => return SessionEnd::Lost { reason: format!("PING failed: {e}"), healthy },
                    Err(_) => return SessionEnd::Lost {
                        reason: format!("no PING reply within {} ms (half-open connection?)", timeout.as_millis()),
                        healthy,
                    },
                }
            }
        }
    }
}

async fn connect_and_subscribe(
    settings: &PubSubSettings,
) -> Result<(PubSubSink, PubSubStream), String> {
    let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
    let connect = async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        let channels: Vec<&str> = names(&settings.subscriptions, false);
        let patterns: Vec<&str> = names(&settings.subscriptions, true);
        if !channels.is_empty() {
            sink.subscribe(&channels).await?;
        }
        if !patterns.is_empty() {
            sink.psubscribe(&patterns).await?;
        }
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

fn count(subs: &[Subscription]) -> (usize, usize) {
    let patterns = names(subs, true).len();
    (subs.len() - patterns, patterns)
}

/// The URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        let (auth, host) = rest.rsplit_once('@')?;
        let user = auth.split_once(':').map_or(auth, |(u, _)| u);
        Some(format!("{scheme}://{user}:***@{host}"))
    }) {
        Some(r) => r,
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redacted("redis://u:secret@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redacted("redis://:secret@h/"), "redis://:***@h/");
        assert_eq!(redacted("redis://h:6379/"), "redis://h:6379/");
    }
}
