//! `herald publish`, alone and collecting answers from a fleet.

use std::process::Stdio;

use serde_json::json;

use crate::util::{Agent, Redis, config, herald};

#[test]
fn publish_wait_collects_replies_from_two_agents() {
    let redis = Redis::start();
    let mut a = Agent::start(&redis, &config("alpha", &[r#"channel = "fleet""#]));
    let mut b = Agent::start(&redis, &config("beta", &[r#"pattern = "fle*""#]));
    let dir = tempfile::tempdir().unwrap();
    let publisher = herald(dir.path())
        .args([
            "publish",
            "--url",
            &redis.url(),
            "--channel",
            "fleet",
            "--title",
            "Reboot?",
        ])
        .args([
            "--message",
            "tonight at 22:00",
            "--type",
            "OKCancel",
            "--wait",
            "20s",
            "--expect",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let shown = a.expect_shown("Reboot?");
    assert_eq!(b.expect_shown("Reboot?")["id"], shown["id"]);
    a.answer("ok");
    b.answer("cancel");
    let out = publisher.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut replies: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    replies.sort_by_key(|r| r["hostname"].as_str().unwrap().to_owned());
    assert_eq!(replies.len(), 2, "{stdout}");
    assert_eq!(
        (
            replies[0]["hostname"].as_str(),
            replies[0]["response"].as_str()
        ),
        (Some("alpha"), Some("OK"))
    );
    assert_eq!(
        (
            replies[1]["hostname"].as_str(),
            replies[1]["response"].as_str()
        ),
        (Some("beta"), Some("Cancel"))
    );
    assert!(replies.iter().all(|r| r["id"] == shown["id"]));
    assert!(
        stderr.contains("published") && stderr.contains("(2 subscribers)"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("2 replies: 1 OK, 1 Cancel"),
        "{stderr}"
    );
}

#[test]
fn publish_prints_the_id_and_sends_a_valid_notification() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path())
        .args([
            "publish",
            "--url",
            &redis.url(),
            "--channel",
            "n",
            "--title",
            "Hello",
            "--message",
            "world",
        ])
        .args(["--priority", "critical", "--id", "my-id"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "my-id");
    let shown = agent.expect_shown("Hello");
    assert_eq!(
        (shown["id"].as_str(), shown["priority"].as_str()),
        (Some("my-id"), Some("critical"))
    );
}

#[test]
fn publish_json_from_stdin_keeps_extra_fields_and_gets_an_id() {
    let redis = Redis::start();
    let mut sub = redis.subscribe("n");
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald(dir.path())
        .args([
            "publish",
            "--url",
            &redis.url(),
            "--channel",
            "n",
            "--json",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"title": "raw", "message": "m", "team": "db"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let sent = sub.next_json();
    assert_eq!(sent["team"], "db");
    assert!(sent["id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[test]
fn publish_refuses_a_document_agents_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"title": "no message"}"#).unwrap();
    let out = herald(dir.path())
        .args([
            "publish",
            "--url",
            "redis://127.0.0.1:1/",
            "--channel",
            "n",
            "--json",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("missing required field `message`"),
        "{stderr}"
    );
}
