//! Engine tests: the pipeline, every `herald.*` function, and sandbox escapes.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::*;
use crate::config::OnError;
use crate::message::{Answer, Kind, Notification, Priority};

fn config(on_error: OnError) -> EngineConfig {
    EngineConfig {
        on_error,
        budget: Duration::from_millis(50),
        memory_limit: 32 << 20,
        publish_allow: crate::config::globs_for(&["herald:*".to_owned()]).unwrap(),
        tz: jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap(),
        host: HostInfo {
            name: "ws-1".into(),
            os: "linux".into(),
            groups: vec!["dev".into()],
        },
    }
}

/// An engine with the given rule sources, as files `10.luau`, `20.luau`, … in a temp pack.
fn engine_with(on_error: OnError, rules: &[&str]) -> (Engine, tempfile::TempDir) {
    engine_from(config(on_error), rules)
}

fn engine_from(config: EngineConfig, rules: &[&str]) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (i, src) in rules.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{}.luau", (i + 1) * 10)), src).unwrap();
    }
    let files = rule_files(&[dir.path().to_owned()]).unwrap();
    let engine = Engine::load(config, &files).unwrap_or_else(|e| panic!("{e:?}"));
    (engine, dir)
}

fn engine(rules: &[&str]) -> (Engine, tempfile::TempDir) {
    engine_with(OnError::Pass, rules)
}

fn note(title: &str) -> Notification {
    Notification {
        id: "id-1".into(),
        title: title.into(),
        message: "body".into(),
        kind: Kind::Simple,
        reply_channel: None,
        priority: Priority::Normal,
        expires_at: None,
        extra: serde_json::Map::new(),
        signed_by: None,
    }
}

fn shown(p: &Processed) -> &Notification {
    match &p.verdict {
        Verdict::Show { note, .. } => note,
        other => panic!("expected Show, got {other:?} (failures {:?})", p.failures),
    }
}

