//! The rule engine: one sandboxed Luau VM, the compiled rules, and the per-message pipeline.
//!
//! It is deliberately synchronous and `!Send` (mlua without `send` is 40–55 % faster): it lives on the
//! rules thread (`worker`) or, for `herald rules test`/`run`, on the caller's thread. Every run — one
//! message through all rules, or one tick — has a CPU deadline enforced by a Luau interrupt that keeps
//! failing once tripped, so `pcall` cannot swallow it; memory is capped per VM.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use globset::GlobSet;
use jiff::Timestamp;
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value, VmState};

use super::api::{self, Effects, HostInfo, Shared, SharedRef};
use super::convert::Route;
use super::driver::{Driver, Outcome};
use crate::config::OnError;
use crate::message::{Answer, Notification};

/// What the engine needs besides the rule files.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub on_error: OnError,
    pub budget: Duration,
    pub memory_limit: usize,
    pub publish_allow: GlobSet,
    pub tz: jiff::tz::TimeZone,
    pub host: HostInfo,
}

/// A compiled rule. Cloning shares the compiled functions (and so the rule's upvalue state).
#[derive(Clone)]
struct Rule {
    name: String,
    file: PathBuf,
    /// The text it was compiled from: a reload recompiles only files whose text changed.
    source: String,
    channels: Option<GlobSet>,
    on_tick: Option<Function>,
    ctx: Table,
    /// `{ on_message, ctx }`, as the driver calls it; `None` without `on_message`.
    entry: Option<Table>,
}

/// What the rules decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Show it (possibly rewritten), where `route` says (presenter default when `None`).
    Show {
        note: Notification,
        route: Option<Route>,
    },
    /// A rule returned nil/false, or failed under `on_error = "drop"`.
    Drop { rule: String },
    /// A rule answered it with `ctx.answer`.
    Answer { rule: String, answer: Answer },
}

/// A rule that failed: logged, counted, handled per `on_error`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub rule: String,
    pub file: PathBuf,
    pub message: String,
}

/// One rule's part in a message's fate, for `herald rules run`.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Skipped,
    Passed,
    Changed(Vec<String>),
    Dropped,
    Answered(Answer),
    Failed(String),
}

/// The result of one message or tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub verdict: Verdict,
    pub effects: Effects,
    pub failures: Vec<RuleFailure>,
    /// Filled only when tracing.
    pub trace: Vec<(String, Step)>,
}

/// The result of one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ticked {
    pub effects: Effects,
    pub failures: Vec<RuleFailure>,
}

/// What a reload changed, by rule name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Present before and after, recompiled because the file changed (their state was reset).
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Every rule after the reload, in the order they run.
    pub rules: Vec<String>,
}

impl ReloadSummary {
    fn between(before: &[String], after: &[String], recompiled: &[String]) -> Self {
        let added: Vec<String> = after
            .iter()
            .filter(|n| !before.contains(n))
            .cloned()
            .collect();
        let removed = before
            .iter()
            .filter(|n| !after.contains(n))
            .cloned()
            .collect();
        let changed: Vec<String> = recompiled
            .iter()
            .filter(|n| before.contains(n))
            .cloned()
            .collect();
        let unchanged = after.len() - added.len() - changed.len();
        ReloadSummary {
            added,
            removed,
            changed,
            unchanged,
            rules: after.to_vec(),
        }
    }
}

/// Why a rule file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if message.starts_with(file.as_str()) { message.clone() } else { format!("{file}: {message}") })]
pub struct LoadError {
    pub file: String,
    pub message: String,
}

/// The CPU deadline the interrupt enforces.
#[derive(Default)]
struct Budget {
    deadline: Cell<Option<Instant>>,
    /// Until this (coarse clock) the deadline is certainly not near: the precise clock is read only
    /// after it.
    watch_from: Cell<Option<coarsetime::Instant>>,
    /// Interrupts since the precise clock was last read.
    polls: Cell<u32>,
    tripped: Cell<bool>,
    limit_ms: Cell<u128>,
}

