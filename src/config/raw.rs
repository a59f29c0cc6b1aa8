//! The config file exactly as TOML says it: serde types with `deny_unknown_fields`, every field optional
//! and spanned where validation may need to point at it. Nothing here is checked beyond its TOML type;
//! `super::validate` turns these into a [`super::Config`].

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub agent: Option<RawAgent>,
    pub redis: Option<RawRedis>,
    pub subscribe: Option<Spanned<Vec<Spanned<RawSubscribe>>>>,
    pub presenter: Option<RawPresenter>,
    pub rules: Option<RawRules>,
    pub trust: Option<RawTrust>,
    pub flood: Option<RawFlood>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub hostname: Option<Spanned<String>>,
    pub groups: Option<Vec<String>>,
    pub max_payload_bytes: Option<Spanned<i64>>,
    pub max_backlog_mb: Option<Spanned<i64>>,
    pub timezone: Option<Spanned<String>>,
    pub receipt_channel: Option<String>,
    pub reply_allow: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub ping_interval: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub password_env: Option<String>,
    pub password_command: Option<String>,
    pub tls_ca_file: Option<Spanned<String>>,
    pub tls_cert_file: Option<Spanned<String>>,
    pub tls_key_file: Option<Spanned<String>>,
    pub tls_insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscribe {
    pub channel: Option<Spanned<String>>,
    pub pattern: Option<Spanned<String>>,
    pub stream: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
    pub claim_idle: Option<Spanned<String>>,
    pub require_signature: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresenter {
    pub kind: Option<Spanned<String>>,
    pub dialogs: Option<Spanned<String>>,
    pub toast_timeout: Option<Spanned<String>>,
    pub icon: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub packs: Option<Vec<Spanned<String>>>,
    pub on_error: Option<Spanned<String>>,
    pub budget_ms: Option<Spanned<i64>>,
    pub memory_mb: Option<Spanned<i64>>,
    pub tick_s: Option<Spanned<i64>>,
    pub publish_allow: Option<Vec<Spanned<String>>>,
    pub require_signed_packs: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    pub keys: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    pub max_skew: Option<Spanned<String>>,
    pub allow_unsigned_dialogs: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlood {
    pub burst: Option<Spanned<i64>>,
    pub per_second: Option<Spanned<f64>>,
    pub summary_every: Option<Spanned<String>>,
}
