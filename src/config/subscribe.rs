//! `[[subscribe]]` entries: pub/sub channels and patterns, and Redis Streams with consumer groups.

use std::time::Duration;

use toml::Spanned;

use super::error::Collector;
use super::raw::RawSubscribe;
use super::{Subscription, parse_duration};

/// A stream read through a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamSubscription {
    pub stream: String,
    pub group: Group,
    /// Where a group created by this agent starts reading.
    pub start: StreamStart,
    /// Shared groups: pending entries idle this long are taken over from a consumer that died.
    pub claim_idle: Duration,
}

/// Which consumer group an agent reads in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Group {
    /// `herald:<hostname>`: every agent has its own group, so every agent sees every entry.
    Host(String),
    /// One group shared by several agents: each entry goes to one of them.
    Shared(String),
}

impl Group {
    /// The Redis group name.
    pub fn name(&self) -> &str {
        match self {
            Group::Host(n) | Group::Shared(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamStart {
    /// Only entries added after the group was created (`$`).
    New,
    /// The whole stream (`0`).
    All,
    /// After this entry id.
    Id(String),
}

impl StreamStart {
    /// The id XGROUP CREATE takes.
    pub fn as_redis_id(&self) -> &str {
        match self {
            StreamStart::New => "$",
            StreamStart::All => "0",
            StreamStart::Id(id) => id,
        }
    }
}

pub(super) fn validate(
    raw: Option<Spanned<Vec<Spanned<RawSubscribe>>>>,
    hostname: &str,
    out: &mut Collector<'_>,
) -> (Vec<Subscription>, Vec<StreamSubscription>) {
    let Some(raw) = raw.filter(|r| !r.get_ref().is_empty()) else {
        out.push(
            None,
            "subscribe",
            "no subscriptions: add at least one [[subscribe]] with `channel`, `pattern` or `stream`",
        );
        return (Vec::new(), Vec::new());
    };
    let (mut subs, mut streams) = (Vec::new(), Vec::new());
    for (i, entry) in raw.into_inner().into_iter().enumerate() {
        let key = format!("subscribe[{}]", i + 1);
        let span = entry.span();
        let e = entry.into_inner();
        let stream_only = [
            ("group", &e.group),
            ("start", &e.start),
            ("claim_idle", &e.claim_idle),
        ];
        let named = [e.channel.is_some(), e.pattern.is_some(), e.stream.is_some()];
        if named.iter().filter(|n| **n).count() != 1 {
            out.push(
                Some(span),
                key,
                "needs exactly one of `channel`, `pattern` or `stream`",
            );
            continue;
        }
        if let Some(stream) = e.stream {
            if let Some(s) =
                stream_subscription(stream, e.group, e.start, e.claim_idle, hostname, &key, out)
            {
                if streams
                    .iter()
                    .any(|o: &StreamSubscription| o.stream == s.stream)
                {
                    out.push(Some(span), key, format!("duplicate stream `{}`", s.stream));
                } else {
                    streams.push(s);
                }
            }
            continue;
        }
        if let Some((name, _)) = stream_only.iter().find(|(_, v)| v.is_some()) {
            out.push(
                Some(span),
                format!("{key}.{name}"),
                "only a `stream` subscription takes this key",
            );
            continue;
        }
        let sub = match (e.channel, e.pattern) {
            (Some(c), _) => Subscription::Channel(c.into_inner()),
            (_, Some(p)) => Subscription::Pattern(p.into_inner()),
            _ => unreachable!("exactly one name was checked above"),
        };
        if sub.name().is_empty() {
            out.push(Some(span), key, "channel or pattern must not be empty");
        } else if subs.contains(&sub) {
            out.push(Some(span), key, format!("duplicate subscription {sub}"));
        } else {
            subs.push(sub);
        }
    }
    (subs, streams)
}

fn stream_subscription(
    stream: Spanned<String>,
    group: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    claim_idle: Option<Spanned<String>>,
    hostname: &str,
    key: &str,
    out: &mut Collector<'_>,
) -> Option<StreamSubscription> {
    if stream.get_ref().is_empty() {
        out.push(Some(stream.span()), key, "stream must not be empty");
        return None;
    }
    let group = match group {
        None => Group::Host(format!("herald:{hostname}")),
        Some(g) => match g.get_ref().as_str() {
            "host" => Group::Host(format!("herald:{hostname}")),
            other => match other.strip_prefix("shared:").filter(|n| !n.is_empty()) {
                Some(name) => Group::Shared(name.to_owned()),
                None => {
                    out.push(
                        Some(g.span()),
                        format!("{key}.group"),
                        format!("`{other}` is not \"host\" or \"shared:NAME\""),
                    );
                    return None;
                }
            },
        },
    };
    let start = match start {
        None => StreamStart::New,
        Some(s) => match s.get_ref().as_str() {
            "new" => StreamStart::New,
            "all" => StreamStart::All,
            id if is_entry_id(id) => StreamStart::Id(id.to_owned()),
            other => {
                out.push(Some(s.span()), format!("{key}.start"), format!("`{other}` is not \"new\", \"all\" or an entry id such as \"1700000000000-0\""));
                return None;
            }
        },
    };
    let claim_idle = match claim_idle {
        None => Duration::from_secs(60),
        Some(c) => match parse_duration(c.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                out.push(Some(c.span()), format!("{key}.claim_idle"), e);
                return None;
            }
        },
    };
    Some(StreamSubscription {
        stream: stream.into_inner(),
        group,
        start,
        claim_idle,
    })
}

/// `1700000000000-0` or `1700000000000`.
fn is_entry_id(id: &str) -> bool {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// The channel names, patterns and streams of entries with `require_signature = true`.
pub(super) fn names_requiring_signature(
    raw: Option<&Spanned<Vec<Spanned<RawSubscribe>>>>,
) -> Vec<String> {
    raw.map(|r| r.get_ref().as_slice())
        .unwrap_or_default()
        .iter()
        .map(|e| e.get_ref())
        .filter(|e| e.require_signature == Some(true))
        .filter_map(|e| {
            e.channel
                .as_ref()
                .or(e.pattern.as_ref())
                .or(e.stream.as_ref())
        })
        .map(|n| n.get_ref().clone())
        .collect()
}

/// A matcher for those names; a pattern subscription's glob matches the channels it receives.
pub(super) fn signature_required(names: &[String]) -> globset::GlobSet {
    super::rules::globs(names).unwrap_or_else(|_| globset::GlobSet::empty())
}
