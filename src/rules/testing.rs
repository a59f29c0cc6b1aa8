//! `herald rules test`: rule tests written beside the rules, as `*.test.toml` files.
//!
//! `foo.test.toml` beside `foo.luau` tests that rule alone; any other `*.test.toml` tests every rule of
//! its folder (the pack), in load order. Each case gets a fresh engine, so state never leaks between
//! cases; `prior` messages build up state first. The clock is pinned to each message's `time`, and
//! local time is that time's own UTC offset unless the file sets `timezone`.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::engine::{Engine, EngineConfig, Processed, Verdict};
use super::{Effects, rule_files_in};
use crate::message::{self, Notification};

/// One `*.test.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    timezone: Option<String>,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    time: Option<String>,
    channel: Option<String>,
    message: toml::Table,
    #[serde(default)]
    prior: Vec<Prior>,
    #[serde(default)]
    tick: bool,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Prior {
    time: Option<String>,
    channel: Option<String>,
    message: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    Word(Word),
    Table(ExpectTable),
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Word {
    Drop,
    Show,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectTable {
    drop: Option<bool>,
    show: Option<toml::Table>,
    answer: Option<String>,
    publish: Option<String>,
    notify: Option<String>,
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Finds every `*.test.toml` under `paths` (files or folders, searched recursively), sorted.
pub fn find_tests(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_file() {
            found.push(path.clone());
        } else {
            walk(path, &mut found);
        }
    }
    found.sort();
    found.dedup();
    found
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, found);
        } else if p.to_string_lossy().ends_with(".test.toml") {
            found.push(p);
        }
    }
}

/// Runs every case of every file, printing one line per case to `out`.
pub fn run(files: &[PathBuf], base: &EngineConfig, out: &mut dyn std::io::Write) -> Summary {
    let mut summary = Summary::default();
    for file in files {
        let mut report = |ok: bool, name: &str, detail: String| {
            if ok {
                summary.passed += 1;
                let _ = writeln!(out, "ok    {}: {name}", file.display());
            } else {
                summary.failed += 1;
                let _ = writeln!(out, "FAIL  {}: {name}\n      {detail}", file.display());
            }
        };
        match run_file(file, base) {
            Err(e) => report(false, "(file)", e),
            Ok(results) => {
                for (name, result) in results {
                    match result {
                        Ok(()) => report(true, &name, String::new()),
                        Err(why) => report(false, &name, why),
                    }
                }
            }
        }
    }
    summary
}

type CaseResult = (String, Result<(), String>);

fn run_file(file: &Path, base: &EngineConfig) -> Result<Vec<CaseResult>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let tests: TestFile = toml::from_str(&text).map_err(|e| e.to_string())?;
    if tests.cases.is_empty() {
        return Err("no [[case]] in this file".into());
    }
    let rules = rules_under_test(file)?;
    let fixed_tz = match &tests.timezone {
        Some(name) => Some(TimeZone::get(name).map_err(|e| format!("timezone: {e}"))?),
        None => None,
    };
    Ok(tests
        .cases
        .iter()
        .map(|case| {
            (
                case.name.clone(),
                run_case(case, &rules, base, fixed_tz.as_ref()),
            )
        })
        .collect())
}

/// `foo.test.toml` → `foo.luau` (or `foo.lua`) when it exists, else every rule in the folder.
fn rules_under_test(file: &Path) -> Result<Vec<PathBuf>, String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".test.toml");
    let dir = file.parent().unwrap_or(Path::new("."));
    for ext in ["luau", "lua"] {
        let single = dir.join(format!("{stem}.{ext}"));
        if single.is_file() {
            return Ok(vec![single]);
        }
    }
    let files = rule_files_in(dir)?;
    if files.is_empty() {
        return Err(format!("no rule files beside it in {}", dir.display()));
    }
    Ok(files)
}

fn run_case(
    case: &Case,
    rules: &[PathBuf],
    base: &EngineConfig,
    fixed_tz: Option<&TimeZone>,
) -> Result<(), String> {
    let mut engine = Engine::load(base.clone(), rules).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut effects = Effects::default();
    for (i, prior) in case.prior.iter().enumerate() {
        let what = format!("prior[{}]", i + 1);
        set_clock(
            &engine,
            prior.time.as_deref().or(case.time.as_deref()),
            fixed_tz,
        )?;
        let note = to_note(&prior.message, &what)?;
        let p = engine.process(channel(&prior.channel), &note, false);
        check_failures(&p, &what)?;
        merge(&mut effects, p.effects);
    }
    set_clock(&engine, case.time.as_deref(), fixed_tz)?;
    let note = to_note(&case.message, "message")?;
    let processed = engine.process(channel(&case.channel), &note, false);
    check_failures(&processed, "message")?;
    merge(&mut effects, processed.effects.clone());
    if case.tick {
        let t = engine.tick();
        if let Some(f) = t.failures.first() {
            return Err(format!(
                "on_tick of rule `{}` failed: {}",
                f.rule, f.message
            ));
        }
        merge(&mut effects, t.effects);
    }
    check_expect(&case.expect, &processed.verdict, &effects)
}

