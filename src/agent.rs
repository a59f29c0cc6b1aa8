//! The wiring of `herald run`: source → decode → rules → presenter → reply, with shutdown threaded
//! through.
//!
//! The agent owns the tasks and the order in which they stop: on shutdown the source stops reading, the
//! open question is answered `Dismissed`, questions still waiting become `Undeliverable`, and the reply
//! queue gets a grace period to reach Redis. Per-message failures (bad payloads, failing rules) are
//! logged with their channel or rule and counted; none of them stops the agent.
//!
//! A reload (a saved file, or SIGHUP) builds the whole next generation first — config parsed and
//! validated, every changed rule compiled — and swaps only when all of it succeeded; otherwise the
//! running generation stays and the user is told once per failed attempt.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::watch::ConfigWatcher;
use crate::config::{self, Config, OnError};
use crate::message::{self, Answer, AnsweredBy, Kind, Notification, Response};
use crate::present::{Active, Delivery, Dialogs, Presenter};
use crate::reply::Replier;
use crate::rules::worker::{RulesHandle, Stopped};
use crate::rules::{self, Effects, Processed, Route, RuleFailure, Verdict};
use crate::source::Incoming;
use crate::source::pubsub::{self, PubSubSettings};
use crate::source::stream::{self, AckToken, Acker, InFlight, StreamSettings};
use crate::stats::Stats;
use crate::store::Store;

/// Messages handed to the rules thread and not yet back; past this, reading from Redis waits.
const MAX_IN_RULES: usize = 1024;

/// The most messages handed to the rules thread at once: only what has already arrived is batched,
/// so this bounds the latency a flood adds (about 128 × 5 µs), never delays a lone message.
const RULES_BATCH: usize = 128;

/// How often the user is told about pub/sub messages dropped because Herald fell behind.
const OVERFLOW_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long queued replies may take to reach Redis once shutdown has begun.
const REPLY_GRACE: Duration = Duration::from_secs(3);

/// What `herald run` was told besides the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--url`, which wins over the environment and every config generation.
    pub url_flag: Option<String>,
    /// Where handled stream ids are kept (`--state-dir`, default `$XDG_STATE_HOME/herald`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Pins the rules' clock (`--rules-clock`, for benchmarks and demos that must behave the same at
    /// any hour).
    pub rules_clock: Option<Timestamp>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("rules not loaded:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rules(Vec<rules::LoadError>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Password(String),
}

/// Everything the per-message paths share.
struct Shared {
    presenter: Presenter,
    replier: Replier,
    stats: Arc<Stats>,
    /// The current generation's config.
    config: RwLock<Arc<Config>>,
    /// Stream delivery: handled ids on disk, and the XACK task. `None` without stream subscriptions.
    streams: Option<StreamState>,
    /// Ids of accepted signed notifications (replay protection across restarts), in the same store.
    signed: Option<Arc<Store>>,
    /// Per-publisher flood control, when `[flood]` is configured.
    flood: std::sync::Mutex<Option<crate::flood::Flood>>,
}