/// Luau interrupts at every call and loop back-edge. Reading the precise clock each time was 4 % of
/// a flood, and reading it only every so often lets a loop of slow C calls (`string.rep`, a big
/// `json.encode`) overrun the budget many times over. So every interrupt reads the coarse clock
/// (a few nanoseconds, one kernel tick of resolution), and only within this margin of the deadline
/// the precise one: cheap, and stopped within microseconds of the budget.
const COARSE_MARGIN: Duration = Duration::from_millis(10);

/// Whatever the coarse clock says, the precise one is read at least this often (in interrupts): a
/// backstop for coarse clocks that lag more than a tick (late ticks on a VM, other systems' clocks).
const PRECISE_EVERY: u32 = 256;

/// Channels whose rule lists are kept; past this the cache starts afresh (names are unbounded).
const MAX_CACHED_CHANNELS: usize = 4096;

pub struct Engine {
    lua: Lua,
    driver: Driver,
    rules: Vec<Rule>,
    /// Per channel, its Lua string and the driver's list of rules: an entry where a rule applies,
    /// `false` where not.
    lists: HashMap<String, (mlua::LuaString, Table)>,
    shared: SharedRef,
    budget: Rc<Budget>,
    config: EngineConfig,
}

impl Engine {
    /// Loads and compiles `files` in order; reports every file that fails.
    pub fn load(config: EngineConfig, files: &[PathBuf]) -> Result<Engine, Vec<LoadError>> {
        let internal = |e: mlua::Error| {
            vec![LoadError {
                file: "<engine>".into(),
                message: e.to_string(),
            }]
        };
        let budget = Rc::new(Budget::default());
        let (lua, shared, driver) = new_vm(&config, &budget).map_err(internal)?;
        let mut engine = Engine {
            lua,
            driver,
            rules: Vec::new(),
            lists: HashMap::new(),
            shared,
            budget,
            config,
        };
        let rules = engine.compile_all(files, &[])?.0;
        engine.set_rules(rules);
        Ok(engine)
    }

    /// Swaps in a new rule list and settings, recompiling only files whose text changed. Unchanged
    /// rules keep their state (upvalues, `seen`, `rate`); changed and removed rules lose it. On any
    /// error nothing changes. A new host identity needs a fresh VM, so then every rule starts afresh.
    pub fn reload(
        &mut self,
        config: EngineConfig,
        files: &[PathBuf],
    ) -> Result<ReloadSummary, Vec<LoadError>> {
        if config.host != self.config.host {
            let before: Vec<String> = self.rule_names().iter().map(|n| n.to_string()).collect();
            let fresh = Engine::load(config, files)?;
            let after: Vec<String> = fresh.rule_names().iter().map(|n| n.to_string()).collect();
            *self = fresh;
            return Ok(ReloadSummary::between(&before, &after, &after));
        }
        let previous = self.rules.clone();
        let (rules, summary) = self.compile_all(files, &previous)?;
        {
            let mut shared = self.shared.borrow_mut();
            for name in summary.changed.iter().chain(&summary.removed) {
                shared.states.remove(name);
            }
            shared.tz = config.tz.clone();
            shared.publish_allow = config.publish_allow.clone();
        }
        if let Err(e) = self.lua.set_memory_limit(config.memory_limit) {
            tracing::warn!(error = %e, "cannot change the rules' memory limit");
        }
        self.config = config;
        self.set_rules(rules);
        Ok(summary)
    }

    /// Swaps in `rules`: their names for the `herald` functions, and no stale per-channel lists.
    fn set_rules(&mut self, rules: Vec<Rule>) {
        self.shared.borrow_mut().names = rules.iter().map(|r| r.name.clone()).collect();
        self.lists.clear();
        self.rules = rules;
    }

