//! Shared helpers for the remediator's integration tests: a running
//! `fleetcheck-remediator` in a temp dir, a tiny HTTP client, Alertmanager
//! payloads, authority files for the SSH test fleet, and polling.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetcheck_tests::fleet::TestFleet;
use serde_json::{json, Value};

pub const TOKEN: &str = "test-token-123";
pub const GOOD: &[u8] = b"good\n";
pub const DRIFTED: &[u8] = b"drifted\n";

pub fn good_md5() -> String {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(GOOD)?;
            c.wait_with_output()
        });
    String::from_utf8_lossy(&out.unwrap().stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes (then panics with `what`).
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP exchange with the remediator, as Alertmanager makes it; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
        headers.push(("User-Agent", "Alertmanager/0.25.0"));
    }
    let url = format!("http://127.0.0.1:{port}{path}");
    let r = fleetcheck_tests::http::request_bytes(method, &url, &headers, body)
        .expect("talk to the remediator");
    (r.status, r.body)
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// An Alertmanager v4 payload (the fields Alertmanager 0.25 really sends).
pub fn payload(alerts: &[(&str, &str, &str)]) -> Vec<u8> {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(status, entity, host)| {
            json!({
                "status": status,
                "labels": {"alertname": "FleetcheckEntityInconsistent", "entity": entity, "host": host, "severity": "ticket"},
                "annotations": {"summary": "inconsistent"},
                "startsAt": "2024-05-01T12:00:00.000Z",
                "endsAt": if *status == "firing" { "0001-01-01T00:00:00Z" } else { "2024-05-01T12:10:00Z" },
                "generatorURL": "",
                "fingerprint": format!("{:016x}", entity.len() * 1000 + host.len()),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "receiver": "fleetcheck-remediator",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "FleetcheckEntityInconsistent"},
        "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"FleetcheckEntityInconsistent\"}",
        "truncatedAlerts": 0
    }))
    .unwrap()
}

/// The authority's `hosts:` and `defaults:` for a fleet.
pub fn fleet_authority_head(fleet: &TestFleet) -> String {
    let mut s = format!(
        "defaults:\n  ssh: {{ user: root, connect_timeout: 5s, known_hosts: {}, identity_file: {} }}\n  check_timeout: 10s\nhosts:\n",
        fleet.known_hosts_file().display(),
        fleet.identity_file().display()
    );
    for h in fleet.hosts() {
        s.push_str(&format!(
            "  - {{ name: {}, address: {} }}\n",
            h.name, h.address
        ));
    }
    s
}

