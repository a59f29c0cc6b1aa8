use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("herald.toml"), src)
}

fn messages(src: &str) -> Vec<String> {
    parse(src)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_documented_example_is_valid() {
    let src = include_str!("../../config/herald.toml");
    let c = parse(src).unwrap();
    assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379/"));
    assert!(
        c.subscriptions
            .contains(&Subscription::Channel("notifications".into()))
    );
    assert!(
        c.subscriptions
            .contains(&Subscription::Pattern("alerts:*".into()))
    );
    assert_eq!(c.redis.max_backoff, Duration::from_secs(30));
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = parse("[[subscribe]]\nchannel = \"a\"\n").unwrap();
    assert_eq!(c.presenter.kind, PresenterKind::Auto);
    assert_eq!(c.agent.max_payload_bytes, 64 * 1024);
    assert_eq!(c.agent.hostname, machine_hostname());
    assert_eq!(c.redis.url, None);
}

#[test]
fn every_error_is_reported_at_once_with_line_and_key() {
    let src = "[agent]\nhostnme = \"x\"\n\n[redis]\nmax_backoff = 5\n\n[presenter]\nkind = \"fancy\"\n\n[[subscribe]]\nchannel = \"a\"\n";
    let errs = messages(src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("herald.toml:2:1: agent.hostnme: unknown key"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("herald.toml:5:15: redis.max_backoff: invalid type"),
        "{}",
        errs[1]
    );
    // `kind` has the right type, so its meaning is checked after the types: it still shows up.
    assert!(
        errs[2].starts_with("herald.toml:8:8: presenter.kind: unknown presenter `fancy`"),
        "{}",
        errs[2]
    );
}

#[test]
fn semantic_errors_are_collected_together() {
    let src = "[redis]\nmax_backoff = \"soon\"\nurl = \"http://x\"\n\n[presenter]\nkind = \"fancy\"\n\n[[subscribe]]\nchannel = \"a\"\npattern = \"b*\"\n";
    let errs = messages(src);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].contains(":2:") && errs[0].contains("redis.max_backoff"));
    assert!(errs[1].contains(":3:") && errs[1].contains("redis.url"));
    assert!(errs[2].contains(":6:") && errs[2].contains("unknown presenter `fancy`"));
    assert!(errs[3].contains("subscribe[1]") && errs[3].contains("exactly one of"));
}

#[test]
fn an_empty_subscription_list_is_an_error() {
    let errs = messages("[agent]\nhostname = \"ws\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("no subscriptions"), "{}", errs[0]);
}

#[test]
fn syntax_errors_point_at_the_line() {
    let errs = messages("[agent]\nhostname = \n[[subscribe]]\nchannel = \"a\"\n");
    assert!(errs[0].starts_with("herald.toml:2:"), "{errs:?}");
}

#[test]
fn unknown_sections_and_duplicates_are_named() {
    let errs =
        messages("[agnet]\nx=1\n[[subscribe]]\nchannel=\"a\"\n[[subscribe]]\nchannel=\"a\"\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains(":1:2: agnet: unknown section"), "{errs:?}");
    assert!(
        errs[1].contains(":5:1: subscribe[2]: duplicate subscription channel `a`"),
        "{errs:?}"
    );
}

#[test]
fn the_redis_url_is_found_in_the_documented_order() {
    let c =
        parse("[redis]\nurl = \"redis://from-config/\"\n[[subscribe]]\nchannel = \"a\"\n").unwrap();
    // The environment is process-wide; only the cases that do not depend on it are checked here.
    assert_eq!(
        resolve_redis_url(Some("redis://flag/"), Some(&c)),
        "redis://flag/"
    );
    if std::env::var_os(REDIS_URL_ENV).is_none() {
        assert_eq!(resolve_redis_url(None, Some(&c)), "redis://from-config/");
        assert_eq!(resolve_redis_url(None, None), DEFAULT_REDIS_URL);
    }
}

#[test]
fn durations_read_like_people_write_them() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("soon").is_err());
}

