//! Rules end to end: through Redis, the real binary, stdout and the reply channel.

use serde_json::json;

use crate::util::{Agent, Redis, config, note, publish_flood};

/// An agent on channel `n` with the given rule files (name, source) in one pack.
fn agent_with_rules(
    redis: &Redis,
    rules: &[(&str, &str)],
    extra: &str,
) -> (Agent, tempfile::TempDir) {
    let pack = tempfile::tempdir().unwrap();
    for (name, src) in rules {
        std::fs::write(pack.path().join(name), src).unwrap();
    }
    let mut cfg = config("ws-r", &[r#"channel = "n""#]);
    cfg.push_str(&format!("[rules]\npacks = [{:?}]\n{extra}\n", pack.path()));
    (Agent::start(redis, &cfg), pack)
}

#[test]
fn rules_drop_rewrite_and_answer_through_redis() {
    let redis = Redis::start();
    let (mut agent, _pack) = agent_with_rules(
        &redis,
        &[
            (
                "10-drop.luau",
                r#"return { name = "no-spam", on_message = function(msg) if msg.title:find("spam") then return nil end return msg end }"#,
            ),
            (
                "20-answer.luau",
                r#"return { name = "auto-ok", on_message = function(msg, ctx) if msg.auto then ctx.answer("OK") end return msg end }"#,
            ),
            (
                "30-rewrite.luau",
                r#"return { name = "tag", on_message = function(msg) msg.title = "[" .. msg.channel .. "] " .. msg.title; msg.priority = "high"; return msg end }"#,
            ),
        ],
        "",
    );
    let mut replies = redis.subscribe("replies:r");
    redis.publish("n", note("buy spam now", json!({})));
    redis.publish(
        "n",
        note(
            "restart?",
            json!({"id": "auto-1", "type": "OKCancel", "auto": true, "reply_channel": "replies:r"}),
        ),
    );
    // Reserved fields in a payload are removed: a publisher cannot fake the channel or silence itself.
    redis.publish(
        "n",
        note(
            "hello",
            json!({"channel": "spoofed", "route": "silent", "signed_by": "ops"}),
        ),
    );

    let shown = agent.expect_shown("[n] hello");
    assert_eq!(shown["priority"], "high");
    // Messages are handled in order, so the rule's answer to the second was printed before the third.
    let answered = agent
        .seen
        .iter()
        .find(|l| l.contains(r#""event":"answered""#))
        .expect("answered line");
    let answered: serde_json::Value = serde_json::from_str(answered).unwrap();
    assert_eq!(
        answered,
        json!({"event": "answered", "id": "auto-1", "response": "OK", "answered_by": "auto-ok"})
    );
    let reply = replies.next_json();
    assert_eq!(
        (reply["response"].as_str(), reply["answered_by"].as_str()),
        (Some("OK"), Some("auto-ok"))
    );
    assert_eq!(reply["original_title"], "restart?");
    assert!(
        !agent
            .seen
            .iter()
            .any(|l| l.contains("spam") || l.contains(r#""title":"[n] restart?""#)),
        "{:#?}",
        agent.seen
    );
}

#[test]
fn a_runaway_rule_is_stopped_logged_and_the_agent_goes_on() {
    let redis = Redis::start();
    let (mut agent, _pack) = agent_with_rules(
        &redis,
        &[(
            "loop.luau",
            r#"return { name = "runaway", on_message = function(msg) if msg.title == "loop" then while true do pcall(function() while true do end end) end end return msg end }"#,
        )],
        "budget_ms = 20",
    );
    redis.publish("n", note("loop", json!({})));
    let log = agent.expect_log("rule failed");
    assert!(
        log.contains("runaway") && log.contains("20 ms time budget") && log.contains("loop.luau"),
        "{log}"
    );
    // on_error = "pass": the message itself is still shown, and the next one too.
    agent.expect_shown("loop");
    redis.publish("n", note("after", json!({})));
    agent.expect_shown("after");
}

#[test]
fn rule_publish_and_notify_reach_redis_and_the_console() {
    let redis = Redis::start();
    let (mut agent, _pack) = agent_with_rules(
        &redis,
        &[(
            "fx.luau",
            r#"return { name = "fx", on_message = function(msg, ctx)
            ctx.publish("herald:audit", { title = msg.title, host = herald.host.name })
            ctx.notify({ title = "saw " .. msg.title })
            return nil
        end }"#,
        )],
        "",
    );
    let mut audit = redis.subscribe("herald:audit");
    redis.publish("n", note("x", json!({})));
    assert_eq!(audit.next_json(), json!({"title": "x", "host": "ws-r"}));
    let shown = agent.expect_shown("saw x");
    assert_eq!(shown["channel"], "rule:fx");
}

#[test]
fn a_rule_that_does_not_load_stops_the_start_with_file_and_line() {
    let redis = Redis::start();
    let pack = tempfile::tempdir().unwrap();
    std::fs::write(
        pack.path().join("bad.luau"),
        "return {\n  on_message = function(msg)\n    return msg +\n  end\n}\n",
    )
    .unwrap();
    let mut cfg = config("ws", &[r#"channel = "n""#]);
    cfg.push_str(&format!("[rules]\npacks = [{:?}]\n", pack.path()));
    let mut agent = Agent::spawn(&redis, &cfg);
    let status = agent.wait();
    assert_eq!(status.code(), Some(1));
    let logs = agent.logs.join("\n");
    assert!(
        logs.contains("rules not loaded") && logs.contains("bad.luau:4"),
        "{logs}"
    );
}

#[test]
fn memory_bombs_hit_the_vm_limit_and_rss_stays_bounded() {
    let redis = Redis::start();
    let (mut agent, _pack) = agent_with_rules(
        &redis,
        &[(
            "bomb.luau",
            r#"return { name = "bomb", on_message = function(msg)
            if msg.title == "bomb" then local t = {} for i = 1, 1000 do t[i] = string.rep("x", 1e6) .. i end end
            return msg
        end }"#,
        )],
        "memory_mb = 32\nbudget_ms = 1000",
    );
    for _ in 0..20 {
        redis.publish("n", note("bomb", json!({})));
        let log = agent.expect_log("rule failed");
        assert!(log.contains("ran out of memory"), "{log}");
    }
    redis.publish("n", note("calm", json!({})));
    agent.expect_shown("calm");
    let rss = agent.rss_bytes();
    assert!(
        rss < 160 << 20,
        "RSS after 20 memory bombs: {} MiB",
        rss >> 20
    );
}

/// A pack with one rule that keeps the CPU busy for `seconds` per message, then runs `then` (Luau).
fn busy_pack(seconds: f64, then: &str) -> tempfile::TempDir {
    let pack = tempfile::tempdir().unwrap();
    std::fs::write(
        pack.path().join("slow.luau"),
        format!(
            "return {{ on_message = function(msg)
               local t = os.clock()
               while os.clock() - t < {seconds} do end
               {then}
             end }}"
        ),
    )
    .unwrap();
    pack
}

#[test]
fn an_agent_that_falls_behind_drops_beyond_its_backlog_says_so_and_stays_connected() {
    let redis = Redis::start();
    // 0.2 ms of work per message: far slower than Redis can deliver a pipelined flood.
    let pack = busy_pack(
        0.0002,
        r#"if msg.channel == "flood" then return nil end return msg"#,
    );
    let cfg = config("ws-b", &[r#"channel = "flood""#, r#"channel = "calm""#])
        .replace("[presenter]", "max_backlog_mb = 1\n\n[presenter]")
        + &format!("[rules]\npacks = [{:?}]\n", pack.path());
    let mut agent = Agent::start(&redis, &cfg);
    const FLOOD: usize = 3000;
    let padding = "x".repeat(10_000); // 10 KB each: 1 MB of backlog holds about 100
    publish_flood(
        &mut redis.conn(),
        "flood",
        0..FLOOD,
        &json!({ "padding": padding }),
    );
    let notice = agent.expect_line("a falling-behind notice", |j| j["event"] == "notice");
    let text = notice["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("Herald fell behind: ")
            && text.ends_with(" dropped (pub/sub backlog full)"),
        "{text}"
    );
    redis.publish("calm", note("calm after the flood", json!({})));
    agent.expect_shown("calm after the flood");
    assert!(agent.terminate().success());
    assert!(
        !agent
            .logs
            .iter()
            .any(|l| l.contains("lost the Redis connection")),
        "the connection stayed up"
    );
    let summary = agent
        .logs
        .iter()
        .find(|l| l.contains("stopped"))
        .expect("summary");
    let counter = |name: &str| -> usize {
        let at = summary.find(&format!("{name}=")).unwrap() + name.len() + 1;
        summary[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (received, overflowed) = (counter("received"), counter("overflowed"));
    let noticed: usize = agent
        .seen
        .iter()
        .filter_map(|l| l.split("Herald fell behind: ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(overflowed > 0, "{summary}");
    assert_eq!(
        received + overflowed,
        FLOOD + 1,
        "every message is accounted for: {summary}"
    );
    assert_eq!(noticed, overflowed, "the user was told of every drop");
    eprintln!(
        "backlog: {FLOOD} × 10 KB published, {received} handled, {overflowed} dropped and reported"
    );
}

#[test]
fn an_agent_asked_to_stop_during_a_flood_stops_promptly() {
    let redis = Redis::start();
    let pack = busy_pack(0.001, "return nil");
    let cfg = config("ws-s", &[r#"channel = "flood""#])
        + &format!("[rules]\npacks = [{:?}]\n", pack.path());
    let mut agent = Agent::start(&redis, &cfg);
    // 20 s of rule work queued up (at 1 ms each): far more than the agent's channel holds.
    publish_flood(&mut redis.conn(), "flood", 0..20_000, &json!({}));
    let status = agent.terminate_within(std::time::Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "stopped within 10 s: {status:?}"
    );
}
