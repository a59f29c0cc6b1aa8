//! Configuration: where the file is, how it is parsed, and the validated [`Config`] the rest of Herald
//! trusts.
//!
//! Loading runs in three passes so that a user sees every mistake at once: TOML syntax (with recovery),
//! then every key's name and type (`check`), then the meaning of the values (`validate`). Each error
//! names file, line and key.

mod check;
pub mod error;
mod raw;
mod rules;
mod subscribe;
mod tls;
pub mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use error::Collector;
pub use error::{ConfigError, ConfigErrors};
use raw::{
    RawAgent, RawConfig, RawFlood, RawPresenter, RawRedis, RawRules, RawSubscribe, RawTrust,
};
pub use rules::{OnError, RulesConfig, globs as globs_for};
pub use subscribe::{Group, StreamStart, StreamSubscription};
pub use tls::TlsConfig;

/// The Redis URL used when neither flag, environment nor config names one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Environment variable that names the Redis URL.
pub const REDIS_URL_ENV: &str = "HERALD_REDIS_URL";

/// `[agent] max_backlog_mb` when unset: at ~150 bytes a notification, some 400,000 messages.
pub const DEFAULT_BACKLOG_MB: usize = 64;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub agent: AgentConfig,
    pub redis: RedisConfig,
    /// Pub/sub channels and patterns.
    pub subscriptions: Vec<Subscription>,
    /// Redis Streams, read through consumer groups.
    pub streams: Vec<StreamSubscription>,
    pub presenter: PresenterConfig,
    pub rules: RulesConfig,
    pub trust: TrustConfig,
    /// Per-publisher flood control; `None` when `[flood]` is absent.
    pub flood: Option<FloodConfig>,
}

/// `[flood]`: a token bucket per publisher (signing key id, or channel when unsigned).
#[derive(Debug, Clone, PartialEq)]
pub struct FloodConfig {
    pub burst: u32,
    pub per_second: f64,
    /// How often "N notifications suppressed from X" is shown.
    pub summary_every: Duration,
}

/// `[trust]` and the per-subscription `require_signature`.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    pub keys: crate::trust::Keyring,
    /// How far a signed notification's `ts` may be from now.
    pub max_skew: Duration,
    /// Whether unsigned questions may open a modal dialog once keys are configured.
    pub allow_unsigned_dialogs: bool,
    /// Channels, patterns and streams whose messages must be signed.
    pub required: globset::GlobSet,
}

impl PartialEq for TrustConfig {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
            && self.max_skew == other.max_skew
            && self.allow_unsigned_dialogs == other.allow_unsigned_dialogs
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Resolved: `"auto"` has become the machine's host name.
    pub hostname: String,
    pub groups: Vec<String>,
    pub max_payload_bytes: usize,
    /// Pub/sub payload bytes held while the agent is behind (`max_backlog_mb`).
    pub max_backlog_bytes: usize,
    /// Time zone for rules' local time; the system's when not set.
    pub timezone: jiff::tz::TimeZone,
    /// Where receipts go for notifications that name no `receipt_channel` of their own.
    pub receipt_channel: Option<String>,
    /// Channels answers may be published to (globs); default `replies:*`.
    pub reply_allow: rules::Globs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// The `[redis] url` key, when set; see [`resolve_redis_url`] for the full order.
    pub url: Option<String>,
    /// Ceiling of the reconnect backoff.
    pub max_backoff: Duration,
    /// How often a live connection is PINGed, so a half-open TCP connection is noticed.
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
    /// Where the password comes from when the URL has none.
    pub password: PasswordSource,
    /// CA, client certificate and `#insecure` permission for `rediss://`.
    pub tls: TlsConfig,
}

/// `[redis] password_env` / `password_command`: keep the password out of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PasswordSource {
    /// The URL's own (or none).
    #[default]
    Url,
    /// An environment variable.
    Env(String),
    /// The first line a command prints, e.g. `secret-tool lookup service redis`.
    Command(String),
}

