//! Redis Streams through consumer groups: at-least-once delivery from Redis.
//!
//! Each stream has a reader with its own connection (a blocking XREADGROUP would hold up anything else
//! sent on it, so its response timeout is longer than the block). A session first re-reads this
//! consumer's own pending entries — what it was given before a crash or an outage but never
//! acknowledged — then new ones; in shared groups it also takes over entries left idle by a consumer
//! that died (XAUTOCLAIM). Entries are acknowledged by [`Acker`] only once the agent says their outcome
//! is final, on a second connection so an XACK never waits behind a blocking read.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Incoming;
use crate::config::{Group, StreamSubscription};
use crate::connect::redacted;
use crate::stats::Stats;

/// How long one XREADGROUP waits for new entries (also the longest pause between two claim rounds).
const BLOCK: Duration = Duration::from_secs(2);
/// Entries fetched per read.
const BATCH: usize = 100;

/// What identifies an entry for XACK.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub stream: String,
    pub group: String,
    pub entry_id: String,
}

/// Entries handed to the agent and not yet acknowledged: a re-read of the pending list skips them,
/// so a question still on screen is not shown a second time after a reconnect.
pub type InFlight = Arc<Mutex<HashSet<AckToken>>>;

/// One stream reader's settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub url: String,
    pub subscription: StreamSubscription,
    /// This agent's consumer name (its host name).
    pub consumer: String,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
}

/// Reads one stream until shutdown, surviving any outage.
pub async fn run(
    settings: StreamSettings,
    out: mpsc::Sender<Incoming>,
    in_flight: InFlight,
    acker: Acker,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let mut backoff = backoff(settings.max_backoff);
    let mut attempts = 0u32;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&settings, &out, &in_flight, &acker) => r,
        };
        let reason = match result {
            Ok(()) => return, // the agent stopped taking messages
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(10) {
            backoff = self::backoff(settings.max_backoff);
            attempts = 0;
        }
        attempts += 1;
        stats.outages.inc();
        let delay = backoff.next().unwrap_or(settings.max_backoff);
        warn!(stream = %settings.subscription.stream, url = %redacted(&settings.url), %reason, attempt = attempts,
              retry_in_ms = delay.as_millis() as u64, "stream unavailable; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn backoff(max: Duration) -> backon::ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(max.max(Duration::from_millis(100)))
        .with_jitter()
        .without_max_times()
        .build()
}

/// One connection's life: create the group, drain our pending entries, then read new ones.
async fn session(
    s: &StreamSettings,
    out: &mpsc::Sender<Incoming>,
    in_flight: &InFlight,
    acker: &Acker,
) -> Result<(), String> {
    let client = crate::connect::client(s.url.as_str()).map_err(|e| e.to_string())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(s.connect_timeout))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let sub = &s.subscription;
    let group = sub.group.name();
    create_group(&mut conn, sub)
        .await
        .map_err(|e| e.to_string())?;
    info!(stream = %sub.stream, group, consumer = %s.consumer, "reading stream");

    // Our own pending entries first: delivered before, never acknowledged.
    let mut cursor = "0-0".to_owned();
    loop {
        let entries = read(&mut conn, s, &cursor, None)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = entries.last() else { break };
        cursor = last.id.clone();
        debug!(stream = %sub.stream, count = entries.len(), "re-reading pending entries");
        if !deliver(s, entries, out, in_flight, acker).await {
            return Ok(());
        }
    }
    // In a shared group the loop must come round often enough to keep our held entries fresh.
    let block = match sub.group {
        Group::Shared(_) => BLOCK.min(sub.claim_idle / 3).max(Duration::from_millis(50)),
        Group::Host(_) => BLOCK,
    };
    let mut last_claim: Option<Instant> = None;
    loop {
        if matches!(sub.group, Group::Shared(_))
            && last_claim.is_none_or(|t| t.elapsed() >= sub.claim_idle / 3)
        {
            last_claim = Some(Instant::now());
            // Entries still on screen here must not look abandoned to the rest of the group.
            touch(&mut conn, s, in_flight)
                .await
                .map_err(|e| e.to_string())?;
            let claimed = claim(&mut conn, s).await.map_err(|e| e.to_string())?;
            if !claimed.is_empty() {
                info!(stream = %sub.stream, count = claimed.len(), "took over entries from a consumer that stopped");
                if !deliver(s, claimed, out, in_flight, acker).await {
                    return Ok(());
                }
            }
        }
        let entries = read(&mut conn, s, ">", Some(block))
            .await
            .map_err(|e| e.to_string())?;
        if !deliver(s, entries, out, in_flight, acker).await {
            return Ok(());
        }
    }
}

