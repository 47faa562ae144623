//! `url` entities: fetched by fleetcheck itself over HTTP, the body hashed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::transport::error_chain;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

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

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
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
        if url.starts_with("https://") {
            return Err("https URLs are not supported yet: serve the artefact over http or check it as a file".into());
        }
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
