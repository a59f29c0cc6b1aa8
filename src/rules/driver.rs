//! The per-message hot path between Rust and the rules, as few calls across the FFI as possible.
//!
//! Building `msg` field by field, calling each rule and reading every field back from Rust cost about
//! forty protected calls into the VM per message. `driver.luau` does that work inside the VM instead,
//! so a message costs three calls: `make` (build `msg`), `run` (every rule that applies, in order) and
//! `read` (the fields Herald needs back). Rule failures still surface in Rust, with the rule's index.

use std::cell::RefCell;
use std::collections::HashMap;

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};

use super::convert::{Route, ser_options};
use crate::message::{Kind, Notification, Priority};

/// What `read` returns: the key and type of a field that is not a string (or nil, nil), whether
/// there are extra fields, then title, message, type, priority, reply_channel, expires_at, route.
type ReadFields = (
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What `run` ended with.
pub enum Outcome {
    /// Every rule in the range passed the message on; this is the table the last one returned.
    Done(Table),
    /// Rule `i` (1-based) returned nil or false.
    Drop(usize),
    /// Rule `i` called `ctx.answer`.
    Answer(usize),
    /// Rule `i` returned something other than a plain table, nil or false (what it was).
    Bad(usize, String),
    /// Rule `i` raised an error (or ran out of time or memory); `between` when time ran out after
    /// rule `i` had returned, before the next one started. `i` is 0 when time ran out before any
    /// rule of this call started.
    Failed {
        i: usize,
        between: bool,
        error: mlua::Error,
    },
}

/// The cursor's keys (see `driver.luau`).
const I: usize = 1;
const MSG: usize = 2;
const BEFORE: usize = 3;
const ANSWERED: usize = 4;
const LAST: usize = 5;

/// The compiled driver of one VM, and the cursor it shares with the `herald`/`ctx` functions.
pub struct Driver {
    pub cursor: Table,
    make: Function,
    run: Function,
    read: Function,
    /// Lua strings for the protocol's fixed words (`Simple`, `high`, …): pushing an existing string
    /// is a copy of a reference, creating one is a protected call into the VM.
    words: RefCell<HashMap<&'static str, mlua::LuaString>>,
}

impl Driver {
    /// Compiles `driver.luau` in `lua`, with `cursor` as its shared table.
    pub fn new(lua: &Lua, cursor: Table) -> mlua::Result<Driver> {
        let (make, run, read) = lua
            .load(include_str!("driver.luau"))
            .set_name("=herald driver")
            .call::<(Function, Function, Function)>(cursor.clone())?;
        Ok(Driver {
            cursor,
            make,
            run,
            read,
            words: RefCell::default(),
        })
    }

    /// The 1-based index of the rule that is running, or 0.
    pub fn running(cursor: &Table) -> usize {
        cursor
            .raw_get::<Option<usize>>(I)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Marks rule `i` (1-based; 0 for none) as running, for `on_tick`.
    pub fn set_running(&self, i: usize) {
        let _ = self.cursor.raw_set(I, i);
    }

    /// Tells the driver that the running rule answered its message.
    pub fn set_answered(cursor: &Table) -> mlua::Result<()> {
        cursor.raw_set(ANSWERED, true)
    }

    /// The Lua string for a fixed protocol word, created once.
    fn word(&self, lua: &Lua, word: &'static str) -> mlua::Result<mlua::LuaString> {
        if let Some(s) = self.words.borrow().get(word) {
            return Ok(s.clone());
        }
        let s = lua.create_string(word)?;
        self.words.borrow_mut().insert(word, s.clone());
        Ok(s)
    }

    /// Builds `msg`: every protocol field, the extra fields, and `channel` (made once per channel
    /// by the caller).
    pub fn make(
        &self,
        lua: &Lua,
        channel: &mlua::LuaString,
        note: &Notification,
    ) -> mlua::Result<Table> {
        let msg: Table = self.make.call((
            note.id.as_str(),
            note.title.as_str(),
            note.message.as_str(),
            self.word(lua, note.kind.as_str())?,
            self.word(lua, note.priority.as_str())?,
            channel,
            note.reply_channel.as_deref(),
            note.expires_at.map(|at| at.to_string()),
            note.signed_by.as_deref(),
        ))?;
        for (key, value) in &note.extra {
            if !is_known(key) {
                msg.raw_set(key.as_str(), lua.to_value_with(value, ser_options())?)?;
            }
        }
        Ok(msg)
    }

    /// Runs rules `from..=to` of `list` on `msg`.
    pub fn run(&self, msg: Table, list: &Table, from: usize, to: usize, snapshot: bool) -> Outcome {
        match self
            .run
            .call::<(u8, usize, Value)>((msg, list, from, to, snapshot))
        {
            Ok((0, _, Value::Table(done))) => Outcome::Done(done),
            Ok((1, i, _)) => Outcome::Drop(i),
            Ok((2, i, _)) => Outcome::Answer(i),
            Ok((_, i, kind)) => Outcome::Bad(i, kind.to_string().unwrap_or_default()),
            Err(error) => {
                let running = Driver::running(&self.cursor);
                self.set_running(0);
                let last = self.cursor.raw_get::<Option<usize>>(LAST).ok().flatten();
                Outcome::Failed {
                    i: if running > 0 {
                        running
                    } else {
                        last.unwrap_or(0)
                    },
                    between: running == 0,
                    error,
                }
            }
        }
    }

    /// The message to go on with after a failure: between rules, the latest good one; after a
    /// failed rule, what it was given, as it was before that rule ran where a snapshot was taken.
    pub fn restore(&self, between: bool) -> Option<Table> {
        let latest = || self.cursor.raw_get::<Option<Table>>(MSG).ok().flatten();
        if between {
            return latest();
        }
        self.before().or_else(latest)
    }

    /// The snapshot taken before the last rule ran (tracing).
    pub fn before(&self) -> Option<Table> {
        self.cursor.raw_get::<Option<Table>>(BEFORE).ok().flatten()
    }

    /// Reads `msg` back into a notification. `original` supplies the read-only fields. What a rule
    /// wrote is checked as strictly as a publisher's payload.
    pub fn read(
        &self,
        lua: &Lua,
        msg: &Table,
        original: &Notification,
    ) -> Result<(Notification, Option<Route>), String> {
        // Straight to Rust strings when they are UTF-8 (the usual case); a rule that cut a
        // character in half (`title:sub(1, 40)`) gets a replacement character, not an error.
        let fields = match self.read.call::<ReadFields>(msg) {
            Ok(fields) => fields,
            Err(_) => self.read_lossy(msg)?,
        };
        let (bad_key, bad_type, extra, title, message, kind, priority, reply, expires, route) =
            fields;
        if let Some(key) = bad_key {
            return Err(format!(
                "msg.{key} must be a string, not {}",
                bad_type.unwrap_or_default()
            ));
        }
        let mut note = Notification {
            id: original.id.clone(),
            title: title.ok_or("msg.title must be a string")?,
            message: message.ok_or("msg.message must be a string")?,
            kind: match kind {
                None => Kind::Simple,
                Some(s) => s.parse().map_err(|e| format!("msg.type: {e}"))?,
            },
            priority: match priority {
                None => Priority::Normal,
                Some(s) => s.parse().map_err(|e| format!("msg.priority: {e}"))?,
            },
            reply_channel: reply.filter(|c| !c.is_empty()),
            expires_at: match expires {
                None => None,
                Some(s) => Some(
                    s.parse()
                        .map_err(|e| format!("msg.expires_at `{s}` is not RFC 3339: {e}"))?,
                ),
            },
            extra: serde_json::Map::new(),
            signed_by: original.signed_by.clone(),
        };
        let route = match route {
            None => None,
            Some(s) => Some(Route::parse(&s).ok_or(format!(
                "msg.route `{s}` is not toast, dialog, console or silent"
            ))?),
        };
        if extra {
            read_extra(lua, msg, &mut note)?;
        }
        Ok((note, route))
    }
}

impl Driver {
    /// `read`'s fields through Lua strings, converting invalid UTF-8 lossily.
    fn read_lossy(&self, msg: &Table) -> Result<ReadFields, String> {
        type Raw = Option<mlua::LuaString>;
        let (a, b, extra, c, d, e, f, g, h, i) = self
            .read
            .call::<(Raw, Raw, bool, Raw, Raw, Raw, Raw, Raw, Raw, Raw)>(msg)
            .map_err(|e| e.to_string())?;
        let lossy = |s: Raw| s.map(|s| s.to_string_lossy());
        Ok((
            lossy(a),
            lossy(b),
            extra,
            lossy(c),
            lossy(d),
            lossy(e),
            lossy(f),
            lossy(g),
            lossy(h),
            lossy(i),
        ))
    }
}

/// Copies the fields Herald does not know into `note.extra`, as JSON.
fn read_extra(lua: &Lua, msg: &Table, note: &mut Notification) -> Result<(), String> {
    for pair in msg.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let Value::String(k) = k else { continue };
        let k = k.to_string_lossy();
        if is_known(&k) {
            continue;
        }
        let v: serde_json::Value = match v {
            // Lossy, like the known fields: a string cut mid-character is not an error.
            Value::String(s) => serde_json::Value::String(s.to_string_lossy()),
            v => lua
                .from_value(v)
                .map_err(|e| format!("msg.{k} cannot be turned into JSON: {e}"))?,
        };
        note.extra.insert(k, v);
    }
    Ok(())
}

/// The fields of `msg` Herald reads itself; everything else is an extra field.
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