async fn create_group(
    conn: &mut MultiplexedConnection,
    sub: &StreamSubscription,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&sub.stream)
        .arg(sub.group.name())
        .arg(sub.start.as_redis_id())
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

async fn read(
    conn: &mut MultiplexedConnection,
    s: &StreamSettings,
    from: &str,
    block: Option<Duration>,
) -> redis::RedisResult<Vec<StreamId>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(s.subscription.group.name())
        .arg(&s.consumer)
        .arg("COUNT")
        .arg(BATCH);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&s.subscription.stream).arg(from);
    let reply: Option<StreamReadReply> = cmd.query_async(conn).await?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}

/// Resets the idle time of the entries this agent still holds (a question left open for long), so
/// another consumer of a shared group does not take them over while they are on screen.
async fn touch(
    conn: &mut MultiplexedConnection,
    s: &StreamSettings,
    in_flight: &InFlight,
) -> redis::RedisResult<()> {
    let ids: Vec<String> = in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|t| t.stream == s.subscription.stream)
        .map(|t| t.entry_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    redis::cmd("XCLAIM")
        .arg(&s.subscription.stream)
        .arg(s.subscription.group.name())
        .arg(&s.consumer)
        .arg(0)
        .arg(&ids)
        .arg("JUSTID")
        .query_async::<Vec<String>>(conn)
        .await
        .map(drop)
}

async fn claim(
    conn: &mut MultiplexedConnection,
    s: &StreamSettings,
) -> redis::RedisResult<Vec<StreamId>> {
    let mut all = Vec::new();
    let mut cursor = "0-0".to_owned();
    loop {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&s.subscription.stream)
            .arg(s.subscription.group.name())
            .arg(&s.consumer)
            .arg(s.subscription.claim_idle.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(conn)
            .await?;
        all.extend(reply.claimed);
        if reply.next_stream_id == "0-0" {
            return Ok(all);
        }
        cursor = reply.next_stream_id;
    }
}

/// Hands entries to the agent; false when the agent has stopped.
async fn deliver(
    s: &StreamSettings,
    entries: Vec<StreamId>,
    out: &mpsc::Sender<Incoming>,
    in_flight: &InFlight,
    acker: &Acker,
) -> bool {
    for entry in entries {
        let token = AckToken {
            stream: s.subscription.stream.clone(),
            group: s.subscription.group.name().to_owned(),
            entry_id: entry.id.clone(),
        };
        if !in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone())
        {
            continue; // still being handled: not a new delivery
        }
        let payload = match entry.map.get("payload") {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            Some(Value::SimpleString(text)) => text.clone().into_bytes(),
            _ => {
                warn!(stream = %s.subscription.stream, entry = %entry.id, "entry has no `payload` field (or was trimmed); acknowledged and skipped");
                acker.ack(token);
                continue;
            }
        };
        let incoming = Incoming {
            channel: s.subscription.stream.clone(),
            payload,
            ack: Some(token),
        };
        if out.send(incoming).await.is_err() {
            return false;
        }
    }
    true
}

/// Acknowledges entries whose outcome is final, retrying until Redis takes the XACK.
#[derive(Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<AckToken>,
}

impl Acker {
    /// Starts the acknowledging task.
    pub fn spawn(
        url: String,
        max_backoff: Duration,
        in_flight: InFlight,
        shutdown: CancellationToken,
    ) -> Acker {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(ack_loop(url, max_backoff, rx, in_flight, shutdown));
        Acker { tx }
    }

    pub fn ack(&self, token: AckToken) {
        let _ = self.tx.send(token);
    }
}

async fn ack_loop(
    url: String,
    max_backoff: Duration,
    mut rx: mpsc::UnboundedReceiver<AckToken>,
    in_flight: InFlight,
    shutdown: CancellationToken,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(token) = rx.recv().await {
        let mut backoff = backoff(max_backoff);
        loop {
            let result = async {
                if conn.is_none() {
                    conn = Some(
                        crate::connect::client(url.as_str())?
                            .get_multiplexed_async_connection()
                            .await?,
                    );
                }
                let c = conn.as_mut().expect("connected above");
                redis::cmd("XACK")
                    .arg(&token.stream)
                    .arg(&token.group)
                    .arg(&token.entry_id)
                    .query_async::<i64>(c)
                    .await
            }
            .await;
            match result {
                Ok(_) => break,
                Err(e) => {
                    conn = None;
                    let delay = backoff.next().unwrap_or(max_backoff);
                    warn!(stream = %token.stream, entry = %token.entry_id, error = %e, "cannot acknowledge yet; will retry");
                    tokio::select! {
                        // Unacknowledged entries stay pending in Redis and come back at the next start.
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
    }
}
