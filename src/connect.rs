//! How Herald opens Redis clients: `redis://` in the clear, `rediss://` over TLS (rustls), verified
//! against the system's roots or `[redis] tls_ca_file`, with a client certificate where the server
//! asks for one.
//!
//! The TLS material is process-wide, set from the config at start and on every reload: the URL
//! travels as a plain string through the sources, the replier, presence and the CLI, and every one of
//! them opens its clients here, so no connection can forget the config's CA or client certificate.

use std::sync::{Once, RwLock};

use redis::{Client, ClientTlsConfig, ConnectionAddr, RedisResult, TlsCertificates};

use crate::config::TlsConfig;

static TLS: RwLock<Option<TlsConfig>> = RwLock::new(None);

/// Uses `tls` for every `rediss://` client opened from now on.
pub fn set_tls(tls: &TlsConfig) {
    *TLS.write().unwrap_or_else(|p| p.into_inner()) = Some(tls.clone());
}

/// A client for `url`: TLS with the configured roots and client certificate for `rediss://`.
pub fn client(url: &str) -> RedisResult<Client> {
    install_crypto_provider();
    let plain = Client::open(url)?;
    let is_tls = matches!(
        plain.get_connection_info().addr(),
        ConnectionAddr::TcpTls { .. }
    );
    let tls = TLS.read().unwrap_or_else(|p| p.into_inner()).clone();
    match tls {
        Some(tls) if is_tls && (tls.ca.is_some() || tls.client.is_some()) => {
            Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: tls.client.map(|(client_cert, client_key)| ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                    root_cert: tls.ca,
                },
            )
        }
        _ => Ok(plain),
    }
}

/// rustls needs one crypto provider per process; ring is ours. rustls marks ring's provider
/// deprecated because it lacks post-quantum key exchange; aws-lc-rs has it but needs cmake and a far
/// longer build, and Redis servers (OpenSSL) rarely offer it yet. Revisit when they do.
#[allow(deprecated)]
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The URL without its password (in the user part, or a unix socket's `?pass=`), for logs.
pub fn redacted(url: &str) -> String {
    // The password sits between the first ':' after "://" (in a URL mistyped without one, the
    // first ':' at all) and the last '@'. Hiding a little more than that beats leaking it.
    let body = url.find("://").map_or(0, |i| i + 3);
    let url = match url.rfind('@') {
        Some(at) if at > body => match url[body..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..body + colon], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    };
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            // Keys as the client decodes them (`p%61ss` is `pass`).
            let key = url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(k, _)| k.to_ascii_lowercase())
                .unwrap_or_default();
            match key.as_str() {
                "pass" | "password" => format!("{}=***", pair.split('=').next().unwrap_or(pair)),
                _ => pair.to_owned(),
            }
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redacted("redis://u:secret@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redacted("redis://:secret@h/"), "redis://:***@h/");
        assert_eq!(redacted("redis://h:6379/"), "redis://h:6379/");
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            redacted("unix:///s.sock?p%61ss=secret"),
            "unix:///s.sock?p%61ss=***"
        );
        // Mistyped URLs that the client refuses still reach error messages.
        assert_eq!(redacted("redis//u:secret@h:1/"), "redis//u:***@h:1/");
        assert_eq!(redacted("redis:/:secret@h"), "redis:***@h");
        assert_eq!(redacted("redis://u:p@ss:w@rd@h/"), "redis://u:***@h/");
    }
}
