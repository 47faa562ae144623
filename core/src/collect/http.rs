//! `url` entities: fetched by fleetcheck itself over HTTP or HTTPS, the body
//! hashed. HTTPS trusts the system's CA store (`/etc/ssl/certs`) plus, when the
//! authority names one, `defaults.url_ca_file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::transport::error_chain;

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// A shared HTTP client for URL checks.
#[derive(Clone)]
pub struct Fetcher {
    client: HttpClient,
}

/// The outcome of fetching one URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Body(Vec<u8>),
    NotFound,
}

impl Fetcher {
    /// A client for http and https URLs trusting the system's CA store and,
    /// when given, the PEM certificates in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Fetcher, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;

        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: the store is best effort,
        // and url_ca_file is there for what it lacks.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(ca) = ca_file {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("url_ca_file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("url_ca_file {} holds no certificate", ca.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("url_ca_file {}: {e}", ca.display()))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

/// Replaces `{host}` and `{address}` in a URL template.
pub fn render(template: &str, host: &str, address: &str) -> String {
    template
        .replace("{host}", host)
        .replace("{address}", address)
}

impl Fetcher {
    /// GETs `url` within `timeout`, keeping at most `cap` bytes of body.
    pub async fn fetch(&self, url: &str, timeout: Duration, cap: u64) -> Result<Fetched, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let req = hyper::Request::get(uri)
            .header(
                hyper::header::USER_AGENT,
                concat!("fleetcheck/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| format!("invalid request: {e}"))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            let status = resp.status();
            if status == hyper::StatusCode::NOT_FOUND || status == hyper::StatusCode::GONE {
                return Ok(Fetched::NotFound);
            }
            if !status.is_success() {
                return Err(format!("GET {url}: HTTP {status}"));
            }
            let body = Limited::new(resp.into_body(), cap as usize)
                .collect()
                .await
                .map_err(|e| format!("GET {url}: body: {e} (cap {cap} bytes)"))?;
            Ok(Fetched::Body(body.to_bytes().to_vec()))
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            format!(
                "GET {url}: timed out after {}",
                crate::duration::format(timeout)
            )
        })?
    }
}