fn channel(c: &Option<String>) -> &str {
    c.as_deref().unwrap_or("notifications")
}

fn set_clock(
    engine: &Engine,
    time: Option<&str>,
    fixed_tz: Option<&TimeZone>,
) -> Result<(), String> {
    let Some(time) = time else {
        engine.set_time(None);
        return Ok(());
    };
    let at: Timestamp = time.parse().map_err(|e| format!("time `{time}`: {e}"))?;
    let tz = match fixed_tz {
        Some(tz) => tz.clone(),
        None => jiff::fmt::temporal::Pieces::parse(time)
            .ok()
            .and_then(|p| p.to_numeric_offset())
            .map_or(TimeZone::UTC, TimeZone::fixed),
    };
    engine.set_time(Some(at));
    engine.set_timezone(tz);
    Ok(())
}

fn to_note(message: &toml::Table, what: &str) -> Result<Notification, String> {
    let json = serde_json::to_vec(message).map_err(|e| format!("{what}: {e}"))?;
    let mut counter = 0;
    message::decode(&json, usize::MAX, || {
        counter += 1;
        format!("test-{counter}")
    })
    .map_err(|e| format!("{what} is not a valid notification: {e}"))
}

fn check_failures(p: &Processed, what: &str) -> Result<(), String> {
    match p.failures.first() {
        Some(f) => Err(format!("{what}: rule `{}` failed: {}", f.rule, f.message)),
        None => Ok(()),
    }
}

fn merge(into: &mut Effects, from: Effects) {
    into.notices.extend(from.notices);
    into.publishes.extend(from.publishes);
}

fn check_expect(expect: &Expect, verdict: &Verdict, effects: &Effects) -> Result<(), String> {
    let table = match expect {
        Expect::Word(Word::Drop) => return expect_drop(verdict),
        Expect::Word(Word::Show) => return expect_show(verdict, None),
        Expect::Table(t) => t,
    };
    if table.drop == Some(true) {
        expect_drop(verdict)?;
    }
    if let Some(fields) = &table.show {
        expect_show(verdict, Some(fields))?;
    }
    if let Some(want) = &table.answer {
        match verdict {
            Verdict::Answer { answer, .. } if answer.as_str() == want => {}
            other => return Err(format!("expected answer {want}, got {}", describe(other))),
        }
    }
    if let Some(channel) = &table.publish
        && !effects.publishes.iter().any(|p| &p.channel == channel)
    {
        let got: Vec<_> = effects
            .publishes
            .iter()
            .map(|p| p.channel.as_str())
            .collect();
        return Err(format!("expected a publish to `{channel}`, got {got:?}"));
    }
    if let Some(title) = &table.notify
        && !effects.notices.iter().any(|n| &n.title == title)
    {
        let got: Vec<_> = effects.notices.iter().map(|n| n.title.as_str()).collect();
        return Err(format!(
            "expected a notification titled {title:?}, got {got:?}"
        ));
    }
    Ok(())
}

fn expect_drop(verdict: &Verdict) -> Result<(), String> {
    match verdict {
        Verdict::Drop { .. } => Ok(()),
        other => Err(format!("expected drop, got {}", describe(other))),
    }
}

fn expect_show(verdict: &Verdict, fields: Option<&toml::Table>) -> Result<(), String> {
    let Verdict::Show { note, route } = verdict else {
        return Err(format!("expected show, got {}", describe(verdict)));
    };
    for (key, want) in fields.into_iter().flatten() {
        let got = match key.as_str() {
            "route" => route.map(|r| r.as_str().to_owned()),
            "title" => Some(note.title.clone()),
            "message" => Some(note.message.clone()),
            "priority" => Some(note.priority.as_str().to_owned()),
            "type" => Some(note.kind.as_str().to_owned()),
            other => note
                .extra
                .get(other)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
        };
        let want_text = want
            .as_str()
            .map_or_else(|| want.to_string(), str::to_owned);
        if got.as_deref() != Some(want_text.as_str()) {
            return Err(format!(
                "expected {key} = {want_text:?}, got {}",
                got.map_or("nothing".into(), |g| format!("{g:?}"))
            ));
        }
    }
    Ok(())
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Show { note, route } => format!(
            "show (title {:?}, priority {}, route {})",
            note.title,
            note.priority.as_str(),
            route.map_or("default", |r| r.as_str())
        ),
        Verdict::Drop { rule } => format!("drop by rule `{rule}`"),
        Verdict::Answer { rule, answer } => format!("answer {} by rule `{rule}`", answer.as_str()),
    }
}
