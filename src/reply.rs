//! Sending answers back: the response JSON goes to the notification's `reply_channel`.
//!
//! Answers are precious (the user already clicked), so publishing never gives up while Herald runs: a
//! reply waits in a queue and is retried with backoff until Redis takes it. At most one response is ever
//! sent per notification id, whoever answers. On shutdown the queue gets a few seconds to drain; what
//! cannot be sent is logged and counted as lost, never silently dropped.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lru::LruCache;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::connect::redacted;
use crate::message::Response;
use crate::stats::Stats;

/// How many answered ids are remembered to refuse a second response.
const REMEMBERED_IDS: usize = 100_000;

struct Job {
    channel: String,
    body: String,
    id: String,
}

/// Queues responses for publishing; cheap to share.
pub struct Replier {
    tx: mpsc::UnboundedSender<Job>,
    answered: Mutex<LruCache<String, ()>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<Stats>,
}

/// Whether a response was queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// This id was answered before; nothing is sent.
    AlreadyAnswered,
}

impl Replier {
    /// Starts the publishing task against the URL `url` holds (a reload may change it).
    pub fn spawn(
        url: watch::Receiver<String>,
        max_backoff: Duration,
        stats: Arc<Stats>,
    ) -> (Replier, ReplyTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(publish_loop(
            url,
            max_backoff,
            rx,
            pending.clone(),
            stats.clone(),
        ));
        let replier = Replier {
            tx,
            answered: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED_IDS).expect("non-zero"),
            )),
            pending: pending.clone(),
            stats,
        };
        (replier, ReplyTask { task, pending })
    }

    /// Queues `response` for `channel`, unless this id already has a response.
    pub fn send(&self, channel: &str, response: &Response) -> Queued {
        let first = {
            let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
            answered.put(response.id.clone(), ()).is_none()
        };
        if !first {
            self.stats.replies_refused.inc();
            warn!(id = %response.id, channel, "a response for this id was already sent; not sending another");
            return Queued::AlreadyAnswered;
        }
        let body = serde_json::to_string(response).expect("a response always serialises");
        self.publish(channel, body, &response.id);
        Queued::Yes
    }

    /// Queues any message for `channel` (rules' `ctx.publish`); `label` names it in logs.
    pub fn publish(&self, channel: &str, body: String, label: &str) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            channel: channel.to_owned(),
            body,
            id: label.to_owned(),
        };
        if self.tx.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.stats.replies_lost.inc();
            warn!(id = label, channel, "publisher has stopped; message lost");
        }
    }
}

/// The publishing task; finishes once every `Replier` is dropped and the queue is empty.
pub struct ReplyTask {
    task: JoinHandle<()>,
    pending: Arc<AtomicUsize>,
}

impl ReplyTask {
    /// Waits up to `grace` for queued replies to go out; counts the rest as lost.
    pub async fn drain(self, grace: Duration, stats: &Stats) {
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            let lost = self.pending.load(Ordering::SeqCst);
            for _ in 0..lost {
                stats.replies_lost.inc();
            }
            warn!(
                lost,
                grace_ms = grace.as_millis() as u64,
                "Redis unreachable at shutdown: replies not sent"
            );
        }
    }
}

async fn publish_loop(
    url: watch::Receiver<String>,
    max_backoff: Duration,
    mut rx: mpsc::UnboundedReceiver<Job>,
    pending: Arc<AtomicUsize>,
    stats: Arc<Stats>,
) {
    let mut conn: Option<(String, MultiplexedConnection)> = None;
    while let Some(job) = rx.recv().await {
        let mut backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(max_backoff.max(Duration::from_millis(100)))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let url = url.borrow().clone();
            match publish(&url, &mut conn, &job).await {
                Ok(receivers) => {
                    stats.replies_sent.inc();
                    debug!(id = %job.id, channel = %job.channel, receivers, "reply published");
                    break;
                }
                Err(e) => {
                    conn = None;
                    let delay = backoff.next().unwrap_or(max_backoff);
                    warn!(id = %job.id, channel = %job.channel, error = %e, url = %redacted(&url),
                          retry_in_ms = delay.as_millis() as u64, "cannot publish reply yet; will retry");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
    info!("reply queue drained");
}

/// Publishes one job, (re)connecting first when there is no connection to `url`.
async fn publish(
    url: &str,
    conn: &mut Option<(String, MultiplexedConnection)>,
    job: &Job,
) -> redis::RedisResult<u64> {
    if conn
        .as_ref()
        .is_none_or(|(connected_to, _)| connected_to != url)
    {
        let client = crate::connect::client(url)?;
        *conn = Some((
            url.to_owned(),
            client.get_multiplexed_async_connection().await?,
        ));
    }
    let (_, conn) = conn.as_mut().expect("connected above");
    redis::cmd("PUBLISH")
        .arg(&job.channel)
        .arg(&job.body)
        .query_async(conn)
        .await
}