struct StreamState {
    store: Arc<Store>,
    acker: Acker,
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs the agent until `shutdown` fires. Returns the counters for the exit summary.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, StartError> {
    let stats = Arc::new(Stats::default());
    let presenter = Presenter::new(&config.presenter);
    let rules = start_rules(&config)?;
    if let (Some(rules), Some(at)) = (&rules, options.rules_clock) {
        rules.set_time(Some(at));
    }
    let dialogs = presenter.dialogs();
    let url = config::resolve_redis_url(options.url_flag.as_deref(), Some(&config));
    let url = config::with_password(&url, &config.redis.password).map_err(StartError::Password)?;
    crate::connect::set_tls(&config.redis.tls);
    let (url_tx, url_rx) = watch::channel(url.clone());
    let url_for_streams = url.clone();
    let (replier, reply_task) = Replier::spawn(url_rx, config.redis.max_backoff, stats.clone());
    let (source_tx, source_rx) = watch::channel(source_settings(&config, url));
    // Small: pub/sub's real buffer is its byte-bounded backlog, and streams wait in Redis.
    let (incoming_tx, mut incoming) = mpsc::channel::<Incoming>(256);
    // Watch before subscribing: a save made once the agent says it is subscribed must be seen.
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel();
    let watcher = match ConfigWatcher::start(&config, reload_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "cannot watch the config for changes; SIGHUP still reloads");
            None
        }
    };
    spawn_sighup(reload_tx, shutdown.clone());
    let source = {
        let (stats, shutdown, tx) = (stats.clone(), shutdown.clone(), incoming_tx.clone());
        tokio::spawn(async move { pubsub::run(source_rx, tx, &stats, shutdown).await })
    };
    let presence = tokio::spawn(crate::presence::run(
        url_for_streams.clone(),
        agent_info(&config),
        shutdown.clone(),
    ));
    let mut tick = tick_interval(config.rules.tick).await;
    let flood = config.flood.clone().map(crate::flood::Flood::new);
    let mut flood_summary = tick_interval(
        config
            .flood
            .as_ref()
            .map_or(Duration::from_secs(60), |f| f.summary_every),
    )
    .await;
    info!(
        hostname = %config.agent.hostname,
        config = %config.path.display(),
        rules = rules.as_ref().map_or(0, |r| r.names().len()),
        "herald is running"
    );
    let store = open_store(&config, &options)?;
    let streams = start_streams(
        &config,
        &url_for_streams,
        store.clone(),
        &incoming_tx,
        &stats,
        &shutdown,
    );
    let signed = store.filter(|_| !config.trust.keys.is_empty());
    drop(incoming_tx);
    let shared = Arc::new(Shared {
        presenter,
        replier,
        stats: stats.clone(),
        config: RwLock::new(Arc::new(config)),
        streams,
        signed,
        flood: std::sync::Mutex::new(flood),
    });
    let (questions, question_rx) = mpsc::unbounded_channel();
    let worker = tokio::spawn(dialog_worker(
        dialogs,
        question_rx,
        shared.clone(),
        shutdown.clone(),
    ));
    let mut agent = Agent {
        shared: shared.clone(),
        rules,
        generation: 1,
        options,
        source_tx,
        url_tx,
        watcher,
    };

    let mut behind_check = tick_interval(OVERFLOW_REPORT_EVERY).await;
    let mut overflow_reported = 0;
    let mut in_rules = FuturesOrdered::new();
    let mut in_rules_count = 0;
    let mut reload_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // A change starts (or keeps) the debounce timer; the reload runs once it expires.
            Some(()) = reload_rx.recv() => {
                reload_at = Some(tokio::time::Instant::now() + crate::config::watch::DEBOUNCE);
            }
            _ = crate::wait::sleep_until_opt(reload_at), if reload_at.is_some() => {
                reload_at = None;
                if let Some(period) = agent.reload().await {
                    tick = tick_interval(period).await;
                }
            }
            // Timers come before messages: under a flood `incoming` is always ready, and the
            // reports of what the flood cost (and on_tick) must not wait for it to end.
            _ = flood_summary.tick() => summarise_flood(&shared),
            _ = behind_check.tick() => report_overflow(&shared, &mut overflow_reported),
            _ = tick.tick(), if agent.rules.is_some() => {
                if let Some(rules) = &agent.rules {
                    match rules.tick().await {
                        Ok(t) => apply_effects(&shared, t.effects, &t.failures),
                        Err(e) => error!(error = %e, "on_tick not run"),
                    }
                }
            }
            // The rules thread works while this loop goes on reading: results come back in order.
            Some((batch, processed)) = in_rules.next(), if !in_rules.is_empty() => {
                let batch: Vec<Prepared> = batch;
                in_rules_count -= batch.len();
                rules_done(&shared, &questions, batch, processed);
            }
            msg = incoming.recv(), if in_rules_count < MAX_IN_RULES => match msg {
                Some(msg) => {
                    let batch = prepare_batch(&shared, msg, &mut incoming);
                    match &agent.rules {
                        None => {
                            for prepared in batch {
                                present(&shared, &questions, prepared, None);
                            }
                        }
                        Some(_) if batch.is_empty() => {}
                        Some(rules) => {
                            let jobs = batch.iter().map(|p| (p.channel.clone(), p.note.clone())).collect();
                            let pending = rules.submit(jobs);
                            in_rules_count += batch.len();
                            in_rules.push_back(async move {
                                let processed = match pending {
                                    Ok(rx) => rx.await.map_err(|_| Stopped),
                                    Err(e) => Err(e),
                                };
                                (batch, processed)
                            }.boxed());
                        }
                    }
                }
                None => break,
            },
        }
    }

    info!("shutting down");
    // Nothing more is read: the pub/sub relay, blocked on a full channel, must see it closed.
    drop(incoming);
    // Messages already with the rules are finished, so none read from Redis is silently lost.
    while let Some((batch, processed)) = in_rules.next().await {
        rules_done(&shared, &questions, batch, processed);
    }
    drop(questions);
    drop(agent);
    let _ = source.await;
    let _ = worker.await;
    let _ = presence.await;
    drop(shared);
    reply_task.drain(REPLY_GRACE, &stats).await;
    info!(summary = %stats.summary(), "stopped");
    Ok(stats)
}

