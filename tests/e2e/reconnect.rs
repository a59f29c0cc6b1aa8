//! Redis going away: killed, restarted, frozen. The agent must come back by itself, every time.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Agent, Redis, config, note};

/// Kills Redis, keeps it down for `outage`, restarts it on the same port, and checks that the agent
/// resubscribes and shows the next message. Returns the time from restart to the message being shown.
fn survive_outage(outage: Duration) -> Duration {
    let mut redis = Redis::start();
    let mut agent = Agent::start(
        &redis,
        &config("ws", &[r#"channel = "n""#, r#"pattern = "p:*""#]),
    );
    redis.publish("n", note("before", json!({})));
    agent.expect_shown("before");

    redis.kill();
    let lost = agent.expect_log("lost the Redis connection");
    assert!(lost.contains("outages=1"), "the outage is counted: {lost}");
    std::thread::sleep(outage); // the outage itself is the scenario, not a synchronisation
    redis.start_again();
    let restarted = Instant::now();
    let back = agent.expect_log("reconnected to Redis and resubscribed");
    assert!(
        back.contains("channels=1") && back.contains("patterns=1"),
        "{back}"
    );
    redis.publish("n", note("after", json!({})));
    redis.publish("p:x", note("after pattern", json!({})));
    agent.expect_shown("after");
    let recovery = restarted.elapsed();
    agent.expect_shown("after pattern");
    eprintln!("outage {outage:?}: first message shown {recovery:?} after Redis came back");
    recovery
}

#[test]
fn resubscribes_after_a_two_second_outage() {
    survive_outage(Duration::from_secs(2));
}

#[test]
fn resubscribes_after_a_ten_second_outage_past_redis_rs_own_retry_budget() {
    survive_outage(Duration::from_secs(10));
}

#[test]
#[ignore = "takes over a minute; run with --ignored"]
fn resubscribes_after_a_forty_second_outage() {
    let recovery = survive_outage(Duration::from_secs(40));
    assert!(
        recovery <= Duration::from_secs(35),
        "backoff is capped at 30 s: {recovery:?}"
    );
}

#[test]
fn a_frozen_server_is_noticed_by_ping_and_the_agent_reconnects() {
    let redis = Redis::start();
    let mut cfg = config("ws", &[r#"channel = "n""#]);
    cfg.push_str("[redis]\nping_interval = \"1s\"\n");
    let mut agent = Agent::start(&redis, &cfg);
    // Every client's commands stall, as behind a dead link: the subscription stays open but silent.
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "6000", "ALL"][..])
        .query(&mut redis.conn())
        .unwrap();
    let lost = agent.expect_log("lost the Redis connection");
    assert!(lost.contains("no PING reply"), "{lost}");
    agent.expect_log("reconnected to Redis and resubscribed");
    redis.publish("n", note("after pause", json!({})));
    agent.expect_shown("after pause");
}

#[test]
fn starts_before_redis_and_connects_once_it_is_up() {
    let mut redis = Redis::start();
    redis.kill();
    let mut agent = Agent::spawn(&redis, &config("ws", &[r#"channel = "n""#]));
    agent.expect_log("Redis unavailable; retrying");
    redis.start_again();
    agent.expect_log("reconnected to Redis and resubscribed");
    redis.publish("n", note("late", json!({})));
    agent.expect_shown("late");
}
