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
    let (la, lb) = (a.stderr_lines(), b.stderr_lines());
    a.logs.extend(la);
    b.logs.extend(lb);
    assert!(
        !shown_titles(&b).contains(&"question for one".to_owned()),
        "taken over from a live agent: {:#?}\n{:#?}",
        b.logs,
        a.logs
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

#[test]
fn chaos_every_entry_is_shown_exactly_once_through_redis_and_agent_crashes() {
    const COUNT: usize = 2000;
    let redis = std::sync::Arc::new(std::sync::Mutex::new(Redis::start_durable()));
    let url = redis.lock().unwrap().url();
    let mut agent = Agent::spawn(
        &redis.lock().unwrap(),
        &stream_config("ws", "start = \"all\""),
    );
    agent.expect_log("reading stream");

    // A publisher that retries every XADD until Redis confirms it, as a careful one would: an XADD
    // whose reply was lost in a crash is sent again, so Redis may hold the same id twice.
    let publisher = std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut retries = 0;
        for i in 0..COUNT {
            let payload = note(&format!("m{i}"), json!({"id": format!("m{i}")}));
            loop {
                let sent: redis::RedisResult<String> = client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut c| {
                        redis::cmd("XADD")
                            .arg("notes")
                            .arg("*")
                            .arg("payload")
                            .arg(&payload)
                            .query(&mut c)
                    });
                if sent.is_ok() {
                    break;
                }
                retries += 1;
                std::thread::sleep(Duration::from_millis(20)); // waiting out the outage
            }
            std::thread::sleep(Duration::from_millis(2)); // a steady rate
        }
        retries
    });

    // The chaos schedule: Redis killed three times, the agent twice, all with SIGKILL.
    let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
    let kill_redis = || {
        let mut r = redis.lock().unwrap();
        r.kill();
        pause(300);
        r.start_again();
    };
    pause(600);
    kill_redis();
    pause(600);
    agent.crash_and_restart();
    pause(600);
    kill_redis();
    pause(600);
    agent.crash_and_restart();
    pause(600);
    kill_redis();
    let retries = publisher.join().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut titles = shown_titles(&agent);
    while titles
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
        < COUNT
    {
        if Instant::now() > deadline {
            let seen: std::collections::HashSet<&String> = titles.iter().collect();
            let missing: Vec<String> = (0..COUNT)
                .map(|i| format!("m{i}"))
                .filter(|t| !seen.contains(t))
                .collect();
            let about: Vec<&String> = agent
                .logs
                .iter()
                .filter(|l| missing.iter().any(|m| l.contains(m.as_str())))
                .collect();
            panic!(
                "{} of {COUNT} never shown: {missing:?}\nlogs about them: {about:#?}",
                missing.len()
            );
        }
        agent.catch_up();
        titles = shown_titles(&agent);
        pause(50);
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &titles {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    // A SIGKILL can land between showing a notification and recording it as shown: that one
    // notification is shown again after the restart. Nothing is ever lost, and a Redis crash
    // repeats nothing; so at most one repeat per agent crash.
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.iter().all(|(_, n)| **n == 2) && twice.len() <= 2,
        "shown more than once: {twice:?}"
    );
    assert_eq!(counts.len(), COUNT);
    wait_until_nothing_pending(&redis.lock().unwrap(), "herald:ws");
    let entries: i64 = redis::cmd("XLEN")
        .arg("notes")
        .query(&mut redis.lock().unwrap().conn())
        .unwrap();
    eprintln!(
        "chaos: {COUNT} notifications, {entries} stream entries ({} duplicates from {retries} publisher \
         retries), 3 Redis and 2 agent SIGKILLs: none lost, {} shown twice, nothing pending",
        entries as usize - COUNT,
        twice.len()
    );
}
