//! Receiving: channels, patterns, and what is not subscribed.

use serde_json::json;

use crate::util::{Agent, Redis, config, note};

#[test]
fn three_channels_and_a_pattern_receive_and_an_unsubscribed_channel_does_not() {
    let redis = Redis::start();
    let cfg = config(
        "ws1",
        &[
            r#"channel = "one""#,
            r#"channel = "two""#,
            r#"channel = "three""#,
            r#"pattern = "alerts:*""#,
        ],
    );
    let mut agent = Agent::start(&redis, &cfg);

    redis.publish("elsewhere", note("not for us", json!({})));
    for (channel, title) in [
        ("one", "t1"),
        ("two", "t2"),
        ("three", "t3"),
        ("alerts:db", "t4"),
    ] {
        redis.publish(channel, note(title, json!({"priority": "high"})));
        let shown = agent.expect_shown(title);
        assert_eq!(
            shown["channel"], channel,
            "the real channel, not the pattern"
        );
        assert_eq!(shown["priority"], "high");
        assert_eq!(shown["type"], "Simple");
        assert_eq!(shown["message"], format!("body of {title}"));
        assert!(
            shown["id"].as_str().is_some_and(|id| id.len() == 36),
            "a fresh UUID: {shown}"
        );
    }
    // Redis delivers in publish order, so the unsubscribed message would have come before t1.
    assert!(
        !agent.seen.iter().any(|l| l.contains("not for us")),
        "{:#?}",
        agent.seen
    );
}

#[test]
fn every_shown_line_has_every_key_and_keeps_the_publishers_id() {
    let redis = Redis::start();
    let mut agent = Agent::start(&redis, &config("ws1", &[r#"channel = "n""#]));
    redis.publish(
        "n",
        note("with id", json!({"id": "abc-1", "extra": {"a": 1}})),
    );
    let shown = agent.expect_shown("with id");
    assert_eq!(
        shown,
        json!({"event": "shown", "channel": "n", "id": "abc-1", "type": "Simple", "priority": "normal",
               "title": "with id", "message": "body of with id"})
    );
}