/// The state a reload replaces.
struct Agent {
    shared: Arc<Shared>,
    rules: Option<RulesHandle>,
    generation: u64,
    options: RunOptions,
    source_tx: watch::Sender<PubSubSettings>,
    url_tx: watch::Sender<String>,
    watcher: Option<ConfigWatcher>,
}

impl Agent {
    /// Builds the next generation and swaps it in, or keeps the current one and says why. Returns
    /// the new tick period when it changed.
    async fn reload(&mut self) -> Option<Duration> {
        let started = Instant::now();
        let old = self.shared.config();
        let next = match Config::load(&old.path) {
            Ok(next) => next,
            Err(errors) => {
                let lines = errors.0.iter().map(ToString::to_string).collect();
                return self.reload_failed("config not reloaded", lines);
            }
        };
        let url = config::resolve_redis_url(self.options.url_flag.as_deref(), Some(&next));
        let url = match config::with_password(&url, &next.redis.password) {
            Ok(url) => url,
            Err(e) => return self.reload_failed("config not reloaded", vec![e]),
        };
        if let Err(e) = config::check_redis_url(&url, &next.redis.tls) {
            return self.reload_failed("config not reloaded", vec![e]);
        }
        let rules_summary = match self.reload_rules(&next).await {
            Ok(summary) => summary,
            Err(errors) => {
                let lines = errors.iter().map(ToString::to_string).collect();
                return self.reload_failed("rules not reloaded", lines);
            }
        };
        // Everything compiled: swap.
        crate::connect::set_tls(&next.redis.tls);
        if next.redis.tls != old.redis.tls {
            self.notice("Herald: TLS settings changed; they apply to new connections (restart herald to reconnect now)");
        }
        if next.presenter.kind != old.presenter.kind {
            self.notice("Herald: presenter.kind changed; restart herald to switch presenters");
        }
        if next.streams != old.streams {
            self.notice("Herald: stream subscriptions changed; restart herald to apply them");
        }
        let added = next
            .subscriptions
            .iter()
            .filter(|s| !old.subscriptions.contains(s))
            .count();
        let removed = old
            .subscriptions
            .iter()
            .filter(|s| !next.subscriptions.contains(s))
            .count();
        self.source_tx.send_if_modified(|current| {
            let settings = source_settings(&next, url.clone());
            let changed = *current != settings;
            *current = settings;
            changed
        });
        self.url_tx.send_if_modified(|current| {
            let changed = *current != url;
            *current = url.clone();
            changed
        });
        if let Some(watcher) = &mut self.watcher {
            watcher.follow(&next);
        }
        {
            let mut flood = self.shared.flood.lock().unwrap_or_else(|p| p.into_inner());
            match (flood.as_mut(), &next.flood) {
                (Some(f), Some(c)) => f.reconfigure(c.clone()),
                (None, Some(c)) => *flood = Some(crate::flood::Flood::new(c.clone())),
                (_, None) => *flood = None,
            }
        }
        let tick = (next.rules.tick != old.rules.tick).then_some(next.rules.tick);
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.generation += 1;
        self.shared.stats.reloads.inc();
        let r = rules_summary.unwrap_or_default();
        info!(
            generation = self.generation,
            channels_added = added,
            channels_removed = removed,
            rules_added = r.added.len(),
            rules_removed = r.removed.len(),
            rules_changed = r.changed.len(),
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "reloaded"
        );
        tick
    }

