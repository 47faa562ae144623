//! The HTTP surface: webhook intake, the journal query, metrics, health,
//! readiness and reload, behind a plain `match (method, path)` router.
//!
//! `/api/*` and `POST /-/reload` need the webhook credentials; `/metrics`,
//! `/-/healthy` and `/-/ready` do not (Prometheus scrapes them).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{self, Verdict};
use crate::engine::Engine;
use crate::journal::{Filter, JournalError};
use crate::webhook;

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).expect("serialisable"),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json(
        status,
        &serde_json::json!({ "status": "error", "error": message.into() }),
    )
}

/// Serves until `stop` turns true; connections already open finish their
/// current request.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, Infallible>(route(engine, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn authorize(engine: &Engine, req: &Request<Incoming>) -> Option<Resp> {
    let loaded = engine.loaded();
    match auth::check(
        &loaded.config.auth,
        req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes),
    ) {
        Verdict::Allowed => None,
        Verdict::Missing => {
            let mut r = error(StatusCode::UNAUTHORIZED, "authentication required");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fleetcheck-remediator\""),
            );
            Some(r)
        }
        Verdict::Denied => Some(error(StatusCode::FORBIDDEN, "invalid credentials")),
    }
}

async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => text(
            StatusCode::OK,
            "fleetcheck-remediator\n\nPOST /api/v1/alerts  Alertmanager webhook\nGET  /api/v1/repairs journal (entity, host, state, limit)\nGET  /metrics\nGET  /-/healthy\nGET  /-/ready\nPOST /-/reload\n",
        ),
        (Method::GET, "/metrics") => {
            engine.refresh_gauges();
            let mut r = Response::new(Full::new(Bytes::from(engine.metrics.encode())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        (Method::GET, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
        (Method::GET, "/-/ready") => {
            if engine.is_stopping() {
                text(StatusCode::SERVICE_UNAVAILABLE, "Stopping\n")
            } else if let Err(e) = engine.journal.ping() {
                text(StatusCode::SERVICE_UNAVAILABLE, format!("journal unavailable: {:#}\n", anyhow::Error::from(e)))
            } else {
                text(StatusCode::OK, "Ready\n")
            }
        }
        (Method::POST, "/-/reload") => {
            if let Some(r) = authorize(&engine, &req) {
                return r;
            }
            let e = engine.clone();
            match tokio::task::spawn_blocking(move || e.reload()).await {
                Ok(Ok(())) => text(StatusCode::OK, "config reloaded\n"),
                Ok(Err(err)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("reload failed: {:#}\n", anyhow::Error::from(err))),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "reload failed\n"),
            }
        }
        (Method::POST, "/api/v1/alerts") => {
            if let Some(r) = authorize(&engine, &req) {
                return r;
            }
            alerts(engine, req).await
        }
        (Method::GET, "/api/v1/repairs") => {
            if let Some(r) = authorize(&engine, &req) {
                return r;
            }
            repairs(engine, req.uri().query().unwrap_or("")).await
        }
        (_, "/" | "/metrics" | "/-/healthy" | "/-/ready" | "/-/reload" | "/api/v1/alerts" | "/api/v1/repairs") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn alerts(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    if engine.is_stopping() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the remediator is stopping; retry later",
        );
    }
    let max = engine.loaded().config.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body exceeds {max} bytes"),
        );
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {max} bytes"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let events = match webhook::parse(&body) {
        Ok(ev) => ev,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let e = engine.clone();
    match tokio::task::spawn_blocking(move || e.intake(events)).await {
        Ok(Ok(summary)) => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "data": summary }),
        ),
        Ok(Err(JournalError::QueueFull(n))) => {
            tracing::warn!(jobs = n, "queue full: refusing a delivery");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the queue is full ({n} jobs); retry later"),
            )
        }
        Ok(Err(err)) => {
            let msg = format!("{:#}", anyhow::Error::from(err));
            tracing::error!(error = %msg, "journal unavailable: refusing a delivery");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("journal unavailable: {msg}"),
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "intake failed; retry later",
        ),
    }
}

async fn repairs(engine: Arc<Engine>, query: &str) -> Resp {
    let mut filter = Filter {
        limit: 100,
        ..Filter::default()
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "entity" => filter.entity = Some(v),
            "host" => filter.host = Some(v),
            "state" => filter.state = Some(v),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => filter.limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "limit must be a number from 1 to 10000",
                    )
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}"),
                )
            }
        }
    }
    let e = engine.clone();
    match tokio::task::spawn_blocking(move || e.journal.query(&filter)).await {
        Ok(Ok(rows)) => {
            let repairs: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(job, events)| {
                    let mut v = serde_json::to_value(&job).expect("serialisable");
                    v["events"] = serde_json::to_value(&events).expect("serialisable");
                    v
                })
                .collect();
            json(
                StatusCode::OK,
                &serde_json::json!({ "status": "success", "data": { "repairs": repairs } }),
            )
        }
        Ok(Err(err)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("journal unavailable: {:#}", anyhow::Error::from(err)),
        ),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}