/// Runs `expr` (a Lua expression) inside a rule and returns its value as JSON.
fn eval(engine_rules: &mut Engine, channel: &str) -> serde_json::Value {
    let p = engine_rules.process(channel, &note("t"), false);
    shown(&p)
        .extra
        .get("out")
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn probe(expr: &str) -> String {
    format!("return {{ on_message = function(msg, ctx) msg.out = {expr}; return msg end }}")
}

#[test]
fn rules_run_in_order_and_rewrite() {
    let (mut e, _d) = engine(&[
        r#"return { name = "a", on_message = function(msg) msg.title = msg.title .. "+a"; return msg end }"#,
        r#"return { name = "b", on_message = function(msg) msg.title = msg.title .. "+b"; msg.priority = "high"; return msg end }"#,
    ]);
    assert_eq!(e.rule_names(), ["a", "b"]);
    let p = e.process("c", &note("t"), false);
    assert_eq!(shown(&p).title, "t+a+b");
    assert_eq!(shown(&p).priority, Priority::High);
}

#[test]
fn nil_or_false_drops_and_later_rules_do_not_run() {
    let (mut e, _d) = engine(&[
        r#"return { name = "dropper", on_message = function(msg) if msg.title == "x" then return nil end return msg end }"#,
        r#"return { name = "boom", on_message = function(msg) error("must not run") end }"#,
    ]);
    let p = e.process("c", &note("x"), false);
    assert_eq!(
        p.verdict,
        Verdict::Drop {
            rule: "dropper".into()
        }
    );
    assert!(p.failures.is_empty());
}

#[test]
fn channels_filter_which_rules_see_a_message() {
    let (mut e, _d) = engine(&[
        r#"return { channels = {"builds:*"}, on_message = function(msg) return false end }"#,
    ]);
    assert!(matches!(
        e.process("builds:ci", &note("t"), false).verdict,
        Verdict::Drop { .. }
    ));
    assert!(matches!(
        e.process("alerts", &note("t"), false).verdict,
        Verdict::Show { .. }
    ));
}

#[test]
fn msg_has_every_field_extra_fields_and_the_channel() {
    let (mut e, _d) = engine(&[&probe(
        "msg.channel .. '|' .. msg.type .. '|' .. msg.priority .. '|' .. msg.id .. '|' .. msg.team",
    )]);
    let mut n = note("t");
    n.extra.insert("team".into(), "db".into());
    let p = e.process("alerts:db", &n, false);
    assert_eq!(shown(&p).extra["out"], "alerts:db|Simple|normal|id-1|db");
}

#[test]
fn answer_stops_the_rules_and_only_offers_the_messages_buttons() {
    let (mut e, _d) = engine(&[
        r#"return { name = "auto", on_message = function(msg, ctx) ctx.answer("OK") end }"#,
    ]);
    let mut q = note("q");
    q.kind = Kind::OkCancel;
    assert_eq!(
        e.process("c", &q, false).verdict,
        Verdict::Answer {
            rule: "auto".into(),
            answer: Answer::Ok
        }
    );
    let p = e.process("c", &note("simple"), false);
    assert_eq!(p.failures.len(), 1);
    assert!(
        p.failures[0]
            .message
            .contains("can be answered only \"Dismissed\""),
        "{:?}",
        p.failures
    );
}

#[test]
fn notify_and_publish_are_collected_and_publish_obeys_the_allow_list() {
    let (mut e, _d) = engine(&[r#"return { name = "fx", on_message = function(msg, ctx)
        ctx.notify{ title = "summary", message = "3 held", priority = "low" }
        ctx.publish("herald:audit", { seen = msg.title })
        return msg
    end }"#]);
    let p = e.process("c", &note("t"), false);
    assert_eq!(p.effects.notices[0].title, "summary");
    assert_eq!(p.effects.notices[0].priority, Priority::Low);
    assert_eq!(p.effects.publishes[0].channel, "herald:audit");
    assert_eq!(p.effects.publishes[0].payload, r#"{"seen":"t"}"#);

    let (mut e, _d) = engine(&[
        r#"return { name = "bad", on_message = function(msg, ctx) ctx.publish("notifications", {}) return msg end }"#,
    ]);
    let p = e.process("c", &note("t"), false);
    assert!(
        p.failures[0]
            .message
            .contains("not in [rules] publish_allow"),
        "{:?}",
        p.failures
    );
    assert!(p.effects.publishes.is_empty());
}

#[test]
fn state_in_upvalues_survives_between_messages() {
    let (mut e, _d) = engine(&[r#"local n = 0
        return { on_message = function(msg) n += 1; msg.out = n; return msg end }"#]);
    e.process("c", &note("t"), false);
    assert_eq!(eval(&mut e, "c"), 2);
}

#[test]
fn seen_and_rate_follow_the_test_clock() {
    let (mut e, _d) = engine(&[&probe(
        "{ herald.seen(msg.title, 600), herald.rate('k', 2, 60) }",
    )]);
    let t0: Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
    e.set_time(Some(t0));
    assert_eq!(eval(&mut e, "c"), serde_json::json!([false, true]));
    assert_eq!(eval(&mut e, "c"), serde_json::json!([true, true]));
    assert_eq!(eval(&mut e, "c"), serde_json::json!([true, false]));
    e.set_time(Some(t0 + jiff::SignedDuration::from_secs(600)));
    assert_eq!(eval(&mut e, "c"), serde_json::json!([false, true]));
}

#[test]
fn time_functions_use_the_configured_zone_across_dst() {
    let (mut e, _d) = engine(&[&probe(
        "{ herald.now(), herald.localtime().hour, herald.localtime().wday, herald.in_window('22:00-07:00') }",
    )]);
    // 2026-03-29 01:30 UTC is 03:30 CEST, just after the spring-forward gap.
    e.set_time(Some("2026-03-29T01:30:00Z".parse().unwrap()));
    let v = eval(&mut e, "c");
    assert_eq!(v[0], 1_774_747_800.0);
    assert_eq!(v[1], 3);
    assert_eq!(v[2], 1, "Sunday is 1");
    assert_eq!(v[3], true);
    // 2026-10-25 01:30 UTC is 02:30 CET, after falling back.
    e.set_time(Some("2026-10-25T01:30:00Z".parse().unwrap()));
    assert_eq!(eval(&mut e, "c")[1], 2);
    e.set_time(Some("2026-12-04T12:00:00Z".parse().unwrap()));
    assert_eq!(eval(&mut e, "c")[3], false);
}

#[test]
fn in_window_with_weekdays() {
    let (mut e, _d) = engine(&[&probe(
        "herald.in_window('22:00-07:00', { weekdays = {'fri'} })",
    )]);
    e.set_time(Some("2026-12-05T05:00:00+01:00".parse().unwrap())); // Saturday early: Friday night
    assert_eq!(eval(&mut e, "c"), true);
    e.set_time(Some("2026-12-06T05:00:00+01:00".parse().unwrap())); // Sunday early: Saturday night
    assert_eq!(eval(&mut e, "c"), false);
}

#[test]
fn regex_json_host_and_log() {
    let (mut e, _d) = engine(&[&probe(
        "{ herald.regex('disk (\\\\d+)%', 'disk 91% full'), herald.regex('^x', 'abc') == nil, \
          herald.json.decode(herald.json.encode({a = 1})).a, herald.host.name, herald.host.groups[1], herald.log.info('hello', 1) == nil }",
    )]);
    assert_eq!(
        eval(&mut e, "c"),
        serde_json::json!(["91", true, 1, "ws-1", "dev", true])
    );
}

#[test]
fn a_failing_rule_is_reported_with_file_and_line_and_passes_by_default() {
    let (mut e, _d) = engine(&[
        "return { name = 'bad', on_message = function(msg)\n  msg.title = 'half-changed'\n  error('kaput')\nend }",
        r#"return { name = "next", on_message = function(msg) msg.after = true; return msg end }"#,
    ]);
    let p = e.process("c", &note("t"), false);
    assert_eq!(p.failures.len(), 1);
    let f = &p.failures[0];
    assert_eq!(f.rule, "bad");
    assert!(
        f.message.contains("10.luau:3:") && f.message.contains("kaput"),
        "{}",
        f.message
    );
    let n = shown(&p);
    assert_eq!(n.title, "t", "the failed rule's changes are undone");
    assert_eq!(n.extra["after"], true, "later rules still run");
}

#[test]
fn on_error_drop_drops_the_message() {
    let (mut e, _d) = engine_with(
        OnError::Drop,
        &[r#"return { name = "bad", on_message = function(msg) error("x") end }"#],
    );
    assert_eq!(
        e.process("c", &note("t"), false).verdict,
        Verdict::Drop { rule: "bad".into() }
    );
}

#[test]
fn bad_rule_files_are_all_reported_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.luau"), "return {").unwrap();
    std::fs::write(dir.path().join("b.luau"), "return 5").unwrap();
    std::fs::write(
        dir.path().join("c.luau"),
        "return { on_mesage = function() end }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("d.lua"),
        "return { on_message = function(m) return m end }",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
    let files = rule_files(&[dir.path().to_owned()]).unwrap();
    assert_eq!(files.len(), 4);
    let errors = Engine::load(config(OnError::Pass), &files).err().unwrap();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].to_string().contains("a.luau") && errors[0].message.contains(":1:"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .message
            .contains("must return a table, not integer")
            || errors[1].message.contains("not number"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].message.contains("unknown key `on_mesage`"),
        "{}",
        errors[2]
    );
}

fn assert_contained(src: &str, expect: &str) {
    assert_contained_under(config(OnError::Pass), src, expect);
}

fn assert_contained_under(config: EngineConfig, src: &str, expect: &str) {
    let (mut e, _d) = engine_from(
        config,
        &[
            src,
            r#"return { name = "after", on_message = function(msg) msg.after = true; return msg end }"#,
        ],
    );
    let p = e.process("c", &note("t"), false);
    assert_eq!(p.failures.len(), 1, "{src}: {:?}", p.failures);
    assert!(
        p.failures[0].message.contains(expect),
        "{src}: {}",
        p.failures[0].message
    );
    // The next message is processed normally.
    let p = e.process("c", &note("next"), false);
    let n = shown(&p);
    assert_eq!(
        n.extra.get("after"),
        Some(&serde_json::Value::Bool(true)),
        "{src}"
    );
}

fn escape(body: &str) -> String {
    // Misbehaves on the first message only, so the test can see the next one handled normally.
    format!(
        "return {{ name = 'escape', on_message = function(msg)\nif msg.title == 'next' then return msg end\n{body}\nreturn msg end }}"
    )
}

#[test]
fn sandbox_escapes_fail_safely() {
    let cases = [
        (
            "os.execute('touch /tmp/pwned')",
            ":3: attempt to call a nil value",
        ),
        (
            "io.open('/etc/passwd')",
            ":3: attempt to index nil with 'open'",
        ),
        ("require('x')", ":3: attempt to call a nil value"),
        (
            "local f = load(string.dump(print))",
            ":3: attempt to call a nil value",
        ),
        (
            "loadstring('return 1')()",
            ":3: attempt to call a nil value",
        ),
        ("setmetatable(_G, {})", "attempt to modify a readonly table"),
        (
            "getmetatable('').__index = {}",
            ":3: attempt to modify a readonly table",
        ),
        (
            "string.upper = nil",
            ":3: attempt to modify a readonly table",
        ),
        ("getfenv(1).x = 1", ":3: attempt to call a nil value"),
        (
            "debug.traceback()",
            ":3: attempt to index nil with 'traceback'",
        ),
        ("x = 1", ":3: attempt to modify a readonly table"),
    ];
    for (body, expect) in cases {
        assert_contained(&escape(body), expect);
    }
}

#[test]
fn a_memory_bomb_hits_the_vm_limit() {
    // A generous time budget, so that on a loaded machine memory, not time, is what stops them.
    let roomy = || EngineConfig {
        budget: Duration::from_secs(5),
        ..config(OnError::Pass)
    };
    for bomb in [
        "local s = string.rep('x', 2^30)",
        "local t = {} for i = 1, 100 do t[i] = string.rep('y', 1e7) .. i end",
    ] {
        assert_contained_under(roomy(), &escape(bomb), "ran out of memory");
    }
}

#[test]
fn an_endless_loop_is_stopped_within_the_budget_even_inside_pcall() {
    for body in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "for i = 1, 100 do pcall(function() while true do end end) end while true do end",
    ] {
        let src = escape(body);
        let started = Instant::now();
        assert_contained(&src, "time budget");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{body}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn on_tick_runs_and_collects_effects() {
    let (mut e, _d) = engine(&[r#"local held = 0
        return { name = "digest",
          on_message = function(msg) held += 1; return nil end,
          on_tick = function(ctx) if held > 0 then ctx.notify{ title = held .. " held" }; held = 0 end end }"#]);
    e.process("c", &note("a"), false);
    e.process("c", &note("b"), false);
    let t = e.tick();
    assert_eq!(t.effects.notices.len(), 1);
    assert_eq!(t.effects.notices[0].title, "2 held");
    assert!(e.tick().effects.notices.is_empty());
}

#[test]
fn trace_names_each_rules_step() {
    let (mut e, _d) = engine(&[
        r#"return { name = "noop", on_message = function(msg) return msg end }"#,
        r#"return { name = "skip", channels = {"other"}, on_message = function(msg) return msg end }"#,
        r#"return { name = "edit", on_message = function(msg) msg.title = "T"; msg.route = "silent"; return msg end }"#,
    ]);
    let p = e.process("c", &note("t"), true);
    assert_eq!(
        p.trace,
        vec![
            ("noop".to_owned(), Step::Passed),
            ("skip".to_owned(), Step::Skipped),
            (
                "edit".to_owned(),
                Step::Changed(vec!["route".into(), "title".into()])
            ),
        ]
    );
    assert!(matches!(
        p.verdict,
        Verdict::Show {
            route: Some(Route::Silent),
            ..
        }
    ));
}

#[test]
fn a_rule_cannot_spoil_the_message_shape() {
    let (mut e, _d) = engine(&[
        r#"return { name = "typo", on_message = function(msg) msg.priority = "urgent"; return msg end }"#,
    ]);
    let p = e.process("c", &note("t"), false);
    assert!(
        p.failures[0]
            .message
            .contains("msg.priority: `urgent` is not a priority"),
        "{:?}",
        p.failures
    );
    assert_eq!(shown(&p).priority, Priority::Normal);
}

const COUNTER: &str = r#"local n = 0
return { name = "counter", on_message = function(msg) n += 1; msg.count = n; msg.dup = herald.seen("k", 600); return msg end }"#;

fn count_and_dup(e: &mut Engine) -> (serde_json::Value, serde_json::Value) {
    let p = e.process("c", &note("t"), false);
    let n = shown(&p);
    (n.extra["count"].clone(), n.extra["dup"].clone())
}

#[test]
fn reload_keeps_the_state_of_unchanged_rules_and_resets_changed_ones() {
    let (mut e, dir) = engine(&[
        COUNTER,
        r#"return { name = "other", on_message = function(msg) return msg end }"#,
    ]);
    let files = || rule_files(&[dir.path().to_owned()]).unwrap();
    count_and_dup(&mut e);
    assert_eq!(count_and_dup(&mut e), (2.into(), true.into()));

    // Only the other rule changes: the counter's upvalue and its `seen` memory survive.
    std::fs::write(
        dir.path().join("20.luau"),
        r#"return { name = "other", on_message = function(msg) msg.v = 2; return msg end }"#,
    )
    .unwrap();
    let s = e.reload(config(OnError::Pass), &files()).unwrap();
    assert_eq!(
        (s.changed.clone(), s.unchanged),
        (vec!["other".to_owned()], 1)
    );
    assert_eq!(count_and_dup(&mut e), (3.into(), true.into()));

    // The counter's file changes: its state starts afresh.
    std::fs::write(dir.path().join("10.luau"), format!("{COUNTER}\n-- edited")).unwrap();
    let s = e.reload(config(OnError::Pass), &files()).unwrap();
    assert_eq!(s.changed, vec!["counter".to_owned()]);
    assert_eq!(count_and_dup(&mut e), (1.into(), false.into()));
}

#[test]
fn a_failed_reload_changes_nothing() {
    let (mut e, dir) = engine(&[COUNTER]);
    count_and_dup(&mut e);
    std::fs::write(dir.path().join("10.luau"), "return {").unwrap();
    std::fs::write(
        dir.path().join("20.luau"),
        r#"return { name = "new", on_message = function(msg) return nil end }"#,
    )
    .unwrap();
    let errors = e
        .reload(
            config(OnError::Pass),
            &rule_files(&[dir.path().to_owned()]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("10.luau:1"), "{}", errors[0]);
    assert_eq!(e.rule_names(), ["counter"]);
    assert_eq!(count_and_dup(&mut e), (2.into(), true.into()));
}

#[test]
fn reload_reports_added_and_removed_rules() {
    let (mut e, dir) = engine(&[COUNTER]);
    std::fs::remove_file(dir.path().join("10.luau")).unwrap();
    std::fs::write(
        dir.path().join("30.luau"),
        r#"return { name = "fresh", on_message = function(msg) return msg end }"#,
    )
    .unwrap();
    let s = e
        .reload(
            config(OnError::Pass),
            &rule_files(&[dir.path().to_owned()]).unwrap(),
        )
        .unwrap();
    assert_eq!(
        (s.added, s.removed),
        (vec!["fresh".to_owned()], vec!["counter".to_owned()])
    );
}

#[test]
fn herald_functions_know_the_calling_rule_also_after_a_failure_and_outside_rules() {
    let (mut e, _d) = engine(&[
        r#"return { name = "a", on_message = function(msg) msg.a = herald.seen("k", 60); error("a fails") end }"#,
        r#"return { name = "b", on_message = function(msg) msg.b = herald.seen("k", 60); return msg end }"#,
        r#"return { name = "c", on_message = function(msg) msg.c = herald.seen("k", 60); return msg end }"#,
    ]);
    let first = shown(&e.process("c", &note("t"), false)).clone();
    assert_eq!(first.extra["b"], false, "b's memory is its own, not a's");
    assert_eq!(first.extra["c"], false, "c's memory is its own, not b's");
    let second = shown(&e.process("c", &note("t"), false)).clone();
    assert_eq!(
        (second.extra["b"].clone(), second.extra["c"].clone()),
        (true.into(), true.into())
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("top.luau"), "herald.seen('x', 1) return {}").unwrap();
    let err = Engine::load(
        config(OnError::Pass),
        &rule_files(&[dir.path().to_owned()]).unwrap(),
    )
    .err()
    .expect("a top-level herald call fails the load");
    assert!(
        err[0].message.contains("only be used while a rule runs"),
        "{err:?}"
    );
}

#[test]
fn a_rule_that_returns_a_table_with_a_metatable_fails_and_cannot_disable_later_rules() {
    let (mut e, _d) = engine(&[
        r#"return { name = "lock", on_message = function(msg) msg.title = "locked"; return setmetatable(msg, { __metatable = false }) end }"#,
        r#"return { name = "filter", on_message = function(msg) msg.filtered = true; return msg end }"#,
    ]);
    let p = e.process("c", &note("t"), false);
    assert_eq!(p.failures.len(), 1, "{:?}", p.failures);
    assert_eq!(p.failures[0].rule, "lock");
    assert!(
        p.failures[0].message.contains("a table with a metatable"),
        "{:?}",
        p.failures
    );
    let n = shown(&p);
    assert_eq!(n.title, "t", "the failed rule's changes are undone");
    assert_eq!(n.extra["filtered"], true, "the next rule still ran");
}

#[test]
fn a_rule_that_cuts_a_character_in_half_gets_a_replacement_character_not_an_error() {
    let (mut e, _d) = engine(&[
        r#"return { on_message = function(msg) msg.title = msg.title:sub(1, 2); msg.short = msg.title; msg.route = "toast"; return msg end }"#,
    ]);
    let p = e.process("c", &note("héllo"), false);
    assert!(p.failures.is_empty(), "{:?}", p.failures);
    let Verdict::Show { note, route } = &p.verdict else {
        panic!("{:?}", p.verdict)
    };
    assert_eq!(note.title, "h\u{FFFD}");
    assert_eq!(note.extra["short"], "h\u{FFFD}", "extra fields too");
    assert_eq!(
        *route,
        Some(Route::Toast),
        "the rule's other changes are kept"
    );
}
