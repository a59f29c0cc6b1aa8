//! The `[rules]` section: which packs to load and the limits every rule runs under.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use toml::Spanned;

use super::error::Collector;
use super::raw::RawRules;

/// What happens to a message when a rule fails or runs out of budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Skip the failing rule; the message goes on as it was before that rule.
    Pass,
    /// Drop the message.
    Drop,
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Pack folders, in the order given; `~` expanded, relative paths taken from the config's folder.
    pub packs: Vec<PathBuf>,
    pub on_error: OnError,
    /// CPU time for all rules together, per message (and per tick).
    pub budget: Duration,
    /// Memory limit of the rules' Lua VM, in bytes.
    pub memory_limit: usize,
    /// How often `on_tick` runs.
    pub tick: Duration,
    /// Channels `ctx.publish` may publish to (globs), as written and compiled.
    pub publish_allow: Vec<String>,
    pub publish_allow_set: GlobSet,
    /// Refuse packs without a valid `herald pack sign` signature by a `[trust]` key.
    pub require_signed_packs: bool,
}

impl PartialEq for RulesConfig {
    fn eq(&self, other: &Self) -> bool {
        self.packs == other.packs
            && self.on_error == other.on_error
            && self.budget == other.budget
            && self.memory_limit == other.memory_limit
            && self.tick == other.tick
            && self.publish_allow == other.publish_allow
            && self.require_signed_packs == other.require_signed_packs
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        let publish_allow = vec!["herald:*".to_owned()];
        RulesConfig {
            packs: Vec::new(),
            on_error: OnError::Pass,
            budget: Duration::from_millis(50),
            memory_limit: 32 << 20,
            tick: Duration::from_secs(60),
            publish_allow_set: globs(&publish_allow).expect("valid default"),
            publish_allow,
            require_signed_packs: false,
        }
    }
}

pub(super) fn validate(config: &Path, raw: RawRules, out: &mut Collector<'_>) -> RulesConfig {
    let mut rules = RulesConfig::default();
    let base = config.parent().unwrap_or(Path::new("."));
    rules.packs = raw
        .packs
        .unwrap_or_default()
        .into_iter()
        .map(|p| expand(base, p.get_ref()))
        .collect();
    rules.require_signed_packs = raw.require_signed_packs.unwrap_or(false);
    if let Some(v) = raw.on_error {
        match v.get_ref().as_str() {
            "pass" => rules.on_error = OnError::Pass,
            "drop" => rules.on_error = OnError::Drop,
            other => out.push(
                Some(v.span()),
                "rules.on_error",
                format!("`{other}` is not `pass` or `drop`"),
            ),
        }
    }
    let mut bounded = |v: Option<Spanned<i64>>, key: &str, range: std::ops::RangeInclusive<i64>| {
        let v = v?;
        if range.contains(v.get_ref()) {
            Some(*v.get_ref() as u64)
        } else {
            out.push(
                Some(v.span()),
                format!("rules.{key}"),
                format!("must be between {} and {}", range.start(), range.end()),
            );
            None
        }
    };
    if let Some(ms) = bounded(raw.budget_ms, "budget_ms", 1..=10_000) {
        rules.budget = Duration::from_millis(ms);
    }
    if let Some(mb) = bounded(raw.memory_mb, "memory_mb", 1..=4096) {
        rules.memory_limit = (mb as usize) << 20;
    }
    if let Some(s) = bounded(raw.tick_s, "tick_s", 1..=86_400) {
        rules.tick = Duration::from_secs(s);
    }
    if let Some(allow) = raw.publish_allow {
        let mut ok = Vec::new();
        for g in allow {
            match Glob::new(g.get_ref()) {
                Ok(_) => ok.push(g.into_inner()),
                Err(e) => out.push(
                    Some(g.span()),
                    "rules.publish_allow",
                    format!("bad glob: {e}"),
                ),
            }
        }
        rules.publish_allow_set = globs(&ok).unwrap_or_else(|_| GlobSet::empty());
        rules.publish_allow = ok;
    }
    rules
}

/// Compiles channel globs (Redis-style `*`, `?`, `[...]`; `/` is not special).
pub fn globs(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p)?);
    }
    b.build()
}

pub(super) fn expand(base: &Path, path: &str) -> PathBuf {
    let path = match path.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().unwrap_or_default().join(rest),
        None => PathBuf::from(path),
    };
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Compiled globs that compare equal when written the same (for config diffs).
#[derive(Debug, Clone)]
pub struct Globs {
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    pub fn new(patterns: Vec<String>) -> Result<Globs, globset::Error> {
        Ok(Globs {
            set: globs(&patterns)?,
            patterns,
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

impl PartialEq for Globs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}