    /// Reloads, starts or stops the rules thread for `next`. `Ok(None)` when there are no rules.
    async fn reload_rules(
        &mut self,
        next: &Config,
    ) -> Result<Option<rules::ReloadSummary>, Vec<rules::LoadError>> {
        if next.rules.packs.is_empty() {
            let removed = self
                .rules
                .take()
                .map(|r| r.names().to_vec())
                .unwrap_or_default();
            return Ok(Some(rules::ReloadSummary {
                removed,
                ..Default::default()
            }));
        }
        let files = rules::config_rule_files(next)?;
        match &mut self.rules {
            Some(handle) => handle
                .reload(rules::engine_config(next), files)
                .await
                .map(Some),
            None => {
                let handle = RulesHandle::spawn(rules::engine_config(next), files)?;
                let added = handle.names().to_vec();
                self.rules = Some(handle);
                Ok(Some(rules::ReloadSummary {
                    added,
                    ..Default::default()
                }))
            }
        }
    }

    /// Keeps the running generation; logs every error, tells the user once (the first error), counts.
    fn reload_failed(&self, what: &str, errors: Vec<String>) -> Option<Duration> {
        self.shared.stats.reload_failures.inc();
        error!(
            kept = self.generation,
            failures = self.shared.stats.reload_failures.get(),
            "{what}; the previous config and rules stay in effect:\n  {}",
            errors.join("\n  ")
        );
        let more = match errors.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        let first = errors.first().map_or("", String::as_str);
        self.notice(&format!("Herald: {what}: {first}{more}"));
        None
    }

    fn notice(&self, text: &str) {
        self.shared.presenter.notice(text);
    }
}

/// What this agent publishes about itself in its presence key.
fn agent_info(config: &Config) -> crate::presence::AgentInfo {
    let mut channels: Vec<String> = config
        .subscriptions
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    channels.extend(
        config
            .streams
            .iter()
            .map(|s| format!("stream:{}", s.stream)),
    );
    crate::presence::AgentInfo {
        hostname: config.agent.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        groups: config.agent.groups.clone(),
        channels,
        started: message::now_seconds().to_string(),
    }
}

fn source_settings(config: &Config, url: String) -> PubSubSettings {
    PubSubSettings {
        url,
        subscriptions: config.subscriptions.clone(),
        max_backoff: config.redis.max_backoff,
        ping_interval: config.redis.ping_interval,
        connect_timeout: config.redis.connect_timeout,
        max_backlog_bytes: config.agent.max_backlog_bytes,
    }
}

/// A tick timer whose first tick comes after a full period.
async fn tick_interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    // Never a burst of catch-up ticks: a slow on_tick must not starve the messages in the loop.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tick
}

/// SIGHUP asks for a reload, as it does for most daemons.
fn spawn_sighup(reload: mpsc::UnboundedSender<()>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = hup.recv() => {
                    info!("SIGHUP: reloading");
                    let _ = reload.send(());
                }
            }
        }
    });
}