/// One `[[subscribe]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subscription {
    /// An exact channel name (SUBSCRIBE).
    Channel(String),
    /// A glob pattern (PSUBSCRIBE).
    Pattern(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenterKind {
    /// Desktop where a session bus and a display exist, else console.
    Auto,
    Desktop,
    Console,
    /// Shows nothing and answers nothing; for benchmarks and diagnostics.
    Null,
}

/// How the desktop presenter asks questions (`[presenter] dialogs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogStyle {
    /// A native dialog window, one at a time.
    Modal,
    /// A toast with OK / Cancel buttons (freedesktop actions), for people who hate pop-ups.
    Actions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PresenterConfig {
    pub kind: PresenterKind,
    pub dialogs: DialogStyle,
    /// How long toasts stay; `None` = the notification server's default.
    pub toast_timeout: Option<Duration>,
    /// Icon name or path for toasts and dialogs; `None` = none.
    pub icon: Option<String>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(path, &source)
    }

    /// Validates `source`, which came from `path` (used in messages).
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
        let mut out = Collector::new(path, source);
        let (doc, syntax) = DeTable::parse_recoverable(source);
        for e in &syntax {
            out.push(e.span(), "", e.message().trim());
        }
        if out.has_errors() {
            return Err(out.into_errors());
        }
        let checked = check_sections(&doc, &mut out);
        let root = Spanned::new(doc.span(), DeValue::Table(checked));
        let raw =
            match <RawConfig as serde::Deserialize>::deserialize(ValueDeserializer::from(root)) {
                Ok(raw) => raw,
                Err(e) => {
                    // Cannot happen after the key-by-key check, but a message beats a panic.
                    out.push(e.span(), "", e.message().trim());
                    return Err(out.into_errors());
                }
            };
        let config = validate(path, raw, &mut out);
        out.finish(config)
    }
}

/// Pass two: names and types of every key, section by section. Returns the document without the keys
/// that failed, so pass three still validates the rest.
fn check_sections<'i>(doc: &Spanned<DeTable<'i>>, out: &mut Collector<'_>) -> DeTable<'i> {
    let mut good = DeTable::new();
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().as_ref();
        let checked = match name {
            "agent" => check::table::<RawAgent>(value, name, out),
            "redis" => check::table::<RawRedis>(value, name, out),
            "presenter" => check::table::<RawPresenter>(value, name, out),
            "subscribe" => check::array_of_tables::<RawSubscribe>(value, name, out),
            "rules" => check::table::<RawRules>(value, name, out),
            "trust" => check::table::<RawTrust>(value, name, out),
            "flood" => check::table::<RawFlood>(value, name, out),
            _ => {
                out.push(
                    Some(key.span()),
                    name,
                    "unknown section, expected one of `agent`, `redis`, `subscribe`, `presenter`, `rules`, `trust`, `flood`",
                );
                None
            }
        };
        if let Some(checked) = checked {
            good.insert(key.clone(), checked);
        }
    }
    good
}

/// Pass three: what the values mean.
fn validate(path: &Path, raw: RawConfig, out: &mut Collector<'_>) -> Config {
    let agent = validate_agent(raw.agent.unwrap_or_default(), out);
    let redis = validate_redis(path, raw.redis.unwrap_or_default(), out);
    let raw_required = subscribe::names_requiring_signature(raw.subscribe.as_ref());
    let (subscriptions, streams) = subscribe::validate(raw.subscribe, &agent.hostname, out);
    let presenter = validate_presenter(raw.presenter.unwrap_or_default(), out);
    let rules = rules::validate(path, raw.rules.unwrap_or_default(), out);
    let required = subscribe::signature_required(raw_required.as_slice());
    let trust = validate_trust(raw.trust.unwrap_or_default(), required, out);
    if rules.require_signed_packs && trust.keys.is_empty() {
        out.push(
            None,
            "rules.require_signed_packs",
            "needs at least one key in [trust] keys to check packs against",
        );
    }
    Config {
        path: path.to_owned(),
        agent,
        redis,
        subscriptions,
        streams,
        presenter,
        rules,
        trust,
        flood: raw.flood.map(|f| validate_flood(f, out)),
    }
}

fn validate_flood(raw: RawFlood, out: &mut Collector<'_>) -> FloodConfig {
    let burst = match raw.burst {
        None => 20,
        Some(b) => u32::try_from(*b.get_ref())
            .ok()
            .filter(|b| *b >= 1)
            .unwrap_or_else(|| {
                out.push(
                    Some(b.span()),
                    "flood.burst",
                    "must be a whole number of at least 1",
                );
                20
            }),
    };
    let per_second = match raw.per_second {
        None => 1.0,
        Some(r) if *r.get_ref() > 0.0 && r.get_ref().is_finite() => *r.get_ref(),
        Some(r) => {
            out.push(
                Some(r.span()),
                "flood.per_second",
                "must be a positive number",
            );
            1.0
        }
    };
    let summary_every = match raw.summary_every {
        None => Duration::from_secs(60),
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
            out.push(Some(v.span()), "flood.summary_every", e);
            Duration::from_secs(60)
        }),
    };
    FloodConfig {
        burst,
        per_second,
        summary_every,
    }
}

