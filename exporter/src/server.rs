//! The HTTP surface: `/`, the telemetry path, `/-/healthy`, `/-/ready`,
//! `POST /-/reload` and `/api/v1/status`, behind optional basic auth.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::{self, Exposition};
use crate::shutdown::Shutdown;
use crate::state::Shared;
use crate::webconfig::WebConfig;
use crate::{landing, status};

pub struct Server {
    pub shared: Arc<Shared>,
    pub web: WebConfig,
    pub telemetry_path: String,
    pub pair_series: bool,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("valid header"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

impl Server {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.web.authorize(auth).await {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fleetcheck\""),
            );
            return r;
        }
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, p) if p == self.telemetry_path => self.metrics(),
            (&Method::GET | &Method::HEAD, "/") => {
                let html = landing::render(
                    &self.shared.authority(),
                    self.shared.snapshot().as_deref(),
                    &self.telemetry_path,
                );
                respond(StatusCode::OK, "text/html; charset=utf-8", html)
            }
            (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
            (&Method::GET | &Method::HEAD, "/-/ready") => {
                if self.shared.is_ready() {
                    text(StatusCode::OK, "Ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Not ready: the first collection cycle has not finished\n",
                    )
                }
            }
            (&Method::POST | &Method::PUT, "/-/reload") => match self.shared.reload().await {
                Ok(()) => text(StatusCode::OK, "Reloaded\n"),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reload failed, keeping the last good authority:\n{e}\n"),
                ),
            },
            (&Method::GET, "/api/v1/status") => {
                let query = req.uri().query().unwrap_or("");
                let body = status::render(
                    &self.shared.authority(),
                    self.shared.snapshot().as_deref(),
                    query,
                );
                respond(StatusCode::OK, "application/json", body)
            }
            (_, "/-/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
            _ => text(StatusCode::NOT_FOUND, "Not found\n"),
        }
    }

    fn metrics(&self) -> Response<Body> {
        let authority = self.shared.authority();
        let snapshot = self.shared.snapshot();
        let body = metrics::encode(&Exposition {
            authority: &authority,
            snapshot: snapshot.as_deref(),
            reload: self.shared.reload_status(),
            pair_series: self.pair_series,
        });
        respond(StatusCode::OK, prometheus::TEXT_FORMAT, body)
    }
}

/// Serves connections until `shutdown`, then lets in-flight requests finish
/// for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = server.web.tls.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let server = server.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .to_owned();
            let result = match &tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
}