/// Opens the state store when streams or signed notifications need one.
fn open_store(config: &Config, options: &RunOptions) -> Result<Option<Arc<Store>>, StartError> {
    if config.streams.is_empty() && config.trust.keys.is_empty() {
        return Ok(None);
    }
    let dir = options
        .state_dir
        .clone()
        .unwrap_or_else(crate::store::default_dir);
    let store = Store::open(&dir, &config.path)?;
    match store.prune() {
        Ok(n) if n > 0 => info!(forgotten = n, "pruned old handled ids"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot prune the state store"),
    }
    Ok(Some(Arc::new(store)))
}

/// Starts a reader per stream, plus the XACK task.
fn start_streams(
    config: &Config,
    url: &str,
    store: Option<Arc<Store>>,
    out: &mpsc::Sender<Incoming>,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
) -> Option<StreamState> {
    let store = store.filter(|_| !config.streams.is_empty())?;
    let in_flight: InFlight = Default::default();
    let acker = Acker::spawn(
        url.to_owned(),
        config.redis.max_backoff,
        in_flight.clone(),
        shutdown.clone(),
    );
    for subscription in &config.streams {
        let settings = StreamSettings {
            url: url.to_owned(),
            subscription: subscription.clone(),
            consumer: config.agent.hostname.clone(),
            max_backoff: config.redis.max_backoff,
            connect_timeout: config.redis.connect_timeout,
        };
        tokio::spawn(stream::run(
            settings,
            out.clone(),
            in_flight.clone(),
            acker.clone(),
            stats.clone(),
            shutdown.clone(),
        ));
    }
    info!(store = %store.path().display(), streams = config.streams.len(), "stream delivery ready");
    Some(StreamState { store, acker })
}

fn start_rules(config: &Config) -> Result<Option<RulesHandle>, StartError> {
    if config.rules.packs.is_empty() {
        return Ok(None);
    }
    let files = rules::config_rule_files(config).map_err(StartError::Rules)?;
    let handle =
        RulesHandle::spawn(rules::engine_config(config), files).map_err(StartError::Rules)?;
    info!(rules = ?handle.names(), "rules loaded");
    Ok(Some(handle))
}

/// A message that passed decoding, verification, de-duplication and flood control, on its way to
/// the rules.
struct Prepared {
    channel: String,
    note: Notification,
    ack: Option<AckToken>,
}

/// One raw message up to the rules: decode, verify, de-duplicate, flood control. `None` when its
/// fate is already settled.
fn prepare(shared: &Shared, msg: Incoming) -> Option<Prepared> {
    shared.stats.received.inc();
    let config = shared.config();
    // A stream entry without an id of the publisher's is known by its entry id, so a re-delivery
    // is recognised; a pub/sub message gets a fresh UUID.
    let fresh_id = || {
        msg.ack
            .as_ref()
            .map_or_else(message::new_id, |t| t.entry_id.clone())
    };
    let (payload, signed_by) = match open_envelope(shared, &config, &msg) {
        Ok(opened) => opened,
        Err(e) => {
            shared.stats.unverified.inc();
            warn!(channel = %msg.channel, reason = %e, unverified = shared.stats.unverified.get(), "refused notification");
            settle(shared, msg.ack.as_ref(), None);
            return None;
        }
    };
    let note = match message::decode(&payload, config.agent.max_payload_bytes, fresh_id) {
        Ok(mut note) => {
            note.signed_by = signed_by;
            note
        }
        Err(e) => {
            shared.stats.invalid.inc();
            warn!(channel = %msg.channel, reason = %e, invalid = shared.stats.invalid.get(), "rejected payload");
            settle(shared, msg.ack.as_ref(), None);
            return None;
        }
    };
    if already_handled(shared, &note, msg.ack.as_ref()) {
        return None;
    }
    if !admitted(shared, &note, &msg.channel) {
        receipt(shared, &note, "dropped", None);
        settle(shared, msg.ack.as_ref(), Some(&note.id));
        return None;
    }
    receipt(shared, &note, "delivered", None);
    Some(Prepared {
        channel: msg.channel,
        note,
        ack: msg.ack,
    })
}

/// Prepares `first` and whatever else has already arrived, up to [`RULES_BATCH`] messages.
fn prepare_batch(
    shared: &Shared,
    first: Incoming,
    incoming: &mut mpsc::Receiver<Incoming>,
) -> Vec<Prepared> {
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(msg) = next {
        batch.extend(prepare(shared, msg));
        if batch.len() >= RULES_BATCH {
            break;
        }
        next = incoming.try_recv().ok();
    }
    batch
}

/// A batch is back from the rules: each message's verdict, in order.
fn rules_done(
    shared: &Shared,
    questions: &mpsc::UnboundedSender<Delivery>,
    batch: Vec<Prepared>,
    processed: Result<Vec<Processed>, Stopped>,
) {
    // One result per message; should one be missing, that message is handled as if the rules
    // had stopped, never silently skipped.
    let mut results = processed.map(Vec::into_iter);
    for prepared in batch {
        let result = match &mut results {
            Ok(results) => results.next().ok_or(Stopped),
            Err(Stopped) => Err(Stopped),
        };
        after_rules(shared, questions, prepared, result);
    }
}

/// The rules' verdict on a prepared message: show, drop or answer it.
fn after_rules(
    shared: &Shared,
    questions: &mpsc::UnboundedSender<Delivery>,
    p: Prepared,
    processed: Result<Processed, Stopped>,
) {
    let ack = p.ack.clone();
    if let Some((note, route)) = apply_verdict(shared, &p.channel, p.note, ack.as_ref(), processed)
    {
        let p = Prepared {
            channel: p.channel,
            note,
            ack,
        };
        present(shared, questions, p, route);
    }
}

/// Shows a notification, queues a question, or settles an expired or silenced one.
fn present(
    shared: &Shared,
    questions: &mpsc::UnboundedSender<Delivery>,
    p: Prepared,
    route: Option<Route>,
) {
    let config = shared.config();
    let note = p.note;
    // Once keys are configured, an unsigned question cannot open a modal dialog: it asks in a toast.
    let route = if !config.trust.keys.is_empty()
        && note.signed_by.is_none()
        && note.kind.is_question()
        && !config.trust.allow_unsigned_dialogs
        && route != Some(Route::Silent)
    {
        Some(Route::Toast)
    } else {
        route
    };
    let delivery = Delivery {
        channel: p.channel,
        note,
        route,
        ack: p.ack,
    };
    if route == Some(Route::Silent) {
        shared.stats.silenced.inc();
        info!(channel = %delivery.channel, id = %delivery.note.id, "silenced by a rule");
        receipt(shared, &delivery.note, "dropped", None);
        settle(shared, delivery.ack.as_ref(), Some(&delivery.note.id));
        return;
    }
    if delivery.note.is_expired(Timestamp::now()) {
        info!(channel = %delivery.channel, id = %delivery.note.id, "expired before it could be shown");
        expire(shared, &delivery);
        return;
    }
    let as_dialog = route == Some(Route::Dialog) && shared.presenter.active() == Active::Desktop;
    if delivery.note.kind.is_question() || as_dialog {
        // The worker owns the dialogs; it only stops after this loop has, so the send cannot fail.
        let _ = questions.send(delivery);
    } else {
        shared.stats.shown.inc();
        shared.presenter.show(&delivery);
        receipt(shared, &delivery.note, "shown", None);
        // Recorded after it is shown. A SIGKILL that arrives during the fsync is delivered only
        // once the fsync is done, so recording first would lose exactly the toast being shown;
        // this way only a kill in the microseconds between showing and recording repeats one.
        settle(shared, delivery.ack.as_ref(), Some(&delivery.note.id));
    }
}

/// Verifies a signed envelope (or lets an unsigned payload through where no signature is required);
/// returns the notification bytes and the signing key id.
fn open_envelope<'a>(
    shared: &Shared,
    config: &Config,
    msg: &'a Incoming,
) -> Result<(std::borrow::Cow<'a, [u8]>, Option<String>), crate::trust::TrustError> {
    use std::borrow::Cow;
    let plain = Ok((Cow::Borrowed(msg.payload.as_slice()), None));
    if config.trust.keys.is_empty() || msg.payload.len() > config.agent.max_payload_bytes {
        return plain; // decoding reports oversized payloads
    }
    let required = config.trust.required.is_match(&msg.channel);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else {
        return plain; // decoding reports why it is not JSON
    };
    if !crate::trust::looks_signed(&json) {
        return if required {
            Err(crate::trust::TrustError::Unsigned)
        } else {
            plain
        };
    }
    let now = Timestamp::now().as_second();
    let verified = crate::trust::verify(
        json,
        &config.trust.keys,
        now,
        config.trust.max_skew.as_secs() as i64,
    )?;
    if let Some(store) = &shared.signed {
        let key = format!("signed:{}", verified.id);
        if store.is_handled(&key).unwrap_or(false) {
            return Err(crate::trust::TrustError::Replay(verified.id));
        }
        if let Err(e) = store.mark_handled(&key) {
            warn!(error = %e, "cannot record a signed id; a replay after a restart would not be caught");
        }
    }
    Ok((
        Cow::Owned(verified.payload.into_bytes()),
        Some(verified.kid),
    ))
}

