//! The Lua side of Herald: the `herald` module every rule can use, and the `ctx` handed to each rule.
//!
//! All functions reach Rust state through one `Rc<RefCell<Shared>>`, borrowed only for the moment a
//! function runs (never across a call back into Lua). Everything a rule asks Herald to *do* — answer,
//! notify, publish — is collected as [`Effects`] and carried out by the agent after the rules return,
//! so rules never block on Redis or the screen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::Duration;

use globset::GlobSet;
use jiff::tz::TimeZone;
use lru::LruCache;
use mlua::{Lua, LuaSerdeExt, MultiValue, Table, Value, Variadic};
use regex::Regex;

use super::convert::ser_options;
use super::driver::Driver;
use super::state::{Clock, RuleState};
use super::window::Window;
use crate::message::{Answer, Kind, Priority};

/// What the agent's host looks like to rules (`herald.host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub os: String,
    pub groups: Vec<String>,
}

/// A notification a rule asked to show (`ctx.notify`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleNotice {
    pub rule: String,
    pub title: String,
    pub message: String,
    pub priority: Priority,
}

/// A message a rule asked to publish (`ctx.publish`).
#[derive(Debug, Clone, PartialEq)]
pub struct RulePublish {
    pub rule: String,
    pub channel: String,
    pub payload: String,
}

/// Side effects requested while processing one message or tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub notices: Vec<RuleNotice>,
    pub publishes: Vec<RulePublish>,
}

/// Rust-side state shared by every function.
pub struct Shared {
    pub clock: Clock,
    pub tz: TimeZone,
    pub states: HashMap<String, RuleState>,
    /// The rule names in the order they run: `cursor.i` (1-based) indexes it.
    pub names: Vec<String>,
    /// The driver's cursor: which rule is running (see `driver.luau`).
    pub cursor: Table,
    /// The type of the message being processed; `None` in `on_tick`.
    pub kind: Option<Kind>,
    pub regexes: LruCache<String, Regex>,
    pub effects: Effects,
    pub answer: Option<Answer>,
    pub publish_allow: GlobSet,
}

impl Shared {
    pub fn new(tz: TimeZone, publish_allow: GlobSet, cursor: Table) -> Self {
        Shared {
            clock: Clock::default(),
            tz,
            states: HashMap::new(),
            names: Vec::new(),
            cursor,
            kind: None,
            regexes: LruCache::new(NonZeroUsize::new(256).expect("non-zero")),
            effects: Effects::default(),
            answer: None,
            publish_allow,
        }
    }

    /// The name of the rule that is running.
    fn rule(&self) -> mlua::Result<&str> {
        Driver::running(&self.cursor)
            .checked_sub(1)
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                mlua::Error::runtime("herald functions can only be used while a rule runs")
            })
    }

    fn state(&mut self) -> mlua::Result<&mut RuleState> {
        let rule = self.rule()?.to_owned();
        Ok(self.states.entry(rule).or_default())
    }
}

pub type SharedRef = Rc<RefCell<Shared>>;

/// Installs the `herald` global.
pub fn install_herald(lua: &Lua, shared: &SharedRef, host: &HostInfo) -> mlua::Result<()> {
    let herald = lua.create_table()?;

    let s = shared.clone();
    herald.set(
        "seen",
        lua.create_function(move |_, (key, ttl): (String, f64)| {
            let ttl = seconds(ttl, "seen ttl")?;
            let mut s = s.borrow_mut();
            let now = s.clock.now();
            Ok(s.state()?.seen(&key, ttl, now))
        })?,
    )?;

    let s = shared.clone();
    herald.set(
        "rate",
        lua.create_function(move |_, (key, n, per): (String, f64, f64)| {
            if n.is_nan() || n < 1.0 {
                return Err(mlua::Error::runtime("rate: n must be at least 1"));
            }
            let per = seconds(per, "rate period")?;
            let mut s = s.borrow_mut();
            let now = s.clock.now();
            Ok(s.state()?.rate(&key, n, per, now))
        })?,
    )?;

    let s = shared.clone();
    herald.set(
        "now",
        lua.create_function(move |_, ()| {
            let now = s.borrow().clock.now();
            Ok(now.as_nanosecond() as f64 / 1e9)
        })?,
    )?;

    let s = shared.clone();
    herald.set(
        "localtime",
        lua.create_function(move |lua, ()| {
            let s = s.borrow();
            let local = s.clock.now().to_zoned(s.tz.clone());
            let t = lua.create_table()?;
            t.set("year", local.year())?;
            t.set("month", local.month())?;
            t.set("day", local.day())?;
            t.set("hour", local.hour())?;
            t.set("min", local.minute())?;
            t.set("sec", local.second())?;
            t.set("wday", local.weekday().to_sunday_one_offset())?;
            t.set("yday", local.day_of_year())?;
            t.set("zone", local.time_zone().iana_name().unwrap_or("local"))?;
            Ok(t)
        })?,
    )?;

    let s = shared.clone();
    herald.set(
        "in_window",
        lua.create_function(move |_, (spec, opts): (String, Option<Table>)| {
            let weekdays: Option<Vec<String>> = match &opts {
                Some(o) => o.get("weekdays")?,
                None => None,
            };
            let window = Window::parse(&spec, weekdays.as_deref()).map_err(mlua::Error::runtime)?;
            let s = s.borrow();
            let local = s.clock.now().to_zoned(s.tz.clone()).datetime();
            Ok(window.contains(local))
        })?,
    )?;

    let s = shared.clone();
    herald.set(
        "regex",
        lua.create_function(move |lua, (pattern, text): (String, String)| {
            let re = {
                let mut s = s.borrow_mut();
                match s.regexes.get(&pattern) {
                    Some(re) => re.clone(),
                    None => {
                        let re = Regex::new(&pattern)
                            .map_err(|e| mlua::Error::runtime(format!("bad regex: {e}")))?;
                        s.regexes.put(pattern, re.clone());
                        re
                    }
                }
            };
            regex_match(lua, &re, &text)
        })?,
    )?;

    herald.set("log", log_table(lua, shared)?)?;
    herald.set("json", json_table(lua)?)?;

    let host_t = lua.create_table()?;
    host_t.set("name", host.name.as_str())?;
    host_t.set("os", host.os.as_str())?;
    host_t.set(
        "groups",
        lua.create_sequence_from(host.groups.iter().map(String::as_str))?,
    )?;
    host_t.set_readonly(true);
    herald.set("host", host_t)?;

    herald.set_readonly(true);
    lua.globals().set("herald", herald)
}

