//! Client for the deployment system's HTTP API (the contract is in
//! `docs/deploy-system.md`): service status and version, host status,
//! triggering a deployment of a service to one host, and polling it.
//!
//! The wire structs are private; callers get [`Deployment`] and
//! [`ServiceStatus`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::config::DeployConfig;

/// Largest response body read from the deployment system.
const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deploy system request {method} {path} failed: {message}")]
    Request {
        method: &'static str,
        path: String,
        message: String,
    },
    #[error("deploy system answered {status} to {method} {path}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("deploy system sent an unreadable answer to {path}: {message}")]
    Decode { path: String, message: String },
}

/// A deployment as the deployment system reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Deployment {
    pub id: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    #[serde(default)]
    pub message: Option<String>,
}

impl Deployment {
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The version the deployment system rolls out for this service.
    pub version: Option<String>,
    pub deployment: Option<Deployment>,
}

#[derive(Deserialize)]
struct WireService {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    deployment: Option<Deployment>,
}

#[derive(Deserialize)]
struct WireHost {
    #[serde(default)]
    deployment: Option<Deployment>,
}

#[derive(Serialize)]
struct WireTrigger<'a> {
    host: &'a str,
    version: Option<&'a str>,
    reason: &'a str,
}

/// What a trigger request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Triggered {
    Started(Deployment),
    /// 409: a deployment for the service or host is already running.
    Busy(String),
}

pub struct DeployClient {
    base: String,
    token: Option<Vec<u8>>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved bytes).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl DeployClient {
    pub fn new(cfg: &DeployConfig) -> DeployClient {
        let client = Client::builder(TokioExecutor::new()).build_http();
        DeployClient {
            base: cfg.url.clone(),
            token: cfg.token.as_ref().map(|t| t.expose().to_vec()),
            timeout: cfg.request_timeout,
            client,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), DeployError> {
        let m: &'static str = if method == Method::POST {
            "POST"
        } else {
            "GET"
        };
        let fail = |message: String| DeployError::Request {
            method: m,
            path: path.to_string(),
            message,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        req = req.header("accept", "application/json").header(
            "user-agent",
            concat!("fleetcheck-remediator/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(t) = &self.token {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(t);
            let mut hv = hyper::header::HeaderValue::from_bytes(&value)
                .map_err(|_| fail("the token is not a valid header value".into()))?;
            hv.set_sensitive(true);
            req = req.header("authorization", hv);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(fleetcheck_core::collect::transport::error_chain(&e)))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the body: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
    }

    fn decode<T: for<'de> Deserialize<'de>>(path: &str, body: &[u8]) -> Result<T, DeployError> {
        serde_json::from_slice(body).map_err(|e| DeployError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    fn status_error(
        method: &'static str,
        path: &str,
        status: StatusCode,
        body: &[u8],
    ) -> DeployError {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_string();
        DeployError::Status {
            method,
            path: path.to_string(),
            status: status.as_u16(),
            body: text,
        }
    }

    /// `GET /api/v1/services/{service}`.
    pub async fn service(&self, service: &str) -> Result<ServiceStatus, DeployError> {
        let path = format!("/api/v1/services/{}", segment(service));
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status != StatusCode::OK {
            return Err(Self::status_error("GET", &path, status, &body));
        }
        let w: WireService = Self::decode(&path, &body)?;
        Ok(ServiceStatus {
            version: w.version,
            deployment: w.deployment,
        })
    }

    /// `GET /api/v1/hosts/{host}`: the deployment running on the host, if
    /// any (a host the deployment system does not know has none).
    pub async fn host(&self, host: &str) -> Result<Option<Deployment>, DeployError> {
        let path = format!("/api/v1/hosts/{}", segment(host));
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(Self::status_error("GET", &path, status, &body));
        }
        Ok(Self::decode::<WireHost>(&path, &body)?.deployment)
    }

    /// `POST /api/v1/services/{service}/deployments`.
    pub async fn trigger(
        &self,
        service: &str,
        host: &str,
        version: Option<&str>,
        reason: &str,
    ) -> Result<Triggered, DeployError> {
        let path = format!("/api/v1/services/{}/deployments", segment(service));
        let body = serde_json::to_vec(&WireTrigger {
            host,
            version,
            reason,
        })
        .expect("serialisable");
        let (status, body) = self.call(Method::POST, &path, Some(body)).await?;
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => {
                Ok(Triggered::Started(Self::decode(&path, &body)?))
            }
            StatusCode::CONFLICT => Ok(Triggered::Busy(
                String::from_utf8_lossy(&body[..body.len().min(512)])
                    .trim()
                    .to_string(),
            )),
            _ => Err(Self::status_error("POST", &path, status, &body)),
        }
    }

    /// `GET /api/v1/deployments/{id}`.
    pub async fn deployment(&self, id: &str) -> Result<Deployment, DeployError> {
        let path = format!("/api/v1/deployments/{}", segment(id));
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status != StatusCode::OK {
            return Err(Self::status_error("GET", &path, status, &body));
        }
        Self::decode(&path, &body)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(super::segment("web-01"), "web-01");
        assert_eq!(super::segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