/// Flood control: whether this publisher is still under its rate.
fn admitted(shared: &Shared, note: &Notification, channel: &str) -> bool {
    let mut flood = shared.flood.lock().unwrap_or_else(|p| p.into_inner());
    let Some(flood) = flood.as_mut() else {
        return true;
    };
    let publisher = match &note.signed_by {
        Some(kid) => format!("key {kid}"),
        None => format!("channel {channel}"),
    };
    if flood.admit(&publisher, Timestamp::now()) {
        return true;
    }
    shared.stats.suppressed.inc();
    debug!(id = %note.id, %publisher, "suppressed by flood control");
    false
}

/// Shows one "N notifications suppressed from X" notice per publisher held back since the last one.
fn summarise_flood(shared: &Shared) {
    let summaries = match shared
        .flood
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        Some(flood) => flood.take_summaries(),
        None => return,
    };
    for (publisher, n) in summaries {
        let text = format!(
            "{n} notification{} suppressed from {publisher}",
            if n == 1 { "" } else { "s" }
        );
        info!(%publisher, suppressed = n, "{text}");
        shared.presenter.notice(&text);
    }
}

/// Tells the user, once per period, how many pub/sub messages were dropped since the last report
/// because the backlog was full: a loss they would otherwise never learn of.
fn report_overflow(shared: &Shared, reported: &mut u64) {
    let total = shared.stats.overflowed.get();
    let n = total - *reported;
    if n == 0 {
        return;
    }
    *reported = total;
    let text = format!(
        "Herald fell behind: {n} notification{} dropped (pub/sub backlog full)",
        if n == 1 { "" } else { "s" }
    );
    warn!(dropped = n, total, "{text}");
    shared.presenter.notice(&text);
}

