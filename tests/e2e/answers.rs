//! Questions and their answers: stdin, EOF, expiry, shutdown, and the JSON on the reply channel.

use serde_json::json;

use crate::util::{Agent, Redis, config, note};

fn agent(redis: &Redis, host: &str) -> Agent {
    Agent::start(redis, &config(host, &[r#"channel = "notifications""#]))
}

#[test]
fn an_okcancel_answered_cancel_on_stdin_sends_the_exact_response() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws-7");
    let mut replies = redis.subscribe("replies:ops");

    // The seed's examples: a Simple message (no reply) and then a question.
    redis.publish(
        "notifications",
        json!({"title": "Backup done", "message": "All good", "reply_channel": "replies:ops"})
            .to_string(),
    );
    redis.publish(
        "notifications",
        json!({"id": "q-1", "title": "Deploy now?", "message": "v2.3 to prod", "type": "OKCancel", "reply_channel": "replies:ops"}).to_string(),
    );
    agent.expect_shown("Backup done");
    let shown = agent.expect_shown("Deploy now?");
    assert_eq!(shown["type"], "OKCancel");
    agent.answer("  Cancel ");
    let answered = agent.expect_line("answered", |j| j["event"] == "answered");
    assert_eq!(
        answered,
        json!({"event": "answered", "id": "q-1", "response": "Cancel", "answered_by": "user"})
    );

    // The first message on the reply channel is the question's: the Simple one sent none.
    let reply = replies.next_json();
    let timestamp = reply["timestamp"].as_str().unwrap().to_owned();
    let when: jiff::Timestamp = timestamp.parse().expect("RFC 3339");
    assert!((jiff::Timestamp::now() - when).get_seconds().abs() < 60);
    assert_eq!(
        reply,
        json!({"hostname": "ws-7", "response": "Cancel", "original_title": "Deploy now?",
               "timestamp": timestamp, "id": "q-1", "answered_by": "user"})
    );
}

#[test]
fn questions_are_asked_one_at_a_time_in_order() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws");
    let mut replies = redis.subscribe("replies:x");
    for (id, kind) in [("a", "OK"), ("b", "OKCancel")] {
        redis.publish(
            "notifications",
            note(
                id,
                json!({"id": id, "type": kind, "reply_channel": "replies:x"}),
            ),
        );
    }
    agent.expect_shown("a");
    agent.answer("maybe"); // not an answer: ignored with a warning, the question stays open
    agent.expect_log("not an answer to this question");
    agent.answer("cancel"); // an OK dialog has no Cancel button
    agent.answer("ok");
    agent.expect_shown("b");
    agent.answer("OK");
    assert_eq!(replies.next_json()["id"], "a");
    let b = replies.next_json();
    assert_eq!(
        (b["id"].as_str(), b["response"].as_str()),
        (Some("b"), Some("OK"))
    );
    assert!(
        !agent
            .seen
            .iter()
            .any(|l| l.contains(r#""response":"Cancel""#))
    );
}

#[test]
fn when_stdin_is_closed_questions_are_undeliverable_never_cancelled() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws");
    let mut replies = redis.subscribe("replies:x");
    agent.close_stdin();
    redis.publish(
        "notifications",
        note(
            "q",
            json!({"id": "q", "type": "OKCancel", "reply_channel": "replies:x"}),
        ),
    );
    let reply = replies.next_json();
    assert_eq!(reply["response"], "Undeliverable");
    assert_eq!(reply["answered_by"], "herald");
    agent.expect_line("answered", |j| {
        j["event"] == "answered" && j["response"] == "Undeliverable"
    });
}

#[test]
fn an_expired_question_is_answered_expired_and_never_shown() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws");
    let mut replies = redis.subscribe("replies:x");
    redis.publish(
        "notifications",
        note("stale", json!({"id": "old", "type": "OK", "reply_channel": "replies:x", "expires_at": "2020-01-01T00:00:00Z"})),
    );
    let reply = replies.next_json();
    assert_eq!(
        (reply["id"].as_str(), reply["response"].as_str()),
        (Some("old"), Some("Expired"))
    );
    redis.publish("notifications", note("fresh", json!({})));
    agent.expect_shown("fresh");
    assert!(
        !agent
            .seen
            .iter()
            .any(|l| l.contains(r#""event":"shown""#) && l.contains("stale"))
    );
}

#[test]
fn a_question_left_open_expires_while_shown() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws");
    let mut replies = redis.subscribe("replies:x");
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    redis.publish(
        "notifications",
        note("hurry", json!({"id": "h", "type": "OK", "reply_channel": "replies:x", "expires_at": soon.to_string()})),
    );
    agent.expect_shown("hurry");
    let reply = replies.next_json();
    assert_eq!(reply["response"], "Expired");
    assert_eq!(reply["answered_by"], "herald");
}

#[test]
fn sigterm_dismisses_the_open_question_and_exits_zero() {
    let redis = Redis::start();
    let mut agent = agent(&redis, "ws");
    let mut replies = redis.subscribe("replies:x");
    for id in ["open", "queued"] {
        redis.publish(
            "notifications",
            note(
                id,
                json!({"id": id, "type": "OK", "reply_channel": "replies:x"}),
            ),
        );
    }
    // The agent handles messages in order: once this marker is shown, "queued" is waiting its turn.
    redis.publish("notifications", note("marker", json!({})));
    agent.expect_shown("marker");
    if !agent.seen.iter().any(|l| l.contains(r#""title":"open""#)) {
        agent.expect_shown("open");
    }
    assert!(agent.terminate().success());
    let first = replies.next_json();
    assert_eq!(
        (first["id"].as_str(), first["response"].as_str()),
        (Some("open"), Some("Dismissed"))
    );
    let second = replies.next_json();
    assert_eq!(
        (second["id"].as_str(), second["response"].as_str()),
        (Some("queued"), Some("Undeliverable")),
        "a question never shown is not reported as dismissed"
    );
}
