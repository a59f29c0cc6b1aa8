//! The wire protocol: what publishers send (`Notification`) and what Herald answers (`Response`).
//!
//! Decoding is the trust boundary. A payload is checked for size and UTF-8 *before* JSON parsing, so a
//! hostile or broken publisher costs at most one bounded read; every failure becomes a [`DecodeError`]
//! that says why, and the caller logs and counts it. The types keep the Go agent's field names and values
//! (`type` = `Simple` | `OK` | `OKCancel`, responses `OK` | `Cancel` | `Dismissed`) so both agents can
//! share channels.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default cap on one payload, checked before parsing (DESIGN.md §2).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Field names a publisher may not set: Herald fills them in itself, and rules trust them.
pub const RESERVED_FIELDS: [&str; 3] = ["channel", "route", "signed_by"];

/// How a notification wants to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Kind {
    /// Shown, never answered.
    #[default]
    Simple,
    /// A question with one button.
    #[serde(rename = "OK")]
    Ok,
    /// A question with two buttons.
    #[serde(rename = "OKCancel")]
    OkCancel,
}

impl Kind {
    /// Whether the user is asked for an answer.
    pub fn is_question(self) -> bool {
        !matches!(self, Kind::Simple)
    }

    /// Whether `answer` is a button this kind of notification has (`Dismissed` always is: a window can
    /// always be closed).
    pub fn offers(self, answer: Answer) -> bool {
        match answer {
            Answer::Ok => self.is_question(),
            Answer::Cancel => self == Kind::OkCancel,
            Answer::Dismissed => true,
            Answer::Expired | Answer::Undeliverable => false,
        }
    }

    /// The protocol spelling (`Simple`, `OK`, `OKCancel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Simple => "Simple",
            Kind::Ok => "OK",
            Kind::OkCancel => "OKCancel",
        }
    }
}

/// Urgency, used by presenters and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// Parses a protocol spelling (`"OKCancel"`, `"high"`, `"Dismissed"`) through the type's serde names, so
/// there is exactly one place that spells each value.
fn parse_protocol<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s)).ok()
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_protocol(s).ok_or_else(|| format!("`{s}` is not a type: use Simple, OK or OKCancel"))
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_protocol(s)
            .ok_or_else(|| format!("`{s}` is not a priority: use low, normal, high or critical"))
    }
}

impl std::str::FromStr for Answer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_protocol(s).ok_or_else(|| {
            format!("`{s}` is not a response: use OK, Cancel, Dismissed, Expired or Undeliverable")
        })
    }
}

/// A decoded, well-formed notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The publisher's id, or one Herald made up (a fresh UUID for pub/sub; never a payload hash, so two
    /// identical hourly alerts stay two notifications).
    pub id: String,
    pub title: String,
    pub message: String,
    pub kind: Kind,
    pub reply_channel: Option<String>,
    pub priority: Priority,
    pub expires_at: Option<Timestamp>,
    /// Every other field the publisher sent, kept for rules (reserved names removed).
    pub extra: Map<String, Value>,
    /// The key id that signed it, when it came in a verified envelope; never from the payload.
    pub signed_by: Option<String>,
}

impl Notification {
    /// Whether the notification has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The JSON shape on the wire, for publishers; agents decode with [`decode`], which names the field
/// at fault in every error.
#[derive(Debug, Serialize)]
pub struct WireNotification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub title: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_channel: Option<String>,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a payload was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("payload is not JSON: {0}")]
    Json(String),
    #[error("payload is JSON {0}, not an object")]
    NotAnObject(&'static str),
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

/// Checks size and encoding, then parses one notification. `fresh_id` supplies the id when the publisher
/// sent none.
pub fn decode(
    payload: &[u8],
    limit: usize,
    fresh_id: impl FnOnce() -> String,
) -> Result<Notification, DecodeError> {
    if payload.len() > limit {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8(e.valid_up_to()))?;
    let mut fields =
        match serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))? {
            Value::Object(map) => map,
            other => return Err(DecodeError::NotAnObject(json_kind(&other))),
        };
    let id = match take::<String>(&mut fields, "id")? {
        Some(id) if id.is_empty() => {
            return Err(DecodeError::Field {
                field: "id",
                reason: "must not be empty".into(),
            });
        }
        Some(id) => id,
        None => fresh_id(),
    };
    let mut note = Notification {
        id,
        title: take(&mut fields, "title")?.ok_or(DecodeError::Missing("title"))?,
        message: take(&mut fields, "message")?.ok_or(DecodeError::Missing("message"))?,
        kind: take(&mut fields, "type")?.unwrap_or_default(),
        reply_channel: take::<String>(&mut fields, "reply_channel")?.filter(|c| !c.is_empty()),
        priority: take(&mut fields, "priority")?.unwrap_or_default(),
        expires_at: take(&mut fields, "expires_at")?,
        extra: fields,
        signed_by: None,
    };
    for reserved in RESERVED_FIELDS {
        note.extra.remove(reserved);
    }
    Ok(note)
}

/// Removes `field` and converts it; `null` counts as absent.
fn take<T: serde::de::DeserializeOwned>(
    fields: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<T>, DecodeError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| DecodeError::Field {
                field,
                reason: e.to_string(),
            }),
    }
}

/// "a number", "an array": for messages about JSON values.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A fresh notification id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An answer, as the `response` field spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Answer {
    #[serde(rename = "OK")]
    Ok,
    Cancel,
    Dismissed,
    /// The notification's `expires_at` passed before anyone answered.
    Expired,
    /// Nobody could be asked: no display, no dialog helper, stdin closed.
    Undeliverable,
}

