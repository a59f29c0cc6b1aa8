//! `rediss://`: verified TLS with the config's CA and a client certificate, refusal of a server
//! Herald cannot verify, and `#insecure` only where the config allows it explicitly.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::util::{Agent, Redis, config, herald, note};

/// A certificate authority, a server certificate for 127.0.0.1 and a client certificate, made with
/// openssl (P-256 keys: fast to make, and what rustls and Redis's OpenSSL both take).
fn make_certs(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .output()
            .expect("openssl must be installed (scripts/install-deps installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Herald test CA",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "localhost"), ("client", "herald-agent")] {
        let subject = format!("/CN={cn}");
        let (keyfile, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &[
                &["req"],
                &key[..],
                &["-keyout", &keyfile, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

fn tls_config(url: &str, tls: &str) -> String {
    config("ws-tls", &[r#"channel = "n""#]).replace(
        "[presenter]",
        &format!("[redis]\nurl = \"{url}\"\n{tls}\n[presenter]"),
    )
}

#[test]
fn rediss_with_the_configured_ca_and_a_client_certificate_works_end_to_end() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let redis = Redis::start_tls(certs.path(), true);
    let file = |name: &str| certs.path().join(name).display().to_string();
    let cfg = tls_config(
        &redis.tls_url(),
        &format!(
            "tls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            file("ca.pem"),
            file("client.pem"),
            file("client.key")
        ),
    );
    let mut agent = Agent::spawn_with_url(None, &cfg);
    agent.expect_log("subscribed");
    // The publisher goes over TLS too, with the same config.
    let dir = tempfile::tempdir().unwrap();
    let status = herald(dir.path())
        .args(["publish", "--config"])
        .arg(agent.config_path())
        .args([
            "--channel",
            "n",
            "--title",
            "over TLS",
            "--message",
            "verified both ways",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    agent.expect_shown("over TLS");
    // And the plain port the test uses sees the same server.
    assert_eq!(redis.publish("n", note("plain side", json!({}))), 1);
    agent.expect_shown("plain side");
}

#[test]
fn a_server_herald_cannot_verify_is_refused_and_insecure_needs_the_config_to_say_so() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let redis = Redis::start_tls(certs.path(), false);

    // No tls_ca_file: the system's roots do not know the test CA.
    let mut agent = Agent::spawn_with_url(None, &tls_config(&redis.tls_url(), ""));
    let line = agent.expect_log("Redis unavailable; retrying");
    assert!(
        line.to_lowercase().contains("certificate"),
        "the reason names the certificate: {line}"
    );
    eprintln!("refused: {line}");
    assert!(!agent.logs.iter().any(|l| l.contains(" subscribed")));
    drop(agent);

    // `#insecure` is refused by validation unless the config allows it explicitly.
    let insecure = format!("{}#insecure", redis.tls_url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, tls_config(&insecure, "")).unwrap();
    let out = herald(dir.path())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("redis.url") && stderr.contains("tls_insecure = true"),
        "{stderr}"
    );

    let mut agent = Agent::spawn_with_url(None, &tls_config(&insecure, "tls_insecure = true\n"));
    agent.expect_log("subscribed");
    redis.publish("n", note("unverified but allowed", json!({})));
    agent.expect_shown("unverified but allowed");
}
