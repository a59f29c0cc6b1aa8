//! Hot reload: config and rule changes under a running agent, without losing a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Agent, Redis, Save, config, note, save};

#[test]
fn an_added_channel_is_subscribed_and_a_removed_one_unsubscribed() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "a""#]));

    let saved = Instant::now();
    agent.save_config(
        &config("ws", &[r#"channel = "a""#, r#"pattern = "b:*""#]),
        Save::Rename,
    );
    agent.expect_log("subscriptions changed");
    redis.publish("b:1", note("on b", json!({})));
    agent.expect_shown("on b");
    eprintln!(
        "save → first message on the new pattern shown: {:?}",
        saved.elapsed()
    );
    let reloaded = agent
        .logs
        .iter()
        .find(|l| l.contains("reloaded"))
        .expect("a reload line")
        .clone();
    assert!(
        reloaded.contains("generation=2") && reloaded.contains("channels_added=1"),
        "{reloaded}"
    );

    agent.save_config(&config("ws", &[r#"channel = "a""#]), Save::InPlace);
    let changed = agent.expect_log("subscriptions changed");
    assert!(changed.contains("b:*"), "{changed}");
    assert_eq!(
        redis.publish("b:1", note("gone", json!({}))),
        0,
        "nobody subscribed to b:* any more"
    );
    redis.publish("a", note("still here", json!({})));
    agent.expect_shown("still here");
    assert!(!agent.seen.iter().any(|l| l.contains("gone")));
}

#[test]
fn an_edited_rule_takes_effect_on_the_next_message() {
    let redis = Redis::start();
    let pack = tempfile::tempdir().unwrap();
    let rule = pack.path().join("filter.luau");
    std::fs::write(
        &rule,
        "return { on_message = function(msg) return msg end }",
    )
    .unwrap();
    let mut cfg = config("ws", &[r#"channel = "n""#]);
    cfg.push_str(&format!("[rules]\npacks = [{:?}]\n", pack.path()));
    let mut agent = Agent::start(&redis, &cfg);
    redis.publish("n", note("secret", json!({})));
    agent.expect_shown("secret");

    save(
        &rule,
        r#"return { on_message = function(msg) if msg.title == "secret" then return nil end return msg end }"#,
        Save::Rename,
    );
    let reloaded = agent.expect_reload(2);
    assert!(reloaded.contains("rules_changed=1"), "{reloaded}");
    redis.publish("n", note("secret", json!({"id": "second"})));
    redis.publish("n", note("visible", json!({})));
    agent.expect_shown("visible");
    assert!(
        !agent.seen.iter().any(|l| l.contains("second")),
        "{:#?}",
        agent.seen
    );
}

#[test]
fn broken_saves_keep_the_old_generation_report_once_each_and_a_fix_recovers() {
    let redis = Redis::start();
    let pack = tempfile::tempdir().unwrap();
    let rule = pack.path().join("tag.luau");
    std::fs::write(
        &rule,
        r#"return { on_message = function(msg) msg.title = "v1 " .. msg.title; return msg end }"#,
    )
    .unwrap();
    let good = format!(
        "{}[rules]\npacks = [{:?}]\n",
        config("ws", &[r#"channel = "n""#]),
        pack.path()
    );
    let mut agent = Agent::start(&redis, &good);

    // A config with a syntax error.
    agent.save_config(&good.replace("[rules]", "[rules\n"), Save::InPlace);
    let notice = agent.expect_line("config notice", |j| j["event"] == "notice");
    let text = notice["text"].as_str().unwrap();
    assert!(
        text.starts_with("Herald: config not reloaded:") && text.contains("herald.toml:"),
        "{text}"
    );
    redis.publish("n", note("a", json!({})));
    agent.expect_shown("v1 a");

    // A rule with a Lua syntax error (the config is fixed in the same breath).
    agent.save_config(&good, Save::Rename);
    agent.expect_reload(2);
    save(
        &rule,
        "return { on_message = function(msg) return msg +",
        Save::InPlace,
    );
    let notice = agent.expect_line("rules notice", |j| j["event"] == "notice");
    let text = notice["text"].as_str().unwrap();
    assert!(
        text.starts_with("Herald: rules not reloaded:") && text.contains("tag.luau:1"),
        "{text}"
    );
    redis.publish("n", note("b", json!({})));
    agent.expect_shown("v1 b");

    // Fixing the rule recovers.
    save(
        &rule,
        r#"return { on_message = function(msg) msg.title = "v2 " .. msg.title; return msg end }"#,
        Save::Rename,
    );
    agent.expect_reload(3);
    redis.publish("n", note("c", json!({})));
    agent.expect_shown("v2 c");
    let notices = agent
        .seen
        .iter()
        .filter(|l| l.contains(r#""event":"notice""#))
        .count();
    assert_eq!(notices, 2, "one notice per broken save: {:#?}", agent.seen);
    assert!(agent.terminate().success());
    assert!(
        agent.logs.iter().any(|l| l.contains("reload_failures=2")),
        "{:#?}",
        agent.logs
    );
}

#[test]
fn no_message_is_lost_on_an_unchanged_channel_during_fifty_reloads() {
    let redis = Arc::new(Redis::start());
    let base = config("ws", &[r#"channel = "steady""#]);
    let mut agent = Agent::start(&redis, &base);
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (redis, done) = (redis.clone(), done.clone());
        std::thread::spawn(move || {
            let mut conn = redis.conn();
            let mut sent = 0u32;
            while !done.load(Ordering::SeqCst) {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg("steady")
                    .arg(note(&format!("m{sent}"), json!({})))
                    .query(&mut conn)
                    .unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_millis(5)); // a steady rate, not a synchronisation
            }
            sent
        })
    };
    let mut latencies = Vec::new();
    for i in 0..50 {
        let extra = if i % 2 == 0 {
            r#"pattern = "x:*""#
        } else {
            r#"channel = "y""#
        };
        let saved = Instant::now();
        agent.save_config(
            &config("ws", &[r#"channel = "steady""#, extra]),
            if i % 2 == 0 {
                Save::Rename
            } else {
                Save::InPlace
            },
        );
        agent.expect_reload(i + 2);
        latencies.push(saved.elapsed());
    }
    done.store(true, Ordering::SeqCst);
    let sent = publisher.join().unwrap();
    redis.publish("steady", note("end", json!({})));
    agent.expect_shown("end");
    let shown: std::collections::HashSet<String> = agent
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["event"] == "shown")
        .map(|j| j["title"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<u32> = (0..sent)
        .filter(|i| !shown.contains(&format!("m{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {sent} messages lost: {missing:?}",
        missing.len()
    );
    latencies.sort();
    eprintln!(
        "50 reloads while {sent} messages flowed: save → reloaded median {:?}, worst {:?}",
        latencies[25], latencies[49]
    );
}

#[test]
fn in_place_and_rename_saves_both_reload_and_a_reload_does_not_trigger_itself() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    agent.save_config(
        &config("ws", &[r#"channel = "n""#, r#"channel = "m""#]),
        Save::InPlace,
    );
    agent.expect_reload(2);
    agent.save_config(&config("ws", &[r#"channel = "n""#]), Save::Rename);
    agent.expect_reload(3);
    // Proving that nothing more happens needs a wait: ten debounce periods.
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.terminate().success());
    let summary = agent
        .logs
        .iter()
        .find(|l| l.contains("stopped"))
        .expect("summary");
    assert!(summary.contains("reloads=2 "), "{summary}");
}

#[test]
fn sighup_reloads() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    std::process::Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .unwrap();
    agent.expect_reload(2);
}

#[test]
fn a_new_redis_url_moves_the_agent_and_its_replies() {
    let (one, two) = (Redis::start(), Redis::start());
    let with_url = |url: String| {
        format!(
            "{}[redis]\nurl = \"{url}\"\n",
            config("ws", &[r#"channel = "n""#])
        )
    };
    let mut agent = Agent::spawn_with_url(None, &with_url(one.url()));
    agent.expect_log("subscribed");
    agent.save_config(&with_url(two.url()), Save::Rename);
    agent.expect_log("Redis URL changed; moving");
    agent.expect_log("subscribed");
    assert_eq!(one.publish("n", note("old server", json!({}))), 0);
    let mut replies = two.subscribe("replies:m");
    two.publish(
        "n",
        note(
            "new server",
            json!({"type": "OK", "reply_channel": "replies:m"}),
        ),
    );
    agent.expect_shown("new server");
    agent.answer("ok");
    assert_eq!(replies.next_json()["response"], "OK");
}