/// A stream entry whose id was handled before (a re-delivery, or a publisher's retried XADD) is
/// acknowledged and not shown again.
fn already_handled(shared: &Shared, note: &Notification, ack: Option<&AckToken>) -> bool {
    let (Some(streams), Some(token)) = (&shared.streams, ack) else {
        return false;
    };
    match streams.store.is_handled(&note.id) {
        Ok(true) => {
            info!(stream = %token.stream, entry = %token.entry_id, id = %note.id, "already handled; not shown again");
            streams.acker.ack(token.clone());
            true
        }
        Ok(false) => false,
        Err(e) => {
            warn!(error = %e, "state store unreadable; showing the entry (it may be a repeat)");
            false
        }
    }
}

/// The outcome of a stream entry is final: remember its id (when it had a valid one) and XACK it.
fn settle(shared: &Shared, ack: Option<&AckToken>, id: Option<&str>) {
    let (Some(streams), Some(token)) = (&shared.streams, ack) else {
        return;
    };
    if let Some(id) = id
        && let Err(e) = streams.store.mark_handled(id)
    {
        warn!(error = %e, id, "cannot record a handled id; a re-delivery could show it again");
    }
    streams.acker.ack(token.clone());
}

/// Answers `Expired` (questions) and settles the entry.
fn expire(shared: &Shared, delivery: &Delivery) {
    shared.stats.expired.inc();
    if delivery.note.kind.is_question() {
        answer(shared, delivery, Answer::Expired, AnsweredBy::Herald);
    } else {
        receipt(shared, &delivery.note, "expired", None);
        settle(shared, delivery.ack.as_ref(), Some(&delivery.note.id));
    }
}