impl Answer {
    pub const ALL: [Answer; 5] = [
        Answer::Ok,
        Answer::Cancel,
        Answer::Dismissed,
        Answer::Expired,
        Answer::Undeliverable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Ok => "OK",
            Answer::Cancel => "Cancel",
            Answer::Dismissed => "Dismissed",
            Answer::Expired => "Expired",
            Answer::Undeliverable => "Undeliverable",
        }
    }
}

/// Who gave an answer (`answered_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnsweredBy {
    /// A person pressed a button or typed an answer.
    User,
    /// A rule answered on the user's behalf; holds the rule's name.
    Rule(String),
    /// Herald itself (`Expired`, `Undeliverable`, shutdown).
    Herald,
}

impl AnsweredBy {
    pub fn as_str(&self) -> &str {
        match self {
            AnsweredBy::User => "user",
            AnsweredBy::Rule(name) => name,
            AnsweredBy::Herald => "herald",
        }
    }
}

impl Serialize for AnsweredBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What goes back on `reply_channel`.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub hostname: String,
    pub response: Answer,
    pub original_title: String,
    /// RFC 3339, whole seconds (as the Go agent writes it).
    pub timestamp: Timestamp,
    pub id: String,
    pub answered_by: AnsweredBy,
}

impl Response {
    pub fn new(hostname: &str, note: &Notification, answer: Answer, by: AnsweredBy) -> Self {
        Response {
            hostname: hostname.to_owned(),
            response: answer,
            original_title: note.title.clone(),
            timestamp: now_seconds(),
            id: note.id.clone(),
            answered_by: by,
        }
    }
}

/// The current time cut to whole seconds, the precision of the Go agent's RFC 3339 timestamps.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// A reply as a publisher reads it: lenient, so replies from the Go agent (no `id`, no `answered_by`)
/// parse too.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedResponse {
    #[serde(default)]
    pub hostname: String,
    pub response: Answer,
    #[serde(default)]
    pub id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Notification, DecodeError> {
        decode(s.as_bytes(), DEFAULT_MAX_PAYLOAD, || "generated".into())
    }

    #[test]
    fn decodes_the_go_agents_example() {
        let n = dec(r#"{"title":"Deploy","message":"Proceed?","type":"OKCancel","reply_channel":"replies:ops"}"#)
            .unwrap();
        assert_eq!(n.kind, Kind::OkCancel);
        assert_eq!(n.reply_channel.as_deref(), Some("replies:ops"));
        assert_eq!(n.priority, Priority::Normal);
        assert_eq!(n.id, "generated");
    }

    #[test]
    fn keeps_unknown_fields_and_drops_reserved_ones() {
        let n = dec(r#"{"title":"t","message":"m","team":"db","route":"silent","channel":"x","signed_by":"ops"}"#)
            .unwrap();
        assert_eq!(n.extra.len(), 1);
        assert_eq!(n.extra["team"], "db");
    }

    #[test]
    fn rejects_bad_payloads_with_a_reason() {
        assert!(matches!(dec("{"), Err(DecodeError::Json(_))));
        assert_eq!(dec("[1]"), Err(DecodeError::NotAnObject("an array")));
        assert_eq!(
            dec(r#"{"message":"m"}"#),
            Err(DecodeError::Missing("title"))
        );
        assert_eq!(
            dec(r#"{"title":null,"message":"m"}"#),
            Err(DecodeError::Missing("title"))
        );
        let mistyped = dec(r#"{"title":"t","message":"m","type":5}"#)
            .unwrap_err()
            .to_string();
        assert!(
            mistyped.starts_with("field `type`: invalid type: integer `5`"),
            "{mistyped}"
        );
        let bad_type = dec(r#"{"title":"t","message":"m","type":"Maybe"}"#)
            .unwrap_err()
            .to_string();
        assert!(bad_type.contains("unknown variant `Maybe`"), "{bad_type}");
        let empty_id = dec(r#"{"id":"","title":"t","message":"m"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(empty_id, "field `id`: must not be empty");
        assert_eq!(
            decode(b"{\"title\":\"\xff\"}", 100, String::new),
            Err(DecodeError::NotUtf8(10))
        );
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let big = vec![b'x'; DEFAULT_MAX_PAYLOAD + 1];
        assert_eq!(
            decode(&big, DEFAULT_MAX_PAYLOAD, String::new),
            Err(DecodeError::TooLarge {
                size: DEFAULT_MAX_PAYLOAD + 1,
                limit: DEFAULT_MAX_PAYLOAD
            })
        );
    }

    #[test]
    fn expiry_is_rfc3339() {
        let n =
            dec(r#"{"title":"t","message":"m","expires_at":"2026-01-01T00:00:00+01:00"}"#).unwrap();
        assert!(n.is_expired(Timestamp::now()));
        assert!(dec(r#"{"title":"t","message":"m","expires_at":"tomorrow"}"#).is_err());
    }

    #[test]
    fn response_json_has_the_protocol_fields_in_order() {
        let n = dec(r#"{"id":"42","title":"Deploy","message":"m","type":"OK"}"#).unwrap();
        let mut r = Response::new("ws1", &n, Answer::Ok, AnsweredBy::User);
        r.timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"hostname":"ws1","response":"OK","original_title":"Deploy","timestamp":"2026-12-04T10:00:00Z","id":"42","answered_by":"user"}"#
        );
    }

    #[test]
    fn buttons_follow_the_type() {
        assert!(Kind::Ok.offers(Answer::Ok));
        assert!(!Kind::Ok.offers(Answer::Cancel));
        assert!(Kind::OkCancel.offers(Answer::Cancel));
        assert!(!Kind::Simple.offers(Answer::Ok));
        assert!(Kind::Simple.offers(Answer::Dismissed));
    }
}
