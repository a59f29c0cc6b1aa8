//! The wiring of `herald run`: source → decode → rules → presenter → reply, with shutdown threaded
//! through.
//!
//! The agent owns the tasks and the order in which they stop: on shutdown the source stops reading, the
//! open question is answered `Dismissed`, questions still waiting become `Undeliverable`, and the reply
//! queue gets a grace period to reach Redis. Per-message failures (bad payloads, failing rules) are
//! logged with their channel or rule and counted; none of them stops the agent.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Config, OnError};
use crate::message::{self, Answer, AnsweredBy, Kind, Notification, Response};
use crate::present::{Delivery, Dialogs, Presenter};
use crate::reply::Replier;
use crate::rules::worker::RulesHandle;
use crate::rules::{self, Effects, Route, RuleFailure, Verdict};
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

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Presenter(#[from] crate::present::PresenterError),
    #[error("rules not loaded:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rules(Vec<rules::LoadError>),
}

/// Everything the per-message paths share.
struct Shared {
    hostname: String,
    presenter: Presenter,
    replier: Replier,
    stats: Arc<Stats>,
    on_error: OnError,
}

/// Runs the agent until `shutdown` fires. Returns the counters for the exit summary.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, StartError> {
    let stats = Arc::new(Stats::default());
    let presenter = Presenter::new(config.presenter.kind)?;
    let rules = start_rules(&config)?;
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
        on_error: config.rules.on_error,
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

    info!(
        hostname = %config.agent.hostname,
        config = %config.path.display(),
        rules = rules.as_ref().map_or(0, |r| r.names().len()),
        "herald is running"
    );
    let limit = config.agent.max_payload_bytes;
    let mut tick = tokio::time::interval(config.rules.tick);
    tick.tick().await; // the first tick is immediate; rules tick after a full period
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = incoming.recv() => match msg {
                Some(msg) => handle(&shared, rules.as_ref(), &questions, msg, limit).await,
                None => break,
            },
            _ = tick.tick(), if rules.is_some() => {
                if let Some(rules) = &rules {
                    match rules.tick().await {
                        Ok(t) => apply_effects(&shared, t.effects, &t.failures),
                        Err(e) => error!(error = %e, "on_tick not run"),
                    }
                }
            }
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

fn start_rules(config: &Config) -> Result<Option<RulesHandle>, StartError> {
    if config.rules.packs.is_empty() {
        return Ok(None);
    }
    let files = rules::rule_files(&config.rules.packs).map_err(StartError::Rules)?;
    let handle =
        RulesHandle::spawn(rules::engine_config(config), files).map_err(StartError::Rules)?;
    info!(rules = ?handle.names(), "rules loaded");
    Ok(Some(handle))
}

/// One raw message: decode, run the rules, then show, ask or answer.
async fn handle(
    shared: &Shared,
    rules: Option<&RulesHandle>,
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
    let (note, route) = match rules {
        None => (note, None),
        Some(rules) => match apply_rules(shared, rules, &msg.channel, note).await {
            Some(shown) => shown,
            None => return,
        },
    };
    let delivery = Delivery {
        channel: msg.channel,
        note,
    };
    if route == Some(Route::Silent) {
        shared.stats.silenced.inc();
        info!(channel = %delivery.channel, id = %delivery.note.id, "silenced by a rule");
        return;
    }
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

/// Runs the rules; `Some` when the message is still to be shown.
async fn apply_rules(
    shared: &Shared,
    rules: &RulesHandle,
    channel: &str,
    note: Notification,
) -> Option<(Notification, Option<Route>)> {
    let processed = match rules.process(channel.to_owned(), note.clone()).await {
        Ok(p) => p,
        Err(e) => {
            shared.stats.rule_errors.inc();
            error!(error = %e, channel, id = %note.id, "rules not run");
            return (shared.on_error == OnError::Pass).then_some((note, None));
        }
    };
    apply_effects(shared, processed.effects, &processed.failures);
    match processed.verdict {
        Verdict::Show { note, route } => Some((note, route)),
        Verdict::Drop { rule } => {
            shared.stats.dropped.inc();
            debug!(channel, id = %note.id, rule, "dropped by a rule");
            None
        }
        Verdict::Answer {
            rule,
            answer: response,
        } => {
            answer(shared, &note, response, AnsweredBy::Rule(rule));
            None
        }
    }
}

/// Logs rule failures and carries out what rules asked for: notifications and publishes.
fn apply_effects(shared: &Shared, effects: Effects, failures: &[RuleFailure]) {
    for f in failures {
        shared.stats.rule_errors.inc();
        warn!(rule = %f.rule, file = %f.file.display(), error = %f.message, errors = shared.stats.rule_errors.get(), "rule failed");
    }
    for n in effects.notices {
        shared.stats.shown.inc();
        let delivery = Delivery {
            channel: format!("rule:{}", n.rule),
            note: Notification {
                id: message::new_id(),
                title: n.title,
                message: n.message,
                kind: Kind::Simple,
                reply_channel: None,
                priority: n.priority,
                expires_at: None,
                extra: serde_json::Map::new(),
            },
        };
        shared.presenter.show(&delivery);
    }
    for p in effects.publishes {
        shared
            .replier
            .publish(&p.channel, p.payload, &format!("rule:{}", p.rule));
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