fn validate_trust(
    raw: RawTrust,
    required: globset::GlobSet,
    out: &mut Collector<'_>,
) -> TrustConfig {
    let keys = match raw.keys {
        None => crate::trust::Keyring::default(),
        Some(k) => {
            let span = k.span();
            let pairs: Vec<(String, String)> = k.into_inner().into_iter().collect();
            crate::trust::Keyring::from_base64(&pairs).unwrap_or_else(|e| {
                out.push(Some(span), "trust.keys", e);
                crate::trust::Keyring::default()
            })
        }
    };
    let max_skew = match raw.max_skew {
        None => Duration::from_secs(300),
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
            out.push(Some(v.span()), "trust.max_skew", e);
            Duration::from_secs(300)
        }),
    };
    if keys.is_empty() && !required.is_empty() {
        out.push(
            None,
            "trust.keys",
            "a subscription has require_signature = true, but [trust] keys lists no key",
        );
    }
    TrustConfig {
        keys,
        max_skew,
        allow_unsigned_dialogs: raw.allow_unsigned_dialogs.unwrap_or(false),
        required,
    }
}

fn validate_agent(raw: RawAgent, out: &mut Collector<'_>) -> AgentConfig {
    let hostname = match raw.hostname {
        Some(h) if h.get_ref().trim().is_empty() => {
            out.push(
                Some(h.span()),
                "agent.hostname",
                "must not be empty; use \"auto\" for the machine's name",
            );
            String::new()
        }
        Some(h) if h.get_ref() != "auto" => h.into_inner(),
        _ => machine_hostname(),
    };
    let max_payload_bytes = match raw.max_payload_bytes {
        None => crate::message::DEFAULT_MAX_PAYLOAD,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(v) if (64..=16 * 1024 * 1024).contains(&v) => v,
            _ => {
                out.push(
                    Some(n.span()),
                    "agent.max_payload_bytes",
                    "must be between 64 and 16777216",
                );
                crate::message::DEFAULT_MAX_PAYLOAD
            }
        },
    };
    let max_backlog_bytes = match raw.max_backlog_mb {
        None => DEFAULT_BACKLOG_MB << 20,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=4096).contains(&v) => v << 20,
            _ => {
                out.push(
                    Some(n.span()),
                    "agent.max_backlog_mb",
                    "must be between 1 and 4096",
                );
                DEFAULT_BACKLOG_MB << 20
            }
        },
    };
    let timezone = match raw.timezone {
        None => jiff::tz::TimeZone::system(),
        Some(name) => jiff::tz::TimeZone::get(name.get_ref()).unwrap_or_else(|e| {
            out.push(
                Some(name.span()),
                "agent.timezone",
                format!("unknown time zone: {e}"),
            );
            jiff::tz::TimeZone::UTC
        }),
    };
    AgentConfig {
        hostname,
        groups: raw.groups.unwrap_or_default(),
        max_payload_bytes,
        max_backlog_bytes,
        timezone,
        receipt_channel: raw.receipt_channel.filter(|c| !c.is_empty()),
        reply_allow: {
            let patterns: Vec<String> = match raw.reply_allow {
                None => vec!["replies:*".to_owned()],
                Some(list) => list.into_iter().map(Spanned::into_inner).collect(),
            };
            rules::Globs::new(patterns).unwrap_or_else(|e| {
                out.push(None, "agent.reply_allow", format!("bad glob: {e}"));
                rules::Globs::new(Vec::new()).expect("no globs")
            })
        },
    }
}

/// The machine's host name, as `[agent] hostname = "auto"` means it.
pub fn machine_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn validate_redis(path: &Path, raw: RawRedis, out: &mut Collector<'_>) -> RedisConfig {
    let tls = tls::validate(path, &raw, out);
    if let Some(url) = &raw.url
        && let Err(e) = check_redis_url(url.get_ref(), &tls)
    {
        out.push(Some(url.span()), "redis.url", e);
    }
    let mut duration = |v: Option<Spanned<String>>, key: &str, default: u64| match v {
        None => Duration::from_secs(default),
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
            out.push(Some(v.span()), format!("redis.{key}"), e);
            Duration::from_secs(default)
        }),
    };
    RedisConfig {
        max_backoff: duration(raw.max_backoff, "max_backoff", 30),
        ping_interval: duration(raw.ping_interval, "ping_interval", 10),
        connect_timeout: duration(raw.connect_timeout, "connect_timeout", 5),
        url: raw.url.map(Spanned::into_inner),
        tls,
        password: match (raw.password_env, raw.password_command) {
            (Some(_), Some(_)) => {
                out.push(
                    None,
                    "redis.password_command",
                    "set either `password_env` or `password_command`, not both",
                );
                PasswordSource::Url
            }
            (Some(var), None) => PasswordSource::Env(var),
            (None, Some(cmd)) => PasswordSource::Command(cmd),
            (None, None) => PasswordSource::Url,
        },
    }
}

