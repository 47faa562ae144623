//! `DeploySystemDouble`: a small in-process HTTP server that speaks the
//! deployment-system contract of `docs/deploy-system.md`, for tests.
//!
//! It keeps services (version, running deployment), hosts with a running
//! deployment, and the deployments it was asked to start. A triggered
//! deployment is `running` until its first poll, when the test's `on_deploy`
//! callback performs it (e.g. writes the file on a fleet host) and its
//! result decides `succeeded` or `failed`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

type OnDeploy = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

#[derive(Default)]
struct State {
    /// service → (version, running deployment id)
    services: HashMap<String, (String, Option<String>)>,
    /// host → running deployment id
    hosts: HashMap<String, String>,
    /// id → (service, host, state)
    deployments: HashMap<String, (String, String, String)>,
    requests: Vec<String>,
}

/// The test double; stops when dropped.
pub struct DeploySystemDouble {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn deployment(id: &str, state: &str) -> Value {
    json!({ "id": id, "state": state })
}

impl DeploySystemDouble {
    /// Starts the double on a free loopback port. `on_deploy(service, host)`
    /// performs a deployment and says whether it succeeded.
    pub fn start(
        on_deploy: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> DeploySystemDouble {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the deploy double");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let on_deploy: Arc<OnDeploy> = Arc::new(Box::new(on_deploy));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::pin!(stopped);
                loop {
                    let (stream, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let st = st.clone();
                    let on_deploy = on_deploy.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let st = st.clone();
                            let on_deploy = on_deploy.clone();
                            async move { Ok::<_, Infallible>(handle(req, &st, &on_deploy).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        DeploySystemDouble {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Declares a service and the version the deployment system rolls out.
    pub fn set_service(&self, service: &str, version: &str) {
        let mut s = self.state.lock().unwrap();
        let running = s.services.get(service).and_then(|(_, r)| r.clone());
        s.services
            .insert(service.to_string(), (version.to_string(), running));
    }

    /// Marks a deployment of `service` as running (or none).
    pub fn set_service_running(&self, service: &str, running: bool) {
        let mut s = self.state.lock().unwrap();
        let entry = s.services.entry(service.to_string()).or_default();
        entry.1 = running.then(|| "rollout-1".to_string());
    }

    /// Marks a deployment as running on `host` (or none).
    pub fn set_host_running(&self, host: &str, running: bool) {
        let mut s = self.state.lock().unwrap();
        if running {
            s.hosts.insert(host.to_string(), "rollout-1".to_string());
        } else {
            s.hosts.remove(host);
        }
    }

    /// Every (service, host) a deployment was triggered for.
    pub fn triggered(&self) -> Vec<(String, String)> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<(String, String, String)> = s
            .deployments
            .iter()
            .map(|(id, (svc, host, _))| (id.clone(), svc.clone(), host.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s, h)| (s, h)).collect()
    }

    /// Every request line received, e.g. `GET /api/v1/hosts/host-01`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for DeploySystemDouble {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    st: &Mutex<State>,
    on_deploy: &OnDeploy,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    st.lock().unwrap().requests.push(format!("{method} {path}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["api", "v1", "services", service]) => {
            let s = st.lock().unwrap();
            match s.services.get(*service) {
                None => reply(StatusCode::NOT_FOUND, json!({"error": "unknown service"})),
                Some((version, running)) => reply(
                    StatusCode::OK,
                    json!({ "service": service, "version": version,
                            "deployment": running.as_ref().map(|id| deployment(id, "running")) }),
                ),
            }
        }
        (Method::GET, ["api", "v1", "hosts", host]) => {
            let s = st.lock().unwrap();
            let running = s.hosts.get(*host).map(|id| deployment(id, "running"));
            reply(
                StatusCode::OK,
                json!({ "host": host, "deployment": running }),
            )
        }
        (Method::POST, ["api", "v1", "services", service, "deployments"]) => {
            let req: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            };
            let host = req["host"].as_str().unwrap_or_default().to_string();
            let mut s = st.lock().unwrap();
            if !s.services.contains_key(*service) {
                return reply(StatusCode::NOT_FOUND, json!({"error": "unknown service"}));
            }
            if s.hosts.contains_key(&host) || s.services[*service].1.is_some() {
                return reply(
                    StatusCode::CONFLICT,
                    json!({"error": "a deployment is running"}),
                );
            }
            let id = format!("d-{}", s.deployments.len() + 1);
            s.deployments.insert(
                id.clone(),
                (service.to_string(), host, "running".to_string()),
            );
            reply(StatusCode::CREATED, deployment(&id, "running"))
        }
        (Method::GET, ["api", "v1", "deployments", id]) => {
            let pending = {
                let s = st.lock().unwrap();
                match s.deployments.get(*id) {
                    None => {
                        return reply(
                            StatusCode::NOT_FOUND,
                            json!({"error": "unknown deployment"}),
                        )
                    }
                    Some((svc, host, state)) => (svc.clone(), host.clone(), state.clone()),
                }
            };
            let state = if pending.2 == "running" {
                let ok = on_deploy(&pending.0, &pending.1);
                let state = if ok { "succeeded" } else { "failed" };
                st.lock().unwrap().deployments.get_mut(*id).unwrap().2 = state.to_string();
                state.to_string()
            } else {
                pending.2
            };
            reply(StatusCode::OK, deployment(id, &state))
        }
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    }
}
