//! `--web.config.file`: the exporter-toolkit web configuration format, as the
//! official exporters read it: `tls_server_config` (certificate, key, minimum
//! version, client certificates) and `basic_auth_users` (bcrypt hashes).
//! Anything else in the file is an error rather than silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use md5::{Digest, Md5};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<serde_yaml::Value>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
}

/// Checked web configuration.
#[derive(Default)]
pub struct WebConfig {
    /// Set when the exporter serves HTTPS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    users: BTreeMap<String, String>,
    /// (user, digest of the password) pairs already verified: bcrypt is slow
    /// on purpose, and Prometheus scrapes with the same credentials each time.
    verified: Mutex<HashSet<(String, [u8; 16])>>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read web config {}: {e}", path.display()))?;
        let raw: RawWebConfig =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if raw.http_server_config.is_some() {
            return Err(format!(
                "{}: http_server_config is not supported by this build",
                path.display()
            ));
        }
        for (user, hash) in &raw.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(format!(
                    "{}: basic_auth_users.{user} must be a bcrypt hash",
                    path.display()
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match &raw.tls_server_config {
            None => None,
            Some(t) => Some(
                tls_acceptor(t, base)
                    .map_err(|e| format!("{}: tls_server_config: {e}", path.display()))?,
            ),
        };
        Ok(WebConfig {
            tls,
            users: raw.basic_auth_users,
            verified: Mutex::default(),
        })
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header value against `basic_auth_users`.
    pub async fn authorize(&self, header: Option<&str>) -> bool {
        if !self.requires_auth() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            // Spend the same time as a real check so user names cannot be probed.
            let _ = tokio::task::spawn_blocking(move || bcrypt::verify(password, DUMMY_HASH)).await;
            return false;
        };
        let key = (user, Md5::digest(password.as_bytes()).into());
        if self.verified.lock().expect("cache lock").contains(&key) {
            return true;
        }
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            self.verified.lock().expect("cache lock").insert(key);
        }
        ok
    }
}

/// Builds the TLS acceptor; relative paths resolve against the web config's directory.
fn tls_acceptor(t: &RawTls, base: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let file = |p: &str| base.join(p);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file(&t.cert_file))
        .and_then(|i| i.collect())
        .map_err(|e| format!("cert_file {}: {e}", t.cert_file))?;
    if certs.is_empty() {
        return Err(format!("cert_file {} holds no certificate", t.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(file(&t.key_file))
        .map_err(|e| format!("key_file {}: {e}", t.key_file))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("TLS12") => &[&rustls::version::TLS12, &rustls::version::TLS13],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            return Err(format!(
                "min_version {other:?} is not supported (TLS12 or TLS13)"
            ))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match (t.client_auth_type.as_deref(), &t.client_ca_file) {
        (None | Some("NoClientCert"), None) => builder.with_no_client_auth(),
        (Some("RequireAndVerifyClientCert"), Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(file(ca)).map_err(|e| format!("client_ca_file {ca}: {e}"))? {
                let cert = cert.map_err(|e| format!("client_ca_file {ca}: {e}"))?;
                roots.add(cert).map_err(|e| format!("client_ca_file {ca}: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client_ca_file {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        (Some("RequireAndVerifyClientCert"), None) => {
            return Err("client_auth_type RequireAndVerifyClientCert needs a client_ca_file".to_string())
        }
        (None | Some("NoClientCert"), Some(_)) => {
            return Err("client_ca_file needs client_auth_type: RequireAndVerifyClientCert".to_string())
        }
        (Some(other), _) => {
            return Err(format!(
                "client_auth_type {other:?} is not supported (NoClientCert or RequireAndVerifyClientCert)"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// bcrypt("x", cost 10): only used to spend time on unknown users.
const DUMMY_HASH: &str = "$2b$10$2dWQQmcHTWiDeO0NJl/wKOP1k1Aw9cwzdEJ3OBJUAB1Y6/hgAB1O2";

fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
