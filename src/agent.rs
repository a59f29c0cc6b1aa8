//! The wiring of `herald run`: source → decode → presenter → reply, with shutdown threaded through.
//!
//! The agent owns the tasks and the order in which they stop: on shutdown the source stops reading, the
//! open question is answered `Dismissed`, questions still waiting become `Undeliverable`, and the reply
//! queue gets a grace period to reach Redis. Per-message failures are logged with their channel and
//! counted; none of them stops the agent.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::message::{self, Answer, AnsweredBy, Notification, Response};
use crate::present::{Delivery, Dialogs, Presenter, PresenterError};
use crate::reply::Replier;
use crate::source::Incoming;
use crate::source::pubsub::{self, PubSubSettings};
use crate::stats::Stats;

/// How long queued replies may take to reach Redis once shutdown has begun.
const REPLY_GRACE: Duration = Duration::from_secs(3);

/// What `herald run` was told besides the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The Redis URL, already resolved (`--url` > env > config > default).
    pub redis_url: String,
}

/// Everything the per-message paths share.
struct Shared {
    hostname: String,
    presenter: Presenter,
    replier: Replier,
    stats: Arc<Stats>,
}

/// Runs the agent until `shutdown` fires. Returns the counters for the exit summary.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PresenterError> {
    let stats = Arc::new(Stats::default());
    let presenter = Presenter::new(config.presenter.kind)?;
    let dialogs = presenter.dialogs();
    let (replier, reply_task) = Replier::spawn(
        options.redis_url.clone(),
        config.redis.max_backoff,
        stats.clone(),
    );
    let shared = Arc::new(Shared {
        hostname: config.agent.hostname.clone(),
        presenter,
        replier,
        stats: stats.clone(),
    });

    let (incoming_tx, mut incoming) = mpsc::channel::<Incoming>(4096);
    let settings = PubSubSettings {
        url: options.redis_url.clone(),
        subscriptions: config.subscriptions.clone(),
        max_backoff: config.redis.max_backoff,
        ping_interval: config.redis.ping_interval,
        connect_timeout: config.redis.connect_timeout,
    };
    let source = {
        let stats = stats.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { pubsub::run(settings, incoming_tx, &stats, shutdown).await })
    };
    let (questions, question_rx) = mpsc::unbounded_channel();
    let worker = tokio::spawn(dialog_worker(
        dialogs,
        question_rx,
        shared.clone(),
        shutdown.clone(),
    ));

    info!(hostname = %config.agent.hostname, config = %config.path.display(), "herald is running");
    let limit = config.agent.max_payload_bytes;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = incoming.recv() => match msg {
                Some(msg) => handle(&shared, &questions, msg, limit),
                None => break,
            },
        }
    }

    info!("shutting down");
    drop(questions);
    let _ = source.await;
    let _ = worker.await;
    drop(shared);
    reply_task.drain(REPLY_GRACE, &stats).await;
    info!(summary = %stats.summary(), "stopped");
    Ok(stats)
}

/// One raw message: decode, then show or queue the question.
fn handle(
    shared: &Shared,
    questions: &mpsc::UnboundedSender<Delivery>,
    msg: Incoming,
    limit: usize,
) {
    shared.stats.received.inc();
    let note = match message::decode(&msg.payload, limit, message::new_id) {
        Ok(note) => note,
        Err(e) => {
            shared.stats.invalid.inc();
            warn!(channel = %msg.channel, reason = %e, invalid = shared.stats.invalid.get(), "rejected payload");
            return;
        }
    };
    let delivery = Delivery {
        channel: msg.channel,
        note,
    };
    if delivery.note.is_expired(Timestamp::now()) {
        shared.stats.expired.inc();
        info!(channel = %delivery.channel, id = %delivery.note.id, "expired before it could be shown");
        if delivery.note.kind.is_question() {
            answer(shared, &delivery.note, Answer::Expired, AnsweredBy::Herald);
        }
        return;
    }
    if delivery.note.kind.is_question() {
        // The worker owns the dialogs; it only stops after this loop has, so the send cannot fail.
        let _ = questions.send(delivery);
    } else {
        shared.stats.shown.inc();
        shared.presenter.show(&delivery);
    }
}

/// Asks queued questions one at a time. On shutdown the open one is answered `Dismissed` (by the
/// presenter) and the ones never shown become `Undeliverable`.
async fn dialog_worker(
    mut dialogs: Dialogs,
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            biased; // after shutdown, a waiting question must not be taken up and shown
            _ = shutdown.cancelled() => break,
            d = queue.recv() => match d { Some(d) => d, None => break },
        };
        if delivery.note.is_expired(Timestamp::now()) {
            shared.stats.expired.inc();
            answer(&shared, &delivery.note, Answer::Expired, AnsweredBy::Herald);
            continue;
        }
        shared.stats.shown.inc();
        let (response, by) = dialogs.ask(&delivery, &shutdown).await;
        if response == Answer::Expired {
            shared.stats.expired.inc();
        }
        answer(&shared, &delivery.note, response, by);
    }
    queue.close();
    while let Some(delivery) = queue.recv().await {
        answer(
            &shared,
            &delivery.note,
            Answer::Undeliverable,
            AnsweredBy::Herald,
        );
    }
}

/// Records an answer: the `answered` event, the counter, and the reply when one was asked for.
fn answer(shared: &Shared, note: &Notification, response: Answer, by: AnsweredBy) {
    shared.stats.answered.inc();
    shared.presenter.answered(note, response, &by);
    info!(id = %note.id, response = response.as_str(), answered_by = by.as_str(), "answered");
    if let Some(channel) = &note.reply_channel {
        let reply = Response::new(&shared.hostname, note, response, by);
        shared.replier.send(channel, &reply);
    }
}
