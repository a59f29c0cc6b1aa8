//! A notification as rules see it: one Lua table per message, made once and handed from rule to rule,
//! and read back into a [`Notification`] when the rules are done.
//!
//! `id`, `channel` and `signed_by` are read-only: a rule may change anything else, and what it writes is checked as
//! strictly as a publisher's payload (a rule cannot produce a notification a publisher could not send).

use mlua::{Lua, LuaSerdeExt, Table, Value};

use crate::message::{Kind, Notification, Priority};

/// Where a rule wants a message shown (`msg.route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Toast,
    Dialog,
    Console,
    /// Shown nowhere; a question gets no answer from the user.
    Silent,
}

impl Route {
    pub fn parse(s: &str) -> Option<Route> {
        Some(match s {
            "toast" => Route::Toast,
            "dialog" => Route::Dialog,
            "console" => Route::Console,
            "silent" => Route::Silent,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Toast => "toast",
            Route::Dialog => "dialog",
            Route::Console => "console",
            Route::Silent => "silent",
        }
    }
}

/// Options that keep JSON `null` out of Lua (it would become a light userdata, not `nil`).
pub fn ser_options() -> mlua::serde::SerializeOptions {
    mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
}

/// Builds `msg`: every protocol field, the extra fields, and `channel`.
pub fn to_table(lua: &Lua, channel: &str, note: &Notification) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 9 + note.extra.len())?;
    for (key, value) in &note.extra {
        t.raw_set(key.as_str(), lua.to_value_with(value, ser_options())?)?;
    }
    t.raw_set("id", note.id.as_str())?;
    t.raw_set("title", note.title.as_str())?;
    t.raw_set("message", note.message.as_str())?;
    t.raw_set("type", note.kind.as_str())?;
    t.raw_set("priority", note.priority.as_str())?;
    t.raw_set("channel", channel)?;
    if let Some(r) = &note.reply_channel {
        t.raw_set("reply_channel", r.as_str())?;
    }
    if let Some(at) = note.expires_at {
        t.raw_set("expires_at", at.to_string())?;
    }
    if let Some(kid) = &note.signed_by {
        t.raw_set("signed_by", kid.as_str())?;
    }
    Ok(t)
}

/// Reads `msg` back. `original` supplies the read-only fields.
pub fn from_table(
    lua: &Lua,
    t: &Table,
    original: &Notification,
) -> Result<(Notification, Option<Route>), String> {
    let mut note = Notification {
        id: original.id.clone(),
        title: string(t, "title")?.ok_or("msg.title must be a string")?,
        message: string(t, "message")?.ok_or("msg.message must be a string")?,
        kind: match string(t, "type")? {
            None => Kind::Simple,
            Some(s) => s.parse().map_err(|e| format!("msg.type: {e}"))?,
        },
        priority: match string(t, "priority")? {
            None => Priority::Normal,
            Some(s) => s.parse().map_err(|e| format!("msg.priority: {e}"))?,
        },
        reply_channel: string(t, "reply_channel")?.filter(|c| !c.is_empty()),
        expires_at: match string(t, "expires_at")? {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|e| format!("msg.expires_at `{s}` is not RFC 3339: {e}"))?,
            ),
        },
        extra: serde_json::Map::new(),
        signed_by: original.signed_by.clone(),
    };
    let route = match string(t, "route")? {
        None => None,
        Some(s) => Some(Route::parse(&s).ok_or(format!(
            "msg.route `{s}` is not toast, dialog, console or silent"
        ))?),
    };
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let Value::String(k) = k else { continue };
        let k = k.to_string_lossy();
        if is_known(&k) {
            continue;
        }
        let v: serde_json::Value = lua
            .from_value(v)
            .map_err(|e| format!("msg.{k} cannot be turned into JSON: {e}"))?;
        note.extra.insert(k, v);
    }
    Ok((note, route))
}

fn is_known(key: &str) -> bool {
    matches!(
        key,
        "id" | "title"
            | "message"
            | "type"
            | "priority"
            | "reply_channel"
            | "expires_at"
            | "channel"
            | "route"
            | "signed_by"
    )
}

fn string(t: &Table, key: &str) -> Result<Option<String>, String> {
    match t.raw_get::<Value>(key).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        other => Err(format!(
            "msg.{key} must be a string, not {}",
            other.type_name()
        )),
    }
}
