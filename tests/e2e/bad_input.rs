//! Bad payloads are logged with a reason, counted, and never stop the next good message.

use serde_json::json;

use crate::util::{Agent, Redis, config, note};

#[test]
fn each_bad_payload_is_rejected_with_a_reason_and_the_next_good_one_is_shown() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    let big = note(&"x".repeat(64 * 1024), json!({}));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "payload is not JSON"),
        (
            json!({"message": "no title"}).to_string().into_bytes(),
            "missing required field `title`",
        ),
        (
            json!({"title": "t", "message": "m", "type": 5})
                .to_string()
                .into_bytes(),
            "field `type`: invalid type",
        ),
        (big.into_bytes(), "over the 65536-byte limit"),
        (
            b"{\"title\":\"\xff\xfe\",\"message\":\"m\"}".to_vec(),
            "not valid UTF-8",
        ),
    ];
    for (i, (payload, reason)) in cases.into_iter().enumerate() {
        redis.publish("n", payload);
        let line = agent.expect_log("rejected payload");
        assert!(line.contains(reason), "expected {reason:?} in {line}");
        assert!(line.contains("channel=n"), "{line}");
        assert!(
            line.contains(&format!("invalid={}", i + 1)),
            "counted: {line}"
        );
        let title = format!("good {i}");
        redis.publish("n", note(&title, json!({})));
        agent.expect_shown(&title);
    }
    assert_eq!(
        agent.seen.len(),
        5,
        "only the good ones were shown: {:#?}",
        agent.seen
    );
}

#[test]
fn a_payload_exactly_at_the_limit_is_accepted() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    let mut payload = note("edge", json!({"pad": ""}));
    let pad = 64 * 1024 - payload.len();
    payload = note("edge", json!({"pad": "p".repeat(pad)}));
    assert_eq!(payload.len(), 64 * 1024);
    redis.publish("n", payload);
    agent.expect_shown("edge");
}
