//! `herald check`, the single-instance lock, and clear errors at the edges.

use crate::util::{Agent, Redis, config, herald};

#[test]
fn check_prints_all_three_errors_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[agent]\nhostnam = \"x\"\n\n[redis]\nmax_backoff = \"forever\"\n\n[presenter]\nkind = \"hologram\"\n\n[[subscribe]]\nchannel = \"n\"\n",
    )
    .unwrap();
    let out = herald(dir.path())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].contains("bad.toml:2:1: agent.hostnam: unknown key"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("bad.toml:5:15: redis.max_backoff"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("bad.toml:8:8: presenter.kind: unknown presenter `hologram`"),
        "{stderr}"
    );
    assert_eq!(lines[3], "herald: 3 errors found");
}

#[test]
fn check_accepts_the_documented_example() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml");
    let out = herald(dir.path())
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("ok (2 subscriptions)")
    );
}

#[test]
fn a_second_agent_on_the_same_config_is_refused() {
    let redis = Redis::start();
    let first = Agent::start(&redis, &config("ws", &[r#"channel = "n""#]));
    let out = herald(first.dir.path())
        .arg("run")
        .arg("--config")
        .arg(first.config_path())
        .args(["--url", &redis.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("another herald is already running"),
        "{stderr}"
    );
}

#[test]
fn run_with_a_missing_config_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path())
        .args(["run", "--config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/herald.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}