/// A test directory with config files and a remediator that can be (re)started.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// Writes `authority.yaml`, the token and `remediator.yaml` (`config_extra` appended).
    pub fn new(authority: &str, config_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authority.yaml"), authority).unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let config = format!(
            "authority: authority.yaml\nauth:\n  bearer_token_file: token\nretry: {{ max_attempts: 2, initial_backoff: 200ms, max_backoff: 1s }}\nhold_recheck: 500ms\ncooldown: 10m\ntimeouts: {{ repair: 60s, shutdown_grace: 10s }}\n{config_extra}"
        );
        std::fs::write(dir.path().join("remediator.yaml"), config).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let env = vec![
            ("HOME".to_string(), home.display().to_string()),
            (
                "ANSIBLE_LOCAL_TEMP".to_string(),
                dir.path().join("ansible-local").display().to_string(),
            ),
            (
                "ANSIBLE_REMOTE_TEMP".to_string(),
                "/tmp/.fleetcheck-ansible-remote".to_string(),
            ),
            ("ANSIBLE_HOST_KEY_CHECKING".to_string(), "True".to_string()),
        ];
        Setup {
            dir,
            port: free_port(),
            child: None,
            extra_args: Vec::new(),
            env,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetcheck-remediator"));
        c.arg("--config.file")
            .arg(self.path("remediator.yaml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--storage.path")
            .arg(self.path("data"))
            .arg("--log.level")
            .arg("debug")
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Starts the remediator and waits until it is ready.
    pub fn start(&mut self) {
        self.start_wrapped(|c| c);
    }

    /// Starts the remediator's command as `wrap` rewrites it (e.g. inside
    /// another program) and waits until it is ready.
    pub fn start_wrapped(&mut self, wrap: impl FnOnce(Command) -> Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("remediator.log"))
            .unwrap();
        let child = wrap(self.command())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start fleetcheck-remediator");
        self.child = Some(child);
        let port = self.port;
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the remediator exited ({status}) while starting; its log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/-/ready", None, b"").0 == 200
            {
                return;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                panic!(
                    "the remediator did not become ready; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("remediator.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().ok()?.code()
    }

    pub fn post_alerts(&self, alerts: &[(&str, &str, &str)]) -> (u16, String) {
        http(
            self.port,
            "POST",
            "/api/v1/alerts",
            Some(&bearer()),
            &payload(alerts),
        )
    }

    pub fn repairs(&self, query: &str) -> Vec<Value> {
        let (status, body) = http(
            self.port,
            "GET",
            &format!("/api/v1/repairs?{query}"),
            Some(&bearer()),
            b"",
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["repairs"].as_array().unwrap().clone()
    }

    /// Waits until the pair's newest job is in one of `states`, and returns it.
    #[track_caller]
    pub fn wait_job(&self, entity: &str, host: &str, states: &[&str], timeout: Duration) -> Value {
        let q = format!("entity={entity}&host={host}");
        let t0 = Instant::now();
        loop {
            let jobs = self.repairs(&q);
            if let Some(j) = jobs.first() {
                if states.contains(&j["state"].as_str().unwrap_or("")) {
                    return j.clone();
                }
            }
            if t0.elapsed() > timeout {
                panic!(
                    "job {entity}/{host} not in {states:?} after {timeout:?}: {}\nlog:\n{}",
                    serde_json::to_string_pretty(&jobs).unwrap(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http(self.port, "GET", "/metrics", None, b"");
        assert_eq!(status, 200);
        body
    }

    /// The value of one sample, e.g. `fleetcheck_remediator_jobs_total{outcome="verified"}`; 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Gate reasons in a job's history.
pub fn gate_reasons(job: &Value) -> Vec<String> {
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "gated")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A local repair command (the `command` executor) that logs each run to
/// `runs.log` as `start HOST` / `end HOST`, optionally sleeps, then writes
/// the good bytes into the host's files unless the host is listed in `broken`.
pub fn write_fix_script(setup: &Setup, fleet: &TestFleet, sleep: &str, broken: &[&str]) -> PathBuf {
    let mut s = String::from("#!/bin/sh\nset -e\nlog=\"$(dirname \"$0\")/runs.log\"\necho \"start $FLEETCHECK_HOST\" >> \"$log\"\n");
    s.push_str(&format!("sleep {sleep}\n"));
    s.push_str("case \"$FLEETCHECK_HOST\" in\n");
    for h in fleet.hosts() {
        if broken.contains(&h.name.as_str()) {
            s.push_str(&format!(
                "  {}) echo \"end $FLEETCHECK_HOST\" >> \"$log\"; echo broken >&2; exit 1;;\n",
                h.name
            ));
        } else {
            s.push_str(&format!(
                "  {}) printf 'good\\n' > {}/app.conf;;\n",
                h.name,
                h.root.display()
            ));
        }
    }
    s.push_str("  *) exit 3;;\nesac\necho \"end $FLEETCHECK_HOST\" >> \"$log\"\n");
    let path = setup.path("fix.sh");
    std::fs::write(&path, s).unwrap();
    Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    path
}

pub fn runs(setup: &Setup) -> Vec<String> {
    std::fs::read_to_string(setup.path("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An authority with entity `app` (file /srv/app.conf, good md5) on every fleet host, repaired by `repair` (YAML).
pub fn app_authority(fleet: &TestFleet, repair: &str) -> String {
    let mut s = fleet_authority_head(fleet);
    s.push_str(&format!(
        "entities:\n  - name: app\n    type: file\n    path: /srv/app.conf\n    md5: {}\n    entity_set: [\"host-[01:{:02}]\"]\n    repair_script:\n{repair}\n",
        good_md5(),
        fleet.hosts().len()
    ));
    s
}

pub fn drift(fleet: &TestFleet, host: &str) {
    fleet.write_file(host, "app.conf", DRIFTED).unwrap();
}

pub fn is_good(fleet: &TestFleet, host: &str) -> bool {
    std::fs::read(fleet.host(host).root.join("app.conf"))
        .map(|b| b == GOOD)
        .unwrap_or(false)
}

pub fn dir_of(p: &Path) -> &Path {
    p.parent().unwrap()
}