/// Publishes a receipt when the notification (or the config) names a receipt channel.
fn receipt(shared: &Shared, note: &Notification, event: &str, response: Option<Answer>) {
    let config = shared.config();
    let channel = note
        .extra
        .get("receipt_channel")
        .and_then(|v| v.as_str())
        .or(config.agent.receipt_channel.as_deref());
    let Some(channel) = channel else { return };
    let mut body = serde_json::json!({
        "id": note.id,
        "hostname": config.agent.hostname,
        "event": event,
        "timestamp": message::now_seconds().to_string(),
    });
    if let Some(r) = response {
        body["response"] = r.as_str().into();
    }
    shared.replier.publish(channel, body.to_string(), &note.id);
}

/// Applies the rules' result; `Some` when the message is still to be shown.
fn apply_verdict(
    shared: &Shared,
    channel: &str,
    note: Notification,
    ack: Option<&AckToken>,
    processed: Result<Processed, Stopped>,
) -> Option<(Notification, Option<Route>)> {
    let processed = match processed {
        Ok(p) => p,
        Err(e) => {
            shared.stats.rule_errors.inc();
            error!(error = %e, channel, id = %note.id, "rules not run");
            return (shared.config().rules.on_error == OnError::Pass).then_some((note, None));
        }
    };
    apply_effects(shared, processed.effects, &processed.failures);
    match processed.verdict {
        Verdict::Show { note, route } => Some((note, route)),
        Verdict::Drop { rule } => {
            shared.stats.dropped.inc();
            debug!(channel, id = %note.id, rule, "dropped by a rule");
            receipt(shared, &note, "dropped", None);
            settle(shared, ack, Some(&note.id));
            None
        }
        Verdict::Answer {
            rule,
            answer: response,
        } => {
            let delivery = Delivery {
                channel: channel.to_owned(),
                note,
                route: None,
                ack: ack.cloned(),
            };
            answer(shared, &delivery, response, AnsweredBy::Rule(rule));
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
                signed_by: None,
            },
            route: None,
            ack: None,
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
/// presenter) and the ones never shown become `Undeliverable` — except stream questions, which stay
/// pending in Redis unanswered and are asked again at the next start.
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
            expire(&shared, &delivery);
            continue;
        }
        shared.stats.shown.inc();
        receipt(&shared, &delivery.note, "shown", None);
        let (response, by) = dialogs.ask(&delivery, &shutdown).await;
        if !delivery.note.kind.is_question() {
            // A Simple message a rule routed to a dialog: acknowledged, but it asked for no answer.
            debug!(id = %delivery.note.id, response = response.as_str(), "dialog closed");
            settle(&shared, delivery.ack.as_ref(), Some(&delivery.note.id));
            continue;
        }
        if shutdown.is_cancelled() && delivery.ack.is_some() {
            info!(id = %delivery.note.id, "stream question left pending; it is asked again at the next start");
            continue;
        }
        if response == Answer::Expired {
            shared.stats.expired.inc();
        }
        answer(&shared, &delivery, response, by);
    }
    queue.close();
    while let Some(delivery) = queue.recv().await {
        if delivery.note.kind.is_question() && delivery.ack.is_none() {
            answer(
                &shared,
                &delivery,
                Answer::Undeliverable,
                AnsweredBy::Herald,
            );
        }
    }
}

/// Records an answer: the `answered` event, the counter, the reply when one was asked for, the
/// receipt, and — for a stream entry — its acknowledgement.
fn answer(shared: &Shared, delivery: &Delivery, response: Answer, by: AnsweredBy) {
    let note = &delivery.note;
    shared.stats.answered.inc();
    shared.presenter.answered(note, response, &by);
    info!(id = %note.id, response = response.as_str(), answered_by = by.as_str(), "answered");
    if let Some(channel) = &note.reply_channel {
        let config = shared.config();
        if config.agent.reply_allow.is_match(channel) {
            let reply = Response::new(&config.agent.hostname, note, response, by);
            shared.replier.send(channel, &reply);
        } else {
            shared.stats.replies_refused.inc();
            warn!(id = %note.id, channel = %channel, allowed = ?config.agent.reply_allow.patterns,
                  "reply channel not in [agent] reply_allow; no reply sent");
        }
    }
    let event = if response == Answer::Expired {
        "expired"
    } else {
        "answered"
    };
    receipt(shared, note, event, Some(response));
    settle(shared, delivery.ack.as_ref(), Some(&note.id));
}