#[test]
fn stream_subscriptions_take_a_group_a_start_and_a_claim_time() {
    let c = parse("[agent]\nhostname = \"ws\"\n[[subscribe]]\nstream = \"s1\"\n[[subscribe]]\nstream = \"s2\"\ngroup = \"shared:ops\"\nstart = \"all\"\nclaim_idle = \"30s\"\n").unwrap();
    assert!(c.subscriptions.is_empty());
    assert_eq!(c.streams[0].group, Group::Host("herald:ws".into()));
    assert_eq!(c.streams[0].start, StreamStart::New);
    assert_eq!(c.streams[1].group, Group::Shared("ops".into()));
    assert_eq!(c.streams[1].start, StreamStart::All);
    assert_eq!(c.streams[1].claim_idle, Duration::from_secs(30));
    let errs = messages(
        "[[subscribe]]\nstream = \"s\"\ngroup = \"everyone\"\nstart = \"yesterday\"\n[[subscribe]]\nchannel = \"c\"\ngroup = \"host\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("subscribe[1].group") && errs[0].contains("shared:NAME"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("subscribe[2].group: only a `stream`"),
        "{errs:?}"
    );
}

#[test]
fn a_password_source_fills_a_url_without_one() {
    let cmd = PasswordSource::Command("printf 'p@ss word\\nignored'".into());
    assert_eq!(
        with_password("redis://agent@h:1/", &cmd).unwrap(),
        "redis://agent:p%40ss%20word@h:1/"
    );
    assert_eq!(
        with_password("redis://agent:own@h:1/", &cmd).unwrap(),
        "redis://agent:own@h:1/"
    );
    assert!(
        with_password(
            "redis://h/",
            &PasswordSource::Env("HERALD_SURELY_UNSET_VAR".into())
        )
        .unwrap_err()
        .contains("not set")
    );
}

#[test]
fn tls_files_are_read_and_checked_when_the_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let src = format!(
        "[redis]\nurl = \"rediss://h:6380/\"\ntls_ca_file = {:?}\ntls_cert_file = {:?}\n\n[[subscribe]]\nchannel = \"n\"\n",
        dir.path().join("missing.pem"),
        not_pem
    );
    let errors = messages(&src);
    assert!(
        errors.iter().any(|e| e.contains("herald.toml:3:")
            && e.contains("redis.tls_ca_file")
            && e.contains("cannot read")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("herald.toml:4:") && e.contains("holds no PEM certificate")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("needs both `tls_cert_file` and `tls_key_file`")),
        "{errors:?}"
    );
}

#[test]
fn insecure_tls_urls_need_tls_insecure() {
    let url = "[redis]\nurl = \"rediss://h:6380/#insecure\"\n";
    let subs = "\n[[subscribe]]\nchannel = \"n\"\n";
    let errors = messages(&format!("{url}{subs}"));
    assert!(
        errors[0].contains("herald.toml:2:") && errors[0].contains("tls_insecure = true"),
        "{errors:?}"
    );
    let c = parse(&format!("{url}tls_insecure = true\n{subs}")).unwrap();
    assert!(c.redis.tls.insecure);
}

#[test]
fn insecure_tls_is_recognised_however_the_url_is_spelled() {
    let strict = TlsConfig::default();
    for url in [
        "rediss://h:6380/#insecure",
        "REDISS://h:6380/#insecure",
        "valkeys://h:6380/#insecure",
        " rediss://h:6380/#insecure\n",
        "rediss://user:secret@h:6380/#insecure",
    ] {
        let e = check_redis_url(url, &strict).expect_err(url);
        assert!(e.contains("tls_insecure = true"), "{url}: {e}");
        assert!(!e.contains("secret"), "the password is not printed: {e}");
    }
    assert!(check_redis_url("rediss://h:6380/", &strict).is_ok());
    let allowed = TlsConfig {
        insecure: true,
        ..TlsConfig::default()
    };
    assert!(check_redis_url("REDISS://h:6380/#insecure", &allowed).is_ok());
}
