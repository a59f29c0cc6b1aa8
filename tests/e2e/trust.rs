//! Signed notifications, keys, and replies that cannot be redirected.

use serde_json::json;

use crate::util::{Agent, Redis, herald, note, publish_flood};

fn signed_config(public_line: &str) -> String {
    format!(
        "[agent]\nhostname = \"ws\"\n\n[presenter]\nkind = \"console\"\n\n[[subscribe]]\nchannel = \"signed\"\nrequire_signature = true\n\n[[subscribe]]\nchannel = \"open\"\n\n[trust]\nkeys = {{ {public_line} }}\n"
    )
}

fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let out = herald(dir)
        .current_dir(dir)
        .args(["keygen", "--name", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join(format!("{name}.key")),
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (path, line) = keygen(dir.path(), "ops");
    assert!(
        line.starts_with("ops = \"") && line.ends_with('"'),
        "{line}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = herald(dir.path())
        .current_dir(dir.path())
        .args(["keygen", "--name", "ops"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}

#[test]
fn only_valid_signed_notifications_are_shown_where_a_signature_is_required() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (keyfile, line) = keygen(dir.path(), "ops");
    let mut agent = Agent::start(&redis, &signed_config(&line));

    // A valid signed notification, through `herald publish --sign`.
    let out = herald(dir.path())
        .args([
            "publish",
            "--url",
            &redis.url(),
            "--channel",
            "signed",
            "--title",
            "signed ok",
            "--message",
            "m",
            "--id",
            "s1",
        ])
        .arg("--sign")
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.expect_shown("signed ok");

    let key = herald::trust::read_private_key(&std::fs::read_to_string(&keyfile).unwrap()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let envelope = |id: &str, ts: i64, kid: &str| {
        let payload =
            json!({"id": id, "title": format!("forged {id}"), "message": "m"}).to_string();
        serde_json::to_value(herald::trust::sign(&key, kid, id, ts, &payload)).unwrap()
    };
    let mut tampered = envelope("t1", now, "ops");
    tampered["payload"] = json!({"id": "t1", "title": "forged t1", "message": "pay here"})
        .to_string()
        .into();
    let other = herald::trust::generate().unwrap();
    let wrong_key = serde_json::to_value(herald::trust::sign(
        &other,
        "ops",
        "w1",
        now,
        &json!({"id": "w1", "title": "forged w1", "message": "m"}).to_string(),
    ))
    .unwrap();
    let cases = [
        (tampered, "bad signature"),
        (wrong_key, "bad signature"),
        (envelope("u1", now, "eve"), "unknown key id `eve`"),
        (
            envelope("o1", now - 301, "ops"),
            "outside the allowed 300 s",
        ),
        (
            json!({"id": "p1", "title": "forged p1", "message": "plain"}),
            "requires a signature",
        ),
    ];
    for (payload, reason) in cases {
        redis.publish("signed", payload.to_string());
        let log = agent.expect_log("refused notification");
        assert!(log.contains(reason), "expected {reason:?}: {log}");
    }
    // A replay of the valid message, now and after a restart.
    let valid = envelope("r1", now, "ops").to_string();
    redis.publish("signed", valid.clone());
    agent.expect_shown("forged r1");
    redis.publish("signed", valid.clone());
    assert!(agent.expect_log("refused notification").contains("replay"));
    agent.crash_and_restart();
    agent.expect_log("subscribed");
    redis.publish("signed", valid);
    assert!(agent.expect_log("refused notification").contains("replay"));
    // Unsigned is still fine where no signature is required.
    redis.publish("open", note("plain and open", json!({})));
    agent.expect_shown("plain and open");
    let forged = agent
        .seen
        .iter()
        .filter(|l| l.contains("forged") && !l.contains("forged r1"))
        .count();
    assert_eq!(forged, 0, "{:#?}", agent.seen);
}

#[test]
fn a_reply_channel_outside_the_allow_list_gets_no_reply() {
    let redis = Redis::start();
    let mut agent = Agent::start(
        &redis,
        &crate::util::config("ws", &[r#"channel = "notifications""#]),
    );
    let mut fine = redis.subscribe("replies:ok");
    // A loop back onto the notification channel, another host's channel, and an allowed one.
    for (id, channel) in [
        ("a", "notifications"),
        ("b", "hosts:other"),
        ("c", "replies:ok"),
    ] {
        redis.publish(
            "notifications",
            note(
                id,
                json!({"id": id, "type": "OK", "reply_channel": channel}),
            ),
        );
        agent.expect_shown(id);
        agent.answer("ok");
    }
    assert_eq!(fine.next_json()["id"], "c");
    assert!(agent.terminate().success());
    let summary = agent
        .logs
        .iter()
        .find(|l| l.contains("stopped"))
        .expect("summary");
    assert!(
        summary.contains("replies_sent=1 ") && summary.contains("replies_refused=2 "),
        "{summary}"
    );
    assert_eq!(
        agent
            .logs
            .iter()
            .filter(|l| l.contains("not in [agent] reply_allow"))
            .count(),
        2
    );
}

/// The flood messages the agent showed, checked against what a bucket of burst 20 refilling 5 a
/// second can let through in `elapsed` seconds; with that bound.
fn flood_shown_within_bucket(agent: &Agent, elapsed: f64) -> (usize, f64) {
    let flooded = agent
        .seen
        .iter()
        .filter(|l| l.contains(r#""title":"flood "#))
        .count();
    let bound = 20.0 + 5.0 * elapsed;
    assert!(
        flooded as f64 <= bound,
        "{flooded} shown in {elapsed:.2} s, bound {bound:.1}"
    );
    (flooded, bound)
}

#[test]
fn a_flooding_publisher_is_held_to_its_rate_summarised_once_and_others_are_unaffected() {
    let redis = Redis::start();
    let mut cfg = crate::util::config("ws", &[r#"channel = "noisy""#, r#"channel = "calm""#]);
    cfg.push_str("[flood]\nburst = 20\nper_second = 5\nsummary_every = \"1s\"\n");
    let mut agent = Agent::start(&redis, &cfg);
    let started = std::time::Instant::now();
    publish_flood(&mut redis.conn(), "noisy", 0..2000, &json!({}));
    redis.publish("calm", note("calm one", json!({})));
    agent.expect_shown("calm one");
    let elapsed = started.elapsed().as_secs_f64();
    let notice = agent.expect_line("a suppression notice", |j| j["event"] == "notice");
    let text = notice["text"].as_str().unwrap();
    assert!(text.ends_with("suppressed from channel noisy"), "{text}");
    let (flooded, bound) = flood_shown_within_bucket(&agent, elapsed);
    let suppressed: usize = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        suppressed + flooded <= 2000 && suppressed >= 2000 - bound as usize - 1,
        "{text}"
    );
    eprintln!(
        "flood: 2000 published in {elapsed:.2} s, {flooded} shown, {suppressed} summarised in one notice"
    );
}

/// The minimal ACL for agents that the README documents (pub/sub agents; streams add their own keys).
pub const AGENT_ACL: &[&str] = &[
    "herald-agent",
    "on",
    ">agent-secret",
    "resetchannels",
    "&notifications",
    "&alerts:*",
    "-@all",
    "+ping",
    "+hello",
    "+auth",
    "+subscribe",
    "+psubscribe",
    "+unsubscribe",
    "+punsubscribe",
    "(+publish resetchannels &replies:* &receipts:*)",
    "(~herald:agent:* +set +del)",
];

#[test]
fn an_agent_with_the_documented_least_privilege_acl_works_and_cannot_publish_notifications() {
    let redis = Redis::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(AGENT_ACL)
        .query(&mut redis.conn())
        .unwrap();
    let url = format!(
        "redis://herald-agent:agent-secret@127.0.0.1:{}/",
        redis.port
    );
    let cfg = crate::util::config(
        "ws",
        &[r#"channel = "notifications""#, r#"pattern = "alerts:*""#],
    );
    let mut agent = Agent::spawn_with_url(Some(&url), &cfg);
    agent.expect_log("subscribed");
    let mut replies = redis.subscribe("replies:acl");
    redis.publish(
        "alerts:db",
        note(
            "under acl",
            json!({"type": "OK", "reply_channel": "replies:acl"}),
        ),
    );
    agent.expect_shown("under acl");
    agent.answer("ok");
    assert_eq!(replies.next_json()["response"], "OK");
    let presence: Option<String> = redis::cmd("GET")
        .arg("herald:agent:ws")
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        presence.is_some_and(|p| p.contains("notifications")),
        "presence key written under the ACL"
    );
    // The same user cannot publish a notification: no phishing from a stolen agent password.
    let mut as_agent = redis::Client::open(url).unwrap().get_connection().unwrap();
    let denied: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg("notifications")
        .arg("{}")
        .query(&mut as_agent);
    let err = denied.unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    assert!(agent.terminate().success());
    assert!(
        !agent.logs.iter().any(|l| l.contains("NOPERM")),
        "the agent needed a command the ACL forbids: {:#?}",
        agent.logs
    );
}

#[test]
fn a_modified_signed_pack_is_refused_at_reload_and_the_old_rules_keep_running() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (keyfile, line) = keygen(dir.path(), "admin");
    let pack = dir.path().join("corp");
    std::fs::create_dir(&pack).unwrap();
    let rule = |tag: &str| {
        format!(
            "return {{ on_message = function(msg) msg.title = \"[{tag}] \" .. msg.title; return msg end }}"
        )
    };
    std::fs::write(pack.join("tag.luau"), rule("v1")).unwrap();
    let sign = || {
        let out = herald(dir.path())
            .args(["pack", "sign"])
            .arg(&pack)
            .arg("--key")
            .arg(&keyfile)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sign();
    let mut cfg = crate::util::config("ws", &[r#"channel = "n""#]);
    cfg.push_str(&format!(
        "[rules]\npacks = [{pack:?}]\nrequire_signed_packs = true\n\n[trust]\nkeys = {{ {line} }}\n"
    ));
    let mut agent = Agent::start(&redis, &cfg);
    redis.publish("n", note("x", json!({})));
    agent.expect_shown("[v1] x");

    crate::util::save(
        &pack.join("tag.luau"),
        &rule("evil"),
        crate::util::Save::Rename,
    );
    let notice = agent.expect_line("a refusal notice", |j| j["event"] == "notice");
    assert!(
        notice["text"]
            .as_str()
            .unwrap()
            .contains("modified since it was signed"),
        "{notice}"
    );
    redis.publish("n", note("y", json!({})));
    agent.expect_shown("[v1] y");

    std::fs::write(pack.join("tag.luau"), rule("v2")).unwrap();
    agent.expect_line("the refusal of the unsigned edit", |j| {
        j["event"] == "notice"
    });
    sign();
    agent.expect_reload(2);
    redis.publish("n", note("z", json!({})));
    agent.expect_shown("[v2] z");
}

#[test]
fn the_password_can_come_from_a_command_instead_of_the_config() {
    let redis = Redis::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(AGENT_ACL)
        .query(&mut redis.conn())
        .unwrap();
    let mut cfg = crate::util::config("ws", &[r#"channel = "notifications""#]);
    cfg.push_str(&format!(
        "[redis]\nurl = \"redis://herald-agent@127.0.0.1:{}/\"\npassword_command = \"echo agent-secret\"\n",
        redis.port
    ));
    let mut agent = Agent::spawn_with_url(None, &cfg);
    agent.expect_log("subscribed");
    redis.publish("notifications", note("authenticated", json!({})));
    agent.expect_shown("authenticated");
    assert!(
        !agent.logs.iter().any(|l| l.contains("agent-secret")),
        "the password is never logged"
    );
}

#[test]
fn ten_thousand_messages_in_ten_seconds_show_at_most_burst_plus_rate_and_one_summary() {
    let redis = Redis::start();
    let mut cfg = crate::util::config("ws", &[r#"channel = "noisy""#, r#"channel = "calm""#]);
    // The summary interval outlasts the flood, so all of it lands in one notice.
    cfg.push_str("[flood]\nburst = 20\nper_second = 5\nsummary_every = \"12s\"\n");
    let mut agent = Agent::start(&redis, &cfg);
    let started = std::time::Instant::now();
    let mut conn = redis.conn();
    // 1,000 a second for 10 s, in bursts of 100 every 100 ms; one calm message each second.
    for tenth in 0..100 {
        publish_flood(
            &mut conn,
            "noisy",
            tenth * 100..tenth * 100 + 100,
            &json!({}),
        );
        if tenth % 10 == 0 {
            redis::cmd("PUBLISH")
                .arg("calm")
                .arg(note(&format!("calm {}", tenth / 10), json!({})))
                .exec(&mut conn)
                .unwrap();
        }
        let next = std::time::Duration::from_millis(100 * (tenth as u64 + 1));
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    let publishing = started.elapsed().as_secs_f64();
    for i in 0..10 {
        agent.expect_shown(&format!("calm {i}"));
    }
    let notice = agent.expect_line("the one suppression notice", |j| j["event"] == "notice");
    let text = notice["text"].as_str().unwrap().to_owned();
    let elapsed = started.elapsed().as_secs_f64();
    agent.catch_up();
    let (flooded, bound) = flood_shown_within_bucket(&agent, elapsed);
    assert_eq!(
        text,
        format!(
            "{} notifications suppressed from channel noisy",
            10_000 - flooded
        ),
        "one summary for the whole flood"
    );
    assert!(agent.terminate().success());
    let notices = agent
        .seen
        .iter()
        .filter(|l| l.contains(r#""event":"notice""#))
        .count();
    assert_eq!(notices, 1, "exactly one summary");
    eprintln!(
        "flood: 10,000 published over {publishing:.1} s, {flooded} shown (bound {bound:.0}), 10 of 10 calm shown, one summary"
    );
}