fn validate_presenter(raw: RawPresenter, out: &mut Collector<'_>) -> PresenterConfig {
    let kind = match raw.kind {
        None => PresenterKind::Auto,
        Some(k) => match k.get_ref().as_str() {
            "auto" => PresenterKind::Auto,
            "desktop" => PresenterKind::Desktop,
            "console" => PresenterKind::Console,
            "null" => PresenterKind::Null,
            other => {
                out.push(
                    Some(k.span()),
                    "presenter.kind",
                    format!(
                        "unknown presenter `{other}`, expected `auto`, `desktop`, `console` or `null`"
                    ),
                );
                PresenterKind::Auto
            }
        },
    };
    let dialogs = match raw.dialogs {
        None => DialogStyle::Modal,
        Some(d) => match d.get_ref().as_str() {
            "modal" => DialogStyle::Modal,
            "actions" => DialogStyle::Actions,
            other => {
                out.push(
                    Some(d.span()),
                    "presenter.dialogs",
                    format!("`{other}` is not `modal` or `actions`"),
                );
                DialogStyle::Modal
            }
        },
    };
    let toast_timeout = raw.toast_timeout.and_then(|t| {
        parse_duration(t.get_ref())
            .map_err(|e| out.push(Some(t.span()), "presenter.toast_timeout", e))
            .ok()
    });
    PresenterConfig {
        kind,
        dialogs,
        toast_timeout,
        icon: raw.icon.filter(|i| !i.is_empty()),
    }
}

impl Subscription {
    pub fn name(&self) -> &str {
        match self {
            Subscription::Channel(n) | Subscription::Pattern(n) => n,
        }
    }
}

impl std::fmt::Display for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subscription::Channel(c) => write!(f, "channel `{c}`"),
            Subscription::Pattern(p) => write!(f, "pattern `{p}`"),
        }
    }
}

/// Parses a duration such as `"30s"`, `"500ms"` or `"2m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration such as \"30s\" or \"500ms\": {e}"))?;
    Duration::try_from(signed).map_err(|_| format!("`{text}` must not be negative"))
}

/// Checks that `url` is a Redis URL the client can use, and that it turns certificate checks off
/// (`rediss://…#insecure`) only where the config says so explicitly. The URL is judged as the client
/// will read it (scheme case, `valkeys://`, stray whitespace), never by its text.
pub fn check_redis_url(url: &str, tls: &TlsConfig) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| {
        format!(
            "`{}` is not a usable Redis URL: {e}",
            crate::connect::redacted(url)
        )
    })?;
    let insecure = matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { insecure: true, .. }
    );
    if insecure && !tls.insecure {
        return Err(format!(
            "`{}` turns off TLS certificate checks; set `[redis] tls_insecure = true` to allow that",
            crate::connect::redacted(url)
        ));
    }
    Ok(())
}

/// The Redis URL every command uses: `--url` > `HERALD_REDIS_URL` > `[redis] url` > the default.
pub fn resolve_redis_url(flag: Option<&str>, config: Option<&Config>) -> String {
    let env = std::env::var(REDIS_URL_ENV).ok().filter(|v| !v.is_empty());
    flag.map(str::to_owned)
        .or(env)
        .or_else(|| config.and_then(|c| c.redis.url.clone()))
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// For the CLI's one-shot commands: the Redis URL to use (see [`resolve_redis_url`]) with the
/// config's password, checked, and the config's TLS settings in force for the clients it opens.
pub fn redis_target(flag: Option<&str>, config: Option<&Config>) -> Result<String, String> {
    let url = resolve_redis_url(flag, config);
    let (url, tls) = match config {
        Some(c) => (with_password(&url, &c.redis.password)?, c.redis.tls.clone()),
        None => (url, TlsConfig::default()),
    };
    check_redis_url(&url, &tls)?;
    crate::connect::set_tls(&tls);
    Ok(url)
}

/// Adds the password from `source` to `url` when the URL carries none.
pub fn with_password(url: &str, source: &PasswordSource) -> Result<String, String> {
    let password = match source {
        PasswordSource::Url => return Ok(url.to_owned()),
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| format!("[redis] password_env: ${var} is not set"))?
        }
        PasswordSource::Command(cmd) => {
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("[redis] password_command: cannot run `{cmd}`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "[redis] password_command `{cmd}` failed ({})",
                    out.status
                ));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let shown = crate::connect::redacted(url);
    let mut parsed = url::Url::parse(url).map_err(|e| format!("`{shown}`: {e}"))?;
    if parsed.password().is_some() {
        return Ok(url.to_owned());
    }
    parsed
        .set_password(Some(&password))
        .map_err(|()| format!("`{shown}` cannot carry a password"))?;
    Ok(parsed.to_string())
}

/// Where `herald` looks for its config when `--config` is not given.
pub fn default_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("herald")
        .join("herald.toml")
}

#[cfg(test)]
mod tests;