/// Like `string.match`: the captures (or the whole match when there are none), or `nil`.
fn regex_match(lua: &Lua, re: &Regex, text: &str) -> mlua::Result<MultiValue> {
    let Some(caps) = re.captures(text) else {
        return Ok(MultiValue::from_iter([Value::Nil]));
    };
    let mut out = MultiValue::new();
    if caps.len() == 1 {
        out.push_back(Value::String(lua.create_string(&caps[0])?));
    } else {
        for group in caps.iter().skip(1) {
            out.push_back(match group {
                Some(m) => Value::String(lua.create_string(m.as_str())?),
                None => Value::Nil,
            });
        }
    }
    Ok(out)
}

fn log_table(lua: &Lua, shared: &SharedRef) -> mlua::Result<Table> {
    let log = lua.create_table()?;
    for level in ["info", "warn"] {
        let s = shared.clone();
        log.set(
            level,
            lua.create_function(move |_, args: Variadic<Value>| {
                let text = args
                    .iter()
                    .map(|v| v.to_string().unwrap_or_else(|_| v.type_name().to_owned()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let s = s.borrow();
                let rule = s.rule().unwrap_or("?");
                if level == "warn" {
                    tracing::warn!(rule, "{text}");
                } else {
                    tracing::info!(rule, "{text}");
                }
                Ok(())
            })?,
        )?;
    }
    log.set_readonly(true);
    Ok(log)
}

fn json_table(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let v: serde_json::Value = lua.from_value(v)?;
            Ok(v.to_string())
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, text: String| {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| mlua::Error::runtime(format!("json.decode: {e}")))?;
            lua.to_value_with(&v, ser_options())
        })?,
    )?;
    json.set_readonly(true);
    Ok(json)
}

/// Builds the `ctx` table of one rule.
pub fn make_ctx(lua: &Lua, shared: &SharedRef, rule: &str) -> mlua::Result<Table> {
    let ctx = lua.create_table()?;
    ctx.set("rule", rule)?;

    let s = shared.clone();
    ctx.set(
        "answer",
        lua.create_function(move |_, text: String| {
            let mut s = s.borrow_mut();
            s.rule()?;
            let kind = s.kind.ok_or_else(|| {
                mlua::Error::runtime("ctx.answer: there is no message to answer in on_tick")
            })?;
            let answer: Answer =
                text.parse()
                    .ok()
                    .filter(|a| kind.offers(*a))
                    .ok_or_else(|| {
                        mlua::Error::runtime(format!(
                            "ctx.answer(\"{text}\"): a {} message can be answered {}",
                            kind.as_str(),
                            match kind {
                                Kind::OkCancel => "\"OK\", \"Cancel\" or \"Dismissed\"",
                                Kind::Ok => "\"OK\" or \"Dismissed\"",
                                Kind::Simple => "only \"Dismissed\"",
                            }
                        ))
                    })?;
            s.answer = Some(answer);
            // Tells the driver to stop: the message has its fate.
            Driver::set_answered(&s.cursor)
        })?,
    )?;

    let s = shared.clone();
    let name = rule.to_owned();
    ctx.set(
        "notify",
        lua.create_function(move |_, t: Table| {
            let title: String = t.get("title")?;
            let message: String = t.get::<Option<String>>("message")?.unwrap_or_default();
            let priority = match t.get::<Option<String>>("priority")? {
                None => Priority::Normal,
                Some(p) => p
                    .parse()
                    .map_err(|e: String| mlua::Error::runtime(format!("ctx.notify: {e}")))?,
            };
            s.borrow_mut().effects.notices.push(RuleNotice {
                rule: name.clone(),
                title,
                message,
                priority,
            });
            Ok(())
        })?,
    )?;

    let s = shared.clone();
    let name = rule.to_owned();
    ctx.set(
        "publish",
        lua.create_function(move |lua, (channel, value): (String, Value)| {
            let mut s = s.borrow_mut();
            if !s.publish_allow.is_match(&channel) {
                return Err(mlua::Error::runtime(format!(
                    "ctx.publish: channel `{channel}` is not in [rules] publish_allow"
                )));
            }
            let v: serde_json::Value = lua.from_value(value)?;
            s.effects.publishes.push(RulePublish {
                rule: name.clone(),
                channel,
                payload: v.to_string(),
            });
            Ok(())
        })?,
    )?;

    ctx.set_readonly(true);
    Ok(ctx)
}

fn seconds(v: f64, what: &str) -> mlua::Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        mlua::Error::runtime(format!("{what} must be a non-negative number of seconds"))
    })
}