    /// Compiles `files` in order, reusing rules of `previous` whose file text is unchanged.
    fn compile_all(
        &self,
        files: &[PathBuf],
        previous: &[Rule],
    ) -> Result<(Vec<Rule>, ReloadSummary), Vec<LoadError>> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut errors = Vec::new();
        let mut recompiled = Vec::new();
        for file in files {
            let error = |message: String| LoadError {
                file: file.display().to_string(),
                message,
            };
            let source = match std::fs::read_to_string(file) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(error(format!("cannot read: {e}")));
                    continue;
                }
            };
            let rule = match previous
                .iter()
                .find(|r| &r.file == file && r.source == source)
            {
                Some(same) => same.clone(),
                None => match self.compile(file, source) {
                    Ok(rule) => {
                        recompiled.push(rule.name.clone());
                        rule
                    }
                    Err(message) => {
                        errors.push(error(message));
                        continue;
                    }
                },
            };
            if rules.iter().any(|r| r.name == rule.name) {
                errors.push(error(format!(
                    "a rule named `{}` is already loaded; names must be unique",
                    rule.name
                )));
                continue;
            }
            rules.push(rule);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let before: Vec<String> = previous.iter().map(|r| r.name.clone()).collect();
        let after: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
        Ok((rules, ReloadSummary::between(&before, &after, &recompiled)))
    }

    /// The rule names, in the order they run.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Pins the rules' clock (`None`: the system clock).
    pub fn set_time(&self, at: Option<Timestamp>) {
        self.shared.borrow_mut().clock.set(at);
    }

    /// Sets the time zone `localtime` and `in_window` use.
    pub fn set_timezone(&self, tz: jiff::tz::TimeZone) {
        self.shared.borrow_mut().tz = tz;
    }

    fn compile(&self, file: &Path, source: String) -> Result<Rule, String> {
        let env = self.lua.create_table().map_err(|e| e.to_string())?;
        let meta = self.lua.create_table().map_err(|e| e.to_string())?;
        meta.set("__index", self.lua.globals())
            .map_err(|e| e.to_string())?;
        env.set_metatable(Some(meta)).map_err(|e| e.to_string())?;
        env.set_readonly(true); // globals are read-only: rule state lives in locals (upvalues)
        let chunk = self
            .lua
            .load(source.as_str())
            .set_name(format!("@{}", file.display()))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .set_environment(env);
        self.arm();
        let value = chunk.eval::<Value>();
        self.disarm();
        let value = value.map_err(|e| lua_message(&e))?;
        let Value::Table(t) = value else {
            return Err(format!(
                "a rule file must return a table, not {}",
                value.type_name()
            ));
        };
        let default_name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.rule_from_table(t, default_name, file, source)
    }

    fn rule_from_table(
        &self,
        t: Table,
        default_name: String,
        file: &Path,
        source: String,
    ) -> Result<Rule, String> {
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| e.to_string())?;
            let key = k.to_string().unwrap_or_default();
            if !matches!(key.as_str(), "name" | "channels" | "on_message" | "on_tick") {
                return Err(format!(
                    "unknown key `{key}` in the rule table (expected name, channels, on_message, on_tick)"
                ));
            }
        }
        let name: String = t
            .get::<Option<String>>("name")
            .map_err(|_| "`name` must be a string".to_owned())?
            .unwrap_or(default_name);
        let channels = match t.get::<Value>("channels").map_err(|e| e.to_string())? {
            Value::Nil => None,
            v => {
                let list: Vec<String> = self
                    .lua
                    .unpack(v)
                    .map_err(|_| "`channels` must be a list of channel globs".to_owned())?;
                Some(crate::config::globs_for(&list).map_err(|e| format!("`channels`: {e}"))?)
            }
        };
        let function = |key: &str| {
            t.get::<Option<Function>>(key)
                .map_err(|_| format!("`{key}` must be a function"))
        };
        let on_message = function("on_message")?;
        let on_tick = function("on_tick")?;
        if on_message.is_none() && on_tick.is_none() {
            return Err("a rule needs `on_message`, `on_tick`, or both".into());
        }
        let ctx = api::make_ctx(&self.lua, &self.shared, &name).map_err(|e| e.to_string())?;
        let entry = match &on_message {
            Some(f) => Some(
                self.lua
                    .create_sequence_from([Value::Function(f.clone()), Value::Table(ctx.clone())])
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Ok(Rule {
            name,
            file: file.to_owned(),
            source,
            channels,
            on_tick,
            ctx,
            entry,
        })
    }

    /// Runs one message through every rule whose `channels` match.
    pub fn process(&mut self, channel: &str, note: &Notification, trace: bool) -> Processed {
        let mut out = Processed {
            verdict: Verdict::Drop {
                rule: String::new(),
            },
            effects: Effects::default(),
            failures: Vec::new(),
            trace: Vec::new(),
        };
        {
            let mut s = self.shared.borrow_mut();
            s.kind = Some(note.kind);
            s.answer = None;
        }
        let built = self.cache_list(channel).and_then(|()| {
            let (name, list) = &self.lists[channel];
            Ok((list, self.driver.make(&self.lua, name, note)?))
        });
        let (list, msg) = match built {
            Ok(built) => built,
            Err(e) => {
                out.failures.push(self.failure(
                    "<herald>",
                    Path::new(""),
                    format!("cannot build msg: {e}"),
                ));
                out.verdict = Verdict::Show {
                    note: note.clone(),
                    route: None,
                };
                return out;
            }
        };
        self.arm();
        let fate = self.run_rules(list, msg, trace, &mut out);
        self.disarm();
        out.verdict = match fate {
            ControlFlow::Break(decided) => decided,
            ControlFlow::Continue(msg) => match self.driver.read(&self.lua, &msg, note) {
                Ok((note, route)) => Verdict::Show { note, route },
                Err(e) => {
                    let last = self
                        .rules
                        .last()
                        .map(|r| (r.name.clone(), r.file.clone()))
                        .unwrap_or_default();
                    out.failures.push(self.failure(&last.0, &last.1, e));
                    match self.config.on_error {
                        OnError::Pass => Verdict::Show {
                            note: note.clone(),
                            route: None,
                        },
                        OnError::Drop => Verdict::Drop { rule: last.0 },
                    }
                }
            },
        };
        out.effects = std::mem::take(&mut self.shared.borrow_mut().effects);
        out
    }

    /// Makes sure `lists` holds the channel's Lua string and the driver's rule list for it, built once
    /// per channel and borrowed from there for every message.
    fn cache_list(&mut self, channel: &str) -> mlua::Result<()> {
        if self.lists.contains_key(channel) {
            return Ok(());
        }
        if self.lists.len() >= MAX_CACHED_CHANNELS {
            self.lists.clear();
        }
        let list = self.lua.create_table_with_capacity(self.rules.len(), 0)?;
        for (i, rule) in self.rules.iter().enumerate() {
            let applies = rule.channels.as_ref().is_none_or(|g| g.is_match(channel));
            let value = match (&rule.entry, applies) {
                (Some(entry), true) => Value::Table(entry.clone()),
                _ => Value::Boolean(false),
            };
            list.raw_set(i + 1, value)?;
        }
        let name = self.lua.create_string(channel)?;
        self.lists.insert(channel.to_owned(), (name, list));
        Ok(())
    }

    /// The rules loop: `Break` when a rule decided the message's fate, otherwise `Continue` with the
    /// table to read back. Without tracing, all rules run in one driver call; a failure resumes the
    /// run after the failed rule. Tracing steps one rule at a time.
    fn run_rules(
        &self,
        list: &Table,
        mut msg: Table,
        trace: bool,
        out: &mut Processed,
    ) -> ControlFlow<Verdict, Table> {
        let snapshot = trace || self.config.on_error == OnError::Pass;
        let n = self.rules.len();
        let mut from = 1;
        while from <= n {
            if trace {
                let rule = &self.rules[from - 1];
                if rule.entry.is_none() {
                    from += 1;
                    continue;
                }
                if !matches!(list.raw_get::<Value>(from), Ok(Value::Table(_))) {
                    out.trace.push((rule.name.clone(), Step::Skipped));
                    from += 1;
                    continue;
                }
            }
            let to = if trace { from } else { n };
            match self.driver.run(msg.clone(), list, from, to, snapshot) {
                Outcome::Done(next) => {
                    if trace {
                        let changed = self
                            .driver
                            .before()
                            .map(|before| changed_fields(&before, &next))
                            .unwrap_or_default();
                        let step = if changed.is_empty() {
                            Step::Passed
                        } else {
                            Step::Changed(changed)
                        };
                        out.trace.push((self.rules[from - 1].name.clone(), step));
                    }
                    msg = next;
                    from = to + 1;
                }
                Outcome::Drop(i) => {
                    let rule = self.rule_name(i);
                    if trace {
                        out.trace.push((rule.clone(), Step::Dropped));
                    }
                    return ControlFlow::Break(Verdict::Drop { rule });
                }
                Outcome::Answer(i) => {
                    let rule = self.rule_name(i);
                    let answer = self.shared.borrow_mut().answer.take();
                    if let Some(answer) = answer {
                        if trace {
                            out.trace.push((rule.clone(), Step::Answered(answer)));
                        }
                        return ControlFlow::Break(Verdict::Answer { rule, answer });
                    }
                    return ControlFlow::Break(Verdict::Drop { rule });
                }
                Outcome::Bad(i, type_name) => {
                    let message = format!(
                        "on_message must return the message table, nil or false; it returned {type_name}"
                    );
                    if let ControlFlow::Break(v) = self.rule_failed(i, message, trace, out) {
                        return ControlFlow::Break(v);
                    }
                    msg = self.driver.restore(false).unwrap_or(msg);
                    from = i + 1;
                }
                Outcome::Failed { i, between, error } => {
                    if is_memory_error(&error) {
                        // Free what the failed rule left behind before the next rule needs memory.
                        let _ = self.lua.gc_collect();
                    }
                    // Between rules only time runs out: the last rule to run used it up.
                    if let ControlFlow::Break(v) =
                        self.rule_failed(i, lua_message(&error), trace, out)
                    {
                        return ControlFlow::Break(v);
                    }
                    msg = self.driver.restore(between).unwrap_or(msg);
                    if self.budget.tripped.get() || i == 0 {
                        // Out of time (or failing before any rule ran): no later rule runs either.
                        return ControlFlow::Continue(msg);
                    }
                    from = i + 1;
                }
            }
        }
        ControlFlow::Continue(msg)
    }

    /// Records rule `i`'s failure; `Break` when `on_error = "drop"` ends the message there.
    fn rule_failed(
        &self,
        i: usize,
        message: String,
        trace: bool,
        out: &mut Processed,
    ) -> ControlFlow<Verdict> {
        // 0: no rule in particular (time ran out before the next one started).
        let (name, file) = self
            .rule_at(i)
            .map(|r| (r.name.clone(), r.file.clone()))
            .unwrap_or_else(|| ("<rules>".to_owned(), PathBuf::new()));
        let failure = self.failure(&name, &file, message);
        if trace {
            out.trace
                .push((name.clone(), Step::Failed(failure.message.clone())));
        }
        out.failures.push(failure);
        match self.config.on_error {
            OnError::Drop => ControlFlow::Break(Verdict::Drop { rule: name }),
            OnError::Pass => ControlFlow::Continue(()),
        }
    }

    /// Rule `i`, counted from 1 as the driver counts (0 is none).
    fn rule_at(&self, i: usize) -> Option<&Rule> {
        i.checked_sub(1).and_then(|i| self.rules.get(i))
    }

    /// The name of rule `i` (1-based).
    fn rule_name(&self, i: usize) -> String {
        self.rule_at(i).map(|r| r.name.clone()).unwrap_or_default()
    }

    /// Runs every `on_tick`.
    pub fn tick(&mut self) -> Ticked {
        let mut out = Ticked::default();
        self.arm();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Some(on_tick) = rule.on_tick.clone() else {
                continue;
            };
            let (name, file, ctx) = (rule.name.clone(), rule.file.clone(), rule.ctx.clone());
            self.shared.borrow_mut().kind = None;
            self.driver.set_running(i + 1);
            let result = on_tick.call::<()>(ctx);
            self.driver.set_running(0);
            if let Err(e) = result {
                out.failures
                    .push(self.failure(&name, &file, lua_message(&e)));
            }
        }
        self.disarm();
        out.effects = std::mem::take(&mut self.shared.borrow_mut().effects);
        out
    }

    /// Starts the CPU deadline for one run.
    fn arm(&self) {
        self.budget.tripped.set(false);
        self.budget.limit_ms.set(self.config.budget.as_millis());
        let budget = self.config.budget;
        self.budget.deadline.set(Some(Instant::now() + budget));
        let quiet = coarsetime::Duration::from(budget.saturating_sub(COARSE_MARGIN));
        self.budget.watch_from.set(Some(
            coarsetime::Instant::now_without_cache_update() + quiet,
        ));
    }

    /// Ends the run; frees what a failed run may have left behind once memory gets tight.
    fn disarm(&self) {
        self.budget.deadline.set(None);
        self.budget.watch_from.set(None);
        self.budget.tripped.set(false);
        if self.lua.used_memory() > self.config.memory_limit / 2 {
            let _ = self.lua.gc_collect();
        }
    }

    fn failure(&self, rule: &str, file: &Path, message: String) -> RuleFailure {
        RuleFailure {
            rule: rule.to_owned(),
            file: file.to_owned(),
            message,
        }
    }
}

