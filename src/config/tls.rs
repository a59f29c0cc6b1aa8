//! `[redis] tls_*`: the certificate authority, client certificate and key for `rediss://`, read and
//! checked when the config loads, so a wrong path or a file that is not PEM is reported by `herald
//! check` with its line instead of surfacing as a handshake failure at 3 a.m.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::error::Collector;
use super::raw::RawRedis;
use super::rules::expand;

/// TLS material for `rediss://` URLs (see [`crate::connect`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// PEM roots the server's certificate must chain to, instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers with `tls-auth-clients yes`.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    /// `tls_insecure = true`: a URL ending in `#insecure` may turn certificate checks off.
    pub insecure: bool,
}

pub(super) fn validate(config: &Path, raw: &RawRedis, out: &mut Collector<'_>) -> TlsConfig {
    let base = config.parent().unwrap_or(Path::new("."));
    let ca = raw
        .tls_ca_file
        .as_ref()
        .and_then(|f| read_pem(base, f, "redis.tls_ca_file", certificates, out));
    let cert = raw
        .tls_cert_file
        .as_ref()
        .and_then(|f| read_pem(base, f, "redis.tls_cert_file", certificates, out));
    let key = raw
        .tls_key_file
        .as_ref()
        .and_then(|f| read_pem(base, f, "redis.tls_key_file", private_key, out));
    let client = match (cert, key, &raw.tls_cert_file, &raw.tls_key_file) {
        (Some(cert), Some(key), _, _) => Some((cert, key)),
        (_, _, Some(f), None) | (_, _, None, Some(f)) => {
            out.push(
                Some(f.span()),
                "redis.tls_cert_file",
                "a client certificate needs both `tls_cert_file` and `tls_key_file`",
            );
            None
        }
        _ => None,
    };
    TlsConfig {
        ca,
        client,
        insecure: raw.tls_insecure.unwrap_or(false),
    }
}

/// Reads `file` (relative to the config's folder) and checks it with `check`.
fn read_pem(
    base: &Path,
    file: &Spanned<String>,
    key: &str,
    check: fn(&[u8]) -> Result<(), String>,
    out: &mut Collector<'_>,
) -> Option<Vec<u8>> {
    let path = expand(base, file.get_ref());
    let checked = std::fs::read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| {
            check(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(bytes)
        });
    checked
        .map_err(|e| out.push(Some(file.span()), key, e))
        .ok()
}

fn certificates(pem: &[u8]) -> Result<(), String> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        n += 1;
    }
    match n {
        0 => Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
        _ => Ok(()),
    }
}

fn private_key(pem: &[u8]) -> Result<(), String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|e| format!("holds no PEM private key: {e}"))
}
