//! Streams mode: at-least-once from Redis, exactly once on screen, receipts and tracking.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Agent, PATIENCE, Redis, herald, note};

fn stream_config(host: &str, extra: &str) -> String {
    format!(
        "[agent]\nhostname = \"{host}\"\n\n[presenter]\nkind = \"console\"\n\n[[subscribe]]\nstream = \"notes\"\n{extra}\n"
    )
}

fn start(redis: &Redis, host: &str, extra: &str) -> Agent {
    let mut agent = Agent::spawn(redis, &stream_config(host, extra));
    agent.expect_log("reading stream");
    agent
}

/// Titles of every `shown` line seen so far.
fn shown_titles(agent: &Agent) -> Vec<String> {
    agent
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["event"] == "shown")
        .map(|j| j["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls Redis until nothing is pending for `group`: acknowledgements are sent after the fact.
fn wait_until_nothing_pending(redis: &Redis, group: &str) {
    let deadline = Instant::now() + PATIENCE;
    while redis.pending("notes", group) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} entries still pending",
            redis.pending("notes", group)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agents_with_their_own_groups_each_show_every_entry() {
    let redis = Redis::start_durable();
    let mut a = start(&redis, "alpha", "");
    let mut b = start(&redis, "beta", "");
    for i in 0..3 {
        redis.xadd("notes", &note(&format!("n{i}"), json!({})));
    }
    for agent in [&mut a, &mut b] {
        agent.expect_shown("n2");
        assert_eq!(shown_titles(agent), ["n0", "n1", "n2"]);
    }
    wait_until_nothing_pending(&redis, "herald:alpha");
    wait_until_nothing_pending(&redis, "herald:beta");
}

#[test]
fn a_shared_group_splits_entries_and_takes_over_from_a_dead_agent() {
    let redis = Redis::start_durable();
    let shared = "group = \"shared:ops\"\nclaim_idle = \"1s\"";
    let mut a = start(&redis, "alpha", shared);
    redis.xadd(
        "notes",
        &note(
            "question for one",
            json!({"type": "OK", "reply_channel": "replies:s"}),
        ),
    );
    a.expect_shown("question for one");
    let mut b = start(&redis, "beta", shared);
    for i in 0..20 {
        redis.xadd("notes", &note(&format!("s{i}"), json!({})));
    }
    // Every entry exactly once across the group.
    let deadline = Instant::now() + PATIENCE;
    let mut all: Vec<String> = Vec::new();
    while all.iter().filter(|t| t.starts_with('s')).count() < 20 {
        assert!(Instant::now() < deadline, "not all shown: {all:?}");
        a.catch_up();
        b.catch_up();
        all = shown_titles(&a)
            .into_iter()
            .chain(shown_titles(&b))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &all {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "shown more than once: {counts:?}"
    );
    // alpha still holds the open question, refreshing it: beta must not take it over meanwhile.
    std::thread::sleep(Duration::from_secs(3)); // proving an absence needs a wait (3 × claim_idle)
    b.catch_up();
    assert!(
        !shown_titles(&b).contains(&"question for one".to_owned()),
        "taken over from a live agent"
    );
    // alpha dies with the question open: beta takes it over and asks.
    let mut replies = redis.subscribe("replies:s");
    drop(a);
    b.expect_shown("question for one");
    b.answer("ok");
    assert_eq!(replies.next_json()["hostname"], "beta");
    wait_until_nothing_pending(&redis, "ops");
}

#[test]
fn an_entry_that_expired_while_the_agent_was_away_is_answered_expired_never_shown() {
    let redis = Redis::start_durable();
    let mut replies = redis.subscribe("replies:e");
    redis.xadd("notes", &note("stale", json!({"type": "OKCancel", "reply_channel": "replies:e", "expires_at": "2026-01-01T00:00:00Z"})));
    redis.xadd("notes", &note("fresh", json!({})));
    let mut agent = start(&redis, "ws", "start = \"all\"");
    agent.expect_shown("fresh");
    let reply = replies.next_json();
    assert_eq!(
        (reply["original_title"].as_str(), reply["response"].as_str()),
        (Some("stale"), Some("Expired"))
    );
    assert_eq!(shown_titles(&agent), ["fresh"]);
    wait_until_nothing_pending(&redis, "herald:ws");
}

#[test]
fn an_unanswered_question_stays_pending_over_a_restart_and_is_asked_again() {
    let redis = Redis::start_durable();
    let mut agent = start(&redis, "ws", "");
    let mut replies = redis.subscribe("replies:p");
    redis.xadd(
        "notes",
        &note(
            "Reboot?",
            json!({"id": "q1", "type": "OK", "reply_channel": "replies:p"}),
        ),
    );
    agent.expect_shown("Reboot?");
    assert!(agent.terminate().success());
    assert_eq!(
        redis.pending("notes", "herald:ws"),
        1,
        "left pending, not answered"
    );
    agent.crash_and_restart();
    agent.expect_log("reading stream");
    agent.expect_shown("Reboot?");
    agent.answer("ok");
    let reply = replies.next_json();
    assert_eq!(
        (reply["id"].as_str(), reply["response"].as_str()),
        (Some("q1"), Some("OK"))
    );
    wait_until_nothing_pending(&redis, "herald:ws");
}

#[test]
fn a_retried_xadd_with_the_same_id_is_shown_once() {
    let redis = Redis::start_durable();
    let mut agent = start(&redis, "ws", "");
    redis.xadd("notes", &note("once", json!({"id": "same"})));
    redis.xadd("notes", &note("once", json!({"id": "same"})));
    redis.xadd("notes", &note("marker", json!({})));
    agent.expect_shown("marker");
    assert_eq!(shown_titles(&agent), ["once", "marker"]);
    wait_until_nothing_pending(&redis, "herald:ws");
}

#[test]
fn publish_track_shows_each_host_and_the_live_agent_that_never_got_it() {
    let redis = Redis::start_durable();
    let mut a = start(&redis, "alpha", "");
    let mut b = start(&redis, "beta", "");
    let mut c = Agent::spawn(
        &redis,
        &stream_config("gamma", "").replace("stream = \"notes\"", "stream = \"elsewhere\""),
    );
    c.expect_log("reading stream");
    let dir = tempfile::tempdir().unwrap();
    let publisher = herald(dir.path())
        .args([
            "publish",
            "--url",
            &redis.url(),
            "--stream",
            "notes",
            "--title",
            "Patch tonight?",
            "--message",
            "m",
        ])
        .args(["--type", "OK", "--wait", "20s", "--expect", "2", "--track"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    a.expect_shown("Patch tonight?");
    b.expect_shown("Patch tonight?");
    a.answer("ok");
    b.answer("dismiss");
    let out = publisher.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let row = |host: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("no row for {host}: {stdout}"))
            .to_owned()
    };
    assert!(
        row("alpha")
            .split_whitespace()
            .eq(["alpha", "yes", "yes", "OK"]),
        "{stdout}"
    );
    assert!(
        row("beta")
            .split_whitespace()
            .eq(["beta", "yes", "yes", "Dismissed"]),
        "{stdout}"
    );
    assert!(row("gamma").contains("never acknowledged"), "{stdout}");
    assert!(
        stderr.contains("alpha") && stderr.contains("delivered"),
        "{stderr}"
    );
}

#[test]
fn replay_prints_recent_history_and_agents_lists_who_is_live() {
    let redis = Redis::start_durable();
    let _a = start(&redis, "alpha", "");
    redis.xadd("notes", &note("old news", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path())
        .args([
            "replay",
            "--url",
            &redis.url(),
            "--stream",
            "notes",
            "--since",
            "1h",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(r#""title":"old news""#), "{stdout}");
    let out = herald(dir.path())
        .args(["agents", "--url", &redis.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains("stream:notes")),
        "{stdout}"
    );
}