/// A VM with the safe standard library, the `herald` module, the driver, a memory cap and the CPU
/// interrupt, in Luau sandbox mode (built-in libraries and globals read-only).
fn new_vm(config: &EngineConfig, budget: &Rc<Budget>) -> mlua::Result<(Lua, SharedRef, Driver)> {
    let libs =
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::BIT | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let globals = lua.globals();
    // `require` reads files even in sandbox mode; the others load or reach code by other routes.
    for name in [
        "require",
        "load",
        "loadstring",
        "dofile",
        "loadfile",
        "getfenv",
        "setfenv",
        "collectgarbage",
        "debug",
    ] {
        globals.raw_remove(name)?;
    }
    // Luau's `os` is already harmless (time, clock, date, difftime); keep only those.
    let cursor = lua.create_table()?;
    let shared = Rc::new(RefCell::new(Shared::new(
        config.tz.clone(),
        config.publish_allow.clone(),
        cursor.clone(),
    )));
    api::install_herald(&lua, &shared, &config.host)?;
    let driver = Driver::new(&lua, cursor)?;
    lua.sandbox(true)?;
    lua.set_memory_limit(config.memory_limit)?;
    let budget = budget.clone();
    lua.set_interrupt(move |_| {
        if budget.tripped.get() {
            return Err(over_budget(&budget));
        }
        let polls = budget.polls.get() + 1;
        budget.polls.set(polls % PRECISE_EVERY);
        if polls < PRECISE_EVERY
            && let Some(from) = budget.watch_from.get()
            && coarsetime::Instant::now_without_cache_update() < from
        {
            return Ok(VmState::Continue);
        }
        if let Some(deadline) = budget.deadline.get()
            && Instant::now() >= deadline
        {
            budget.tripped.set(true);
            return Err(over_budget(&budget));
        }
        Ok(VmState::Continue)
    });
    Ok((lua, shared, driver))
}

fn over_budget(budget: &Budget) -> mlua::Error {
    mlua::Error::runtime(format!(
        "rule ran out of its {} ms time budget",
        budget.limit_ms.get()
    ))
}

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// The first line of a Lua error, which carries `file:line:` for runtime and syntax errors.
fn lua_message(e: &mlua::Error) -> String {
    let root = match e {
        mlua::Error::CallbackError { cause, .. } => cause.as_ref(),
        other => other,
    };
    let text = match root {
        mlua::Error::MemoryError(_) => "rule ran out of memory ([rules] memory_mb)".to_owned(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// Names of the top-level fields that differ between two message tables.
fn changed_fields(before: &Table, after: &Table) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |a: &Table, b: &Table| {
        for (k, v) in a.pairs::<Value, Value>().flatten() {
            let other: Value = b.raw_get(k.clone()).unwrap_or(Value::Nil);
            if !values_equal(&v, &other) {
                let key = k.to_string().unwrap_or_default();
                if !changed.contains(&key) {
                    changed.push(key);
                }
            }
        }
    };
    check(before, after);
    check(after, before);
    changed.sort();
    changed
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes() == y.as_bytes(),
        _ => a == b,
    }
}
