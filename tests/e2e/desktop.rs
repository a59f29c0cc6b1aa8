//! The desktop presenter on a real session bus and a real X server: toasts, dialogs, action toasts,
//! expiry, and honest failure when there is no desktop.

use serde_json::json;

use crate::desk::{Bus, Display, NotificationServer, window_gone};
use crate::util::{Agent, Desk, Redis, config, note};

fn desktop_config(presenter: &str) -> String {
    config("ws-d", &[r#"channel = "n""#]).replace(
        r#"kind = "console""#,
        &format!("kind = \"desktop\"\n{presenter}"),
    )
}

/// A whole desktop — Redis, session bus, notification server, X display — and an agent on it.
/// Fields drop in order: the agent goes first, Redis last.
struct Rig {
    _agent: Agent,
    _server: NotificationServer,
    _bus: Bus,
    display: Display,
    redis: Redis,
}

impl Rig {
    fn start() -> Rig {
        let (redis, bus, display) = (Redis::start(), Bus::start(), Display::start());
        let server = NotificationServer::start(&bus);
        let desk = Desk {
            bus: Some(bus.address.clone()),
            display: Some(display.name.clone()),
            ..Desk::none()
        };
        let agent = start(&redis, "", &desk);
        Rig {
            redis,
            display,
            _bus: bus,
            _server: server,
            _agent: agent,
        }
    }
}

/// Redis, a session bus with the recording notification server, and an agent — but no display.
struct BusRig {
    _agent: Agent,
    server: NotificationServer,
    _bus: Bus,
    redis: Redis,
}

impl BusRig {
    fn start(presenter: &str) -> BusRig {
        let (redis, bus) = (Redis::start(), Bus::start());
        let server = NotificationServer::start(&bus);
        let desk = Desk {
            bus: Some(bus.address.clone()),
            ..Desk::none()
        };
        let agent = start(&redis, presenter, &desk);
        BusRig {
            _agent: agent,
            server,
            _bus: bus,
            redis,
        }
    }
}

fn start(redis: &Redis, presenter: &str, desk: &Desk) -> Agent {
    let mut agent = Agent::spawn_in(Some(&redis.url()), &desktop_config(presenter), desk);
    agent.expect_log("subscribed");
    agent
}

#[test]
fn toasts_carry_title_body_and_urgency_for_each_priority() {
    let rig = BusRig::start("");
    let (redis, server) = (&rig.redis, &rig.server);
    for (priority, urgency) in [("low", 0), ("normal", 1), ("high", 1), ("critical", 2)] {
        redis.publish(
            "n",
            json!({"title": format!("{priority} title"), "message": "body", "priority": priority})
                .to_string(),
        );
        let n = server.next();
        assert_eq!(
            (n.app_name.as_str(), n.summary.as_str(), n.body.as_str()),
            ("Herald", &*format!("{priority} title"), "body")
        );
        assert_eq!(n.urgency, Some(urgency), "{priority}");
        assert!(n.actions.is_empty(), "a Simple toast has no buttons");
    }
}

#[test]
fn markup_is_escaped_and_bidi_overrides_are_stripped() {
    let rig = BusRig::start("");
    let (redis, server) = (&rig.redis, &rig.server);
    let long_title = "t".repeat(300);
    redis.publish(
        "n",
        json!({"title": long_title, "message": "<b>click</b> & see invoice\u{202E}fdp.exe\u{200B}", "icon": "/tmp/evil.png"}).to_string(),
    );
    let n = server.next();
    assert_eq!(n.body, "&lt;b&gt;click&lt;/b&gt; &amp; see invoicefdp.exe");
    assert_eq!(n.summary.chars().count(), 120);
    assert!(n.summary.ends_with('…'));
}

#[test]
fn an_action_toast_is_answered_by_its_buttons_and_closing_it_dismisses() {
    let rig = BusRig::start(r#"dialogs = "actions""#);
    let (redis, server) = (&rig.redis, &rig.server);
    let mut replies = redis.subscribe("replies:d");

    redis.publish(
        "n",
        note(
            "Restart?",
            json!({"id": "a1", "type": "OKCancel", "reply_channel": "replies:d"}),
        ),
    );
    let n = server.next();
    assert_eq!(n.actions, ["OK", "OK", "Cancel", "Cancel"]);
    server.click(n.id, "Cancel");
    let reply = replies.next_json();
    assert_eq!(
        (
            reply["id"].as_str(),
            reply["response"].as_str(),
            reply["answered_by"].as_str()
        ),
        (Some("a1"), Some("Cancel"), Some("user"))
    );

    redis.publish(
        "n",
        note(
            "Again?",
            json!({"id": "a2", "type": "OK", "reply_channel": "replies:d"}),
        ),
    );
    let n = server.next();
    assert_eq!(n.actions, ["OK", "OK"]);
    server.close(n.id);
    assert_eq!(replies.next_json()["response"], "Dismissed");
}

#[test]
fn a_dialog_is_answered_ok_by_enter_and_cancel_by_tab_enter() {
    let rig = Rig::start();
    let (redis, display) = (&rig.redis, &rig.display);
    let mut replies = redis.subscribe("replies:d");
    for (title, keys, expected) in [
        ("Deploy v2.3?", &["Return"][..], "OK"),
        ("Drop the table?", &["Tab", "Return"][..], "Cancel"),
    ] {
        redis.publish(
            "n",
            note(
                title,
                json!({"type": "OKCancel", "reply_channel": "replies:d"}),
            ),
        );
        let window = display.wait_for_window(title);
        display.press(&window, keys);
        let reply = replies.next_json();
        assert_eq!(
            (reply["original_title"].as_str(), reply["response"].as_str()),
            (Some(title), Some(expected))
        );
        assert_eq!(reply["answered_by"], "user");
    }
}

#[test]
fn closing_a_dialog_with_escape_is_dismissed_not_cancel() {
    let rig = Rig::start();
    let (redis, display) = (&rig.redis, &rig.display);
    let mut replies = redis.subscribe("replies:d");
    redis.publish(
        "n",
        note(
            "Just OK",
            json!({"type": "OK", "reply_channel": "replies:d"}),
        ),
    );
    let window = display.wait_for_window("Just OK");
    display.press(&window, &["Escape"]);
    assert_eq!(replies.next_json()["response"], "Dismissed");
}

#[test]
fn a_dialog_that_expires_is_closed_and_answered_expired() {
    let rig = Rig::start();
    let (redis, display) = (&rig.redis, &rig.display);
    let mut replies = redis.subscribe("replies:d");
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    redis.publish("n", note("Hurry", json!({"type": "OKCancel", "reply_channel": "replies:d", "expires_at": soon.to_string()})));
    display.wait_for_window("Hurry");
    let reply = replies.next_json();
    assert_eq!(
        (reply["response"].as_str(), reply["answered_by"].as_str()),
        (Some("Expired"), Some("herald"))
    );
    assert!(
        window_gone(display, "Hurry"),
        "the expired dialog was closed"
    );
}

#[test]
fn without_a_display_or_notification_server_nothing_is_faked() {
    let redis = Redis::start();
    let mut agent = start(&redis, "", &Desk::none());
    let mut replies = redis.subscribe("replies:d");
    redis.publish("n", note("toast", json!({})));
    agent.expect_shown("toast"); // printed on the console instead
    redis.publish(
        "n",
        note(
            "question",
            json!({"type": "OKCancel", "reply_channel": "replies:d"}),
        ),
    );
    let reply = replies.next_json();
    assert_eq!(
        (reply["response"].as_str(), reply["answered_by"].as_str()),
        (Some("Undeliverable"), Some("herald"))
    );
    agent.expect_shown("question");
    assert!(agent.terminate().success());
    let warnings = agent
        .logs
        .iter()
        .filter(|l| l.contains("cannot use the desktop"))
        .count();
    assert_eq!(warnings, 1, "logged once: {:#?}", agent.logs);
}

#[test]
fn without_zenity_a_dialog_is_undeliverable() {
    let (redis, bus, display) = (Redis::start(), Bus::start(), Display::start());
    let _server = NotificationServer::start(&bus);
    let empty = tempfile::tempdir().unwrap();
    let desk = Desk {
        bus: Some(bus.address.clone()),
        display: Some(display.name.clone()),
        path: Some(empty.path().display().to_string()),
    };
    let mut agent = start(&redis, "", &desk);
    let mut replies = redis.subscribe("replies:d");
    redis.publish(
        "n",
        note(
            "no helper",
            json!({"type": "OK", "reply_channel": "replies:d"}),
        ),
    );
    assert_eq!(replies.next_json()["response"], "Undeliverable");
    let log = agent.expect_log("cannot use the desktop");
    assert!(log.contains("zenity"), "{log}");
}
