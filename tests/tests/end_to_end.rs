//! End to end with the real programs, all on loopback with temporary directories: the SSH test
//! fleet, `fleetcheck-exporter` (collecting every second), `fleetcheck-remediator`, Prometheus
//! with the rules of `rules/` (only their `for:` shortened), Alertmanager routing
//! `FleetcheckEntityInconsistent` to the remediator, `ansible-playbook`, and the
//! deployment-system double (the one stand-in: no deployment system can be installed).
//!
//! Each test function starts its own stack once and runs its cases in order:
//!
//! - `ansible_repair_closes_the_loop_and_every_dashboard_panel_has_data`: drift on one host →
//!   the exporter's gauge drops to 0 → Prometheus fires the alert → Alertmanager delivers it →
//!   the remediator repairs with Ansible and verifies → the gauge is back to 1 → the alert
//!   resolves. Then a drift on most hosts of another entity opens the circuit breaker (a held
//!   entity), and every panel query of every dashboard must return data from this Prometheus.
//! - `deploy_repair_closes_the_loop_and_waits_for_a_running_deployment`: the same loop through
//!   the deployment system; then a drift on a host where a deployment runs is deferred
//!   (`deployment_running`, nothing triggered) and repaired once the deployment ends.
//!
//! The two binaries are the ones next to this test executable (`fleetcheck_tests::bins`):
//! `cargo build --workspace --bins` must run before `cargo test` (scripts/test does). The time
//! from drift to verified repair, and its stages, are printed (`--nocapture`).
//! Every wait polls with a deadline; on timeout the remediator's journal and the alerts of
//! Prometheus and Alertmanager are printed, and the logs of every daemon follow as the test
//! unwinds.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetcheck_tests::daemon::{free_addr, Daemon};
use fleetcheck_tests::dashboards::{expand_variables, load_dashboards, panel_queries};
use fleetcheck_tests::deploy_double::DeploySystemDouble;
use fleetcheck_tests::fleet::TestFleet;
use fleetcheck_tests::stack::{
    copy_rules_with_short_for, remediator_alertmanager_config, repo_root, sample_value,
    Alertmanager, Prometheus, PrometheusSettings,
};
use fleetcheck_tests::{bins, http, prom, require_tool};
use serde_json::Value;

const ANSIBLE_HINT: &str = "install it with `apt-get install ansible-core` \
     (the README's test command, scripts/test, does this)";

/// The webhook's bearer token (the remediator's and Alertmanager's credentials file).
const TOKEN: &str = "end-to-end-token-7d41c9";
/// The alert the remediator acts on.
const ALERT: &str = "FleetcheckEntityInconsistent";
/// Hosts in each test's fleet.
const HOSTS: usize = 3;

/// The bytes of the Ansible-repaired entity `motd`.
const MOTD_GOOD: &[u8] = b"Welcome to the fleet. Managed by fleetcheck.\n";
const MOTD_DRIFTED: &[u8] = b"Welcome to the fleet. Hand-edited at 3am.\n";
/// The bytes of `agent-config`, which drifts on most hosts at once (the circuit breaker).
const AGENT_CONFIG_GOOD: &[u8] = b"threads = 8\nlisten = 127.0.0.1:7000\n";
const AGENT_CONFIG_DRIFTED: &[u8] = b"threads = 64\nlisten = 0.0.0.0:7000\n";
/// The bytes of `paas-agent`, repaired by the deployment system.
const PAAS_AGENT_GOOD: &[u8] = b"\x7fELF paas-agent 1.2.3\n";
const PAAS_AGENT_DRIFTED: &[u8] = b"\x7fELF paas-agent 1.1.0\n";

/// Deadlines. Generous: they only matter when something is broken.
const STACK_READY: Duration = Duration::from_secs(60);
const TO_GAUGE: Duration = Duration::from_secs(20);
const TO_ALERT: Duration = Duration::from_secs(30);
const TO_WEBHOOK: Duration = Duration::from_secs(30);
const TO_VERIFIED: Duration = Duration::from_secs(120);
const TO_RESOLVED: Duration = Duration::from_secs(30);
const TO_DASHBOARD_DATA: Duration = Duration::from_secs(45);

fn md5(data: &[u8]) -> String {
    use md5::Digest as _;
    format!("{:x}", md5::Md5::digest(data))
}

/// Seconds since the Unix epoch, the clock Prometheus and the journal use.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Everything one test runs; dropped (daemons killed, directories removed) in field order.
struct Stack {
    prometheus: Prometheus,
    alertmanager: Alertmanager,
    /// Kept running for the stack's lifetime (its log is printed if the test panics).
    _remediator: Daemon,
    remediator_addr: SocketAddr,
    _exporter: Daemon,
    exporter_addr: SocketAddr,
    fleet: Arc<TestFleet>,
    work: tempfile::TempDir,
}

impl Stack {
    /// Writes the authority (the fleet's hosts and `entities`, a YAML list) and a
    /// `remediator.yaml` modelled on `examples/remediator.yaml` with short timings (plus
    /// `remediator_extra`), then starts the exporter, the remediator, Alertmanager and
    /// Prometheus, and waits until Prometheus has scraped both.
    fn start(fleet: Arc<TestFleet>, entities: &str, remediator_extra: &str) -> Stack {
        require_tool("ansible-playbook", ANSIBLE_HINT);
        let exporter_bin = bins::path("fleetcheck-exporter");
        let remediator_bin = bins::path("fleetcheck-remediator");
        let work = tempfile::Builder::new()
            .prefix("fleetcheck-e2e-")
            .tempdir()
            .unwrap();
        let dir = work.path();

        let mut authority = format!(
            "defaults:\n  ssh: {{ user: root, connect_timeout: 5s, known_hosts: {}, identity_file: {} }}\n  check_timeout: 10s\nhosts:\n",
            fleet.known_hosts_file().display(),
            fleet.identity_file().display()
        );
        for h in fleet.hosts() {
            writeln!(
                authority,
                "  - {{ name: {}, address: {} }}",
                h.name, h.address
            )
            .unwrap();
        }
        writeln!(
            authority,
            "groups:\n  fleet: [\"host-[01:{HOSTS:02}]\"]\nentities:\n{entities}"
        )
        .unwrap();
        std::fs::write(dir.join("authority.yaml"), authority).unwrap();
        let token = dir.join("remediator.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        std::fs::write(
            dir.join("remediator.yaml"),
            format!(
                "authority: authority.yaml
auth:
  bearer_token_file: remediator.token
limits: {{ global_concurrency: 4, entity_concurrency: 1, repairs_per_hour: 20 }}
cooldown: 2s
circuit_breaker: {{ max_drifted_share: 0.5, min_drifted_hosts: 2, recheck_interval: 1s }}
waves: {{ steps: [1, \"5%\", \"25%\", \"100%\"], min_hosts: 3, halt_for: 1m }}
retry: {{ max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }}
hold_recheck: 500ms
timeouts: {{ repair: 60s, shutdown_grace: 5s }}
ansible: {{ playbook_binary: ansible-playbook, extra_args: [] }}
collector: {{ concurrency: 4, max_sessions: 8 }}
{remediator_extra}"
            ),
        )
        .unwrap();

        let exporter_addr = free_addr();
        let mut exporter = Daemon::start(
            &exporter_bin,
            &[
                "--config.file",
                dir.join("authority.yaml").to_str().unwrap(),
                "--web.listen-address",
                &exporter_addr.to_string(),
                "--collect.interval",
                "1s",
            ],
            &dir.join("exporter.log"),
        )
        .unwrap();
        exporter
            .wait_ready(&format!("http://{exporter_addr}/-/ready"), STACK_READY)
            .unwrap();

        // Ansible gets a home and temporary directories of its own, like a service user.
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let remediator_addr = free_addr();
        let mut remediator = Daemon::start_with(
            Command::new(&remediator_bin)
                .arg("--config.file")
                .arg(dir.join("remediator.yaml"))
                .arg("--web.listen-address")
                .arg(remediator_addr.to_string())
                .arg("--storage.path")
                .arg(dir.join("journal"))
                .arg("--log.level")
                .arg("debug")
                .env("HOME", &home)
                .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-local"))
                .env("ANSIBLE_REMOTE_TEMP", "/tmp/.fleetcheck-ansible-remote"),
            &dir.join("remediator.log"),
        )
        .unwrap();
        remediator
            .wait_ready(&format!("http://{remediator_addr}/-/ready"), STACK_READY)
            .unwrap();

        let alertmanager = Alertmanager::start(&remediator_alertmanager_config(
            &format!("http://{remediator_addr}/api/v1/alerts"),
            &token,
            "1s",
            "1s",
        ))
        .unwrap();
        let rules = copy_rules_with_short_for(&repo_root().join("rules"), &dir.join("rules"), "1s")
            .unwrap();
        let prometheus = Prometheus::start(&PrometheusSettings {
            interval: "1s".to_string(),
            scrape: vec![
                ("fleetcheck".to_string(), exporter_addr),
                ("fleetcheck-remediator".to_string(), remediator_addr),
            ],
            rule_files: rules,
            alertmanagers: vec![alertmanager.addr()],
        })
        .unwrap();

        let stack = Stack {
            prometheus,
            alertmanager,
            _remediator: remediator,
            remediator_addr,
            _exporter: exporter,
            exporter_addr,
            fleet,
            work,
        };
        for job in ["fleetcheck", "fleetcheck-remediator"] {
            stack.wait_for(
                &format!("Prometheus scrapes job {job}"),
                STACK_READY,
                || {
                    stack
                        .has_data(&format!("up{{job=\"{job}\"}} == 1"))
                        .then_some(())
                },
            );
        }
        stack
    }

    /// Polls `probe` every 100 ms until it returns a value; on timeout panics with `what` and
    /// the state of every part (the daemons' logs follow as the test unwinds).
    #[track_caller]
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe() {
                return value;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting until {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The remediator's journal, the exporter's inconsistent pairs and the alerts of
    /// Prometheus and Alertmanager, for a failure message.
    fn diagnostics(&self) -> String {
        let show = |what: &str, value: Result<Value, anyhow::Error>| match value {
            Ok(v) => format!(
                "---- {what} ----\n{}\n",
                serde_json::to_string_pretty(&v).unwrap()
            ),
            Err(e) => format!("---- {what} ----\n(unavailable: {e:#})\n"),
        };
        let exporter_status = http::get(&format!("http://{}/api/v1/status", self.exporter_addr))
            .and_then(|r| Ok(serde_json::from_str::<Value>(&r.body)?));
        [
            show(
                "remediator journal (/api/v1/repairs)",
                self.remediator_get("/api/v1/repairs"),
            ),
            show("exporter status (/api/v1/status)", exporter_status),
            show("Prometheus alerts", self.prometheus.alerts()),
            show("Alertmanager alerts", self.alertmanager.alerts()),
            format!(
                "(work directory {}; Prometheus config {})\n",
                self.work.path().display(),
                self.prometheus.config_file().display()
            ),
        ]
        .concat()
    }

    /// Whether the query returns at least one sample (errors count as no data).
    fn has_data(&self, expr: &str) -> bool {
        self.prometheus.query(expr).is_ok_and(|r| !r.is_empty())
    }

    /// An authenticated GET on the remediator, parsed.
    fn remediator_get(&self, path: &str) -> anyhow::Result<Value> {
        let authorization = format!("Bearer {TOKEN}");
        let response = http::request(
            "GET",
            &format!("http://{}{path}", self.remediator_addr),
            &[("Authorization", &authorization)],
            "",
        )?;
        anyhow::ensure!(
            response.status == 200,
            "GET {path}: HTTP {}: {}",
            response.status,
            response.body
        );
        Ok(serde_json::from_str(&response.body)?)
    }

    /// The pair's jobs, newest first (empty while the remediator cannot answer).
    fn jobs(&self, entity: &str, host: &str) -> Vec<Value> {
        self.remediator_get(&format!("/api/v1/repairs?entity={entity}&host={host}"))
            .ok()
            .and_then(|v| v["data"]["repairs"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The remediator's samples.
    fn remediator_metrics(&self) -> Vec<prom::Sample> {
        let body = http::get(&format!("http://{}/metrics", self.remediator_addr))
            .unwrap()
            .body;
        prom::parse(&body)
    }

    /// The exporter's (`fleetcheck_entity_consistent`, last check timestamp) for the pair.
    fn exporter_pair(&self, entity: &str, host: &str) -> Option<(f64, f64)> {
        let body = http::get(&format!("http://{}/metrics", self.exporter_addr))
            .ok()?
            .body;
        let samples = prom::parse(&body);
        let labels = [("entity", entity), ("host", host)];
        Some((
            prom::value(&samples, "fleetcheck_entity_consistent", &labels)?,
            prom::value(
                &samples,
                "fleetcheck_entity_last_check_timestamp_seconds",
                &labels,
            )?,
        ))
    }

    /// The PromQL selector of the pair's firing alert.
    fn firing(entity: &str, host: &str) -> String {
        format!(
            "ALERTS{{alertname=\"{ALERT}\",entity=\"{entity}\",host=\"{host}\",alertstate=\"firing\"}}"
        )
    }

    /// Waits until the pair is consistent in the exporter and in Prometheus, with no alert.
    fn wait_consistent_everywhere(&self, entity: &str, host: &str) {
        self.wait_for(
            &format!("the exporter reports {entity}@{host} consistent"),
            TO_GAUGE,
            || (self.exporter_pair(entity, host)?.0 == 1.0).then_some(()),
        );
        self.wait_for(
            &format!("Prometheus has {entity}@{host} consistent and no alert for it"),
            TO_RESOLVED,
            || {
                let gauge = format!(
                    "fleetcheck_entity_consistent{{entity=\"{entity}\",host=\"{host}\"}} == 1"
                );
                (self.has_data(&gauge) && !self.has_data(&Self::firing(entity, host))).then_some(())
            },
        );
    }

    /// Plants `drifted` at `rel` on `host`, then follows the loop: the exporter's gauge drops
    /// to 0, Prometheus fires the alert, the remediator journals the webhook, and a job of
    /// the pair ends `verified`. Returns the timeline and the verified job.
    fn drift_until_verified(
        &self,
        entity: &str,
        host: &str,
        rel: &str,
        drifted: &[u8],
    ) -> (Timeline, Value) {
        let drift = now();
        self.fleet.write_file(host, rel, drifted).unwrap();
        let (_, checked) = self.wait_for(
            &format!("the exporter reports {entity}@{host} inconsistent"),
            TO_GAUGE,
            || self.exporter_pair(entity, host).filter(|(v, _)| *v == 0.0),
        );
        self.wait_for(
            &format!("Prometheus fires {ALERT} for {entity}@{host}"),
            TO_ALERT,
            || self.has_data(&Self::firing(entity, host)).then_some(()),
        );
        let job = self.wait_for(
            &format!("the remediator journals the webhook for {entity}@{host}"),
            TO_WEBHOOK,
            || self.jobs(entity, host).pop(),
        );
        let verified = self.wait_for(
            &format!("a repair of {entity}@{host} is verified"),
            TO_VERIFIED,
            || {
                let jobs = self.jobs(entity, host);
                if let Some(failed) = jobs.iter().find(|j| j["state"] == "failed") {
                    panic!(
                        "the repair of {entity}@{host} failed: {failed:#}\n{}",
                        self.diagnostics()
                    );
                }
                jobs.into_iter().find(|j| j["state"] == "verified")
            },
        );
        assert_eq!(
            job["id"], verified["id"],
            "the first job of the pair is the one verified"
        );
        let timeline = Timeline {
            drift,
            checked,
            fired: verified["starts_at"]
                .as_f64()
                .expect("the alert's startsAt is journaled"),
            received: verified["received_at"].as_f64().unwrap(),
            started: verified["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == "started")
                .and_then(|e| e["at"].as_f64())
                .expect("the repair's start is journaled"),
            verified: verified["finished_at"].as_f64().unwrap(),
        };
        timeline.assert_in_order(&format!("{entity}@{host}"));
        (timeline, verified)
    }
}

/// When each step of one repair happened (seconds since the epoch, one clock for all).
struct Timeline {
    /// The test planted the drift.
    drift: f64,
    /// The exporter's check that first saw it (the gauge's 0).
    checked: f64,
    /// Prometheus fired the alert (its `startsAt`, as the remediator journaled it).
    fired: f64,
    /// The remediator journaled the webhook.
    received: f64,
    /// The repair started (the gates, re-check of the pair included, had passed).
    started: f64,
    /// The remediator journaled the verified repair.
    verified: f64,
}

impl Timeline {
    #[track_caller]
    fn assert_in_order(&self, pair: &str) {
        // The exporter's timestamp is the cycle's and may be taken just before the drift; the
        // rest must follow one another.
        let steps = [
            ("drift", self.drift - 1.0),
            ("exporter check", self.checked),
            ("alert fired", self.fired),
            ("webhook received", self.received),
            ("repair started", self.started),
            ("verified", self.verified),
        ];
        for pair_of_steps in steps.windows(2) {
            let [(a, ta), (b, tb)] = pair_of_steps else {
                unreachable!()
            };
            assert!(ta <= tb, "{pair}: {a} at {ta:.3} is after {b} at {tb:.3}");
        }
    }

    fn report(&self, label: &str) -> String {
        format!(
            "{label}: drift -> verified {:.1}s (drift -> exporter 0 {:.1}s, -> alert firing {:.1}s; \
             firing -> webhook {:.1}s; webhook -> verified {:.1}s: gates {:.1}s, repair and \
             verification {:.1}s)",
            self.verified - self.drift,
            (self.checked - self.drift).max(0.0),
            self.fired - self.drift,
            self.received - self.fired,
            self.verified - self.received,
            self.started - self.received,
            self.verified - self.started,
        )
    }
}

/// A file entity of every host.
fn file_entity(name: &str, rel: &str, good: &[u8], extra: &str) -> String {
    format!(
        "  - name: {name}\n    type: file\n    path: /srv/{rel}\n    md5: {}\n    entity_set: [fleet]\n{extra}",
        md5(good)
    )
}

/// `repair_script` restoring a file with `examples/playbooks/restore-file.yml`.
fn ansible_restore(content: &[u8]) -> String {
    let playbook = repo_root().join("examples/playbooks/restore-file.yml");
    let content = Value::from(std::str::from_utf8(content).unwrap());
    format!(
        "    repair_script:\n      ansible:\n        playbook: {}\n        extra_vars: {{ content: {content}, ansible_python_interpreter: /usr/bin/python3 }}\n",
        playbook.display()
    )
}

fn read_on_host(fleet: &TestFleet, host: &str, rel: &str) -> Vec<u8> {
    std::fs::read(fleet.host(host).root.join(rel)).unwrap_or_default()
}

fn metric(samples: &[prom::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::value(samples, name, labels).unwrap_or(0.0)
}

#[test]
fn ansible_repair_closes_the_loop_and_every_dashboard_panel_has_data() {
    let fleet = Arc::new(TestFleet::start(HOSTS).unwrap());
    for h in fleet.hosts() {
        fleet.write_file(&h.name, "etc/motd", MOTD_GOOD).unwrap();
        fleet
            .write_file(&h.name, "agent/config.toml", AGENT_CONFIG_GOOD)
            .unwrap();
    }
    let entities = [
        file_entity("motd", "etc/motd", MOTD_GOOD, &ansible_restore(MOTD_GOOD)),
        file_entity(
            "agent-config",
            "agent/config.toml",
            AGENT_CONFIG_GOOD,
            &ansible_restore(AGENT_CONFIG_GOOD),
        ),
    ]
    .concat();
    let stack = Stack::start(fleet.clone(), &entities, "");
    stack.wait_consistent_everywhere("motd", "host-02");

    // Case 1: the Ansible path.
    let (timeline, job) = stack.drift_until_verified("motd", "host-02", "etc/motd", MOTD_DRIFTED);
    assert_eq!(job["method"], "ansible", "{job:#}");
    assert!(
        job["fingerprint"].as_str().is_some_and(|f| !f.is_empty()),
        "the job came from Alertmanager (it carries the alert's fingerprint): {job:#}"
    );
    let output = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "output")
        .expect("the attempt's output is journaled");
    assert!(
        output["detail"]
            .as_str()
            .is_some_and(|d| d.contains("PLAY RECAP")),
        "{output:#}"
    );
    assert_eq!(read_on_host(&fleet, "host-02", "etc/motd"), MOTD_GOOD);
    stack.wait_consistent_everywhere("motd", "host-02");
    let samples = stack.remediator_metrics();
    assert!(
        metric(
            &samples,
            "fleetcheck_remediator_jobs_total",
            &[("outcome", "verified")]
        ) >= 1.0
    );
    assert!(
        metric(
            &samples,
            "fleetcheck_remediator_repairs_total",
            &[("method", "ansible"), ("result", "success")]
        ) >= 1.0
    );
    assert!(
        metric(
            &samples,
            "fleetcheck_remediator_time_to_repair_seconds_count",
            &[]
        ) >= 1.0
    );
    eprintln!("{}", timeline.report("ansible repair of motd@host-02"));

    // Case 4 needs a held entity and inconsistent pairs: a drift on two of the three hosts of
    // agent-config is more than the circuit breaker's 50 %, so its repairs are held.
    for host in ["host-01", "host-02"] {
        fleet
            .write_file(host, "agent/config.toml", AGENT_CONFIG_DRIFTED)
            .unwrap();
    }
    stack.wait_for(
        "the remediator holds agent-config (circuit_open)",
        TO_ALERT + TO_WEBHOOK,
        || {
            let held = stack
                .jobs("agent-config", "host-01")
                .first()
                .is_some_and(|j| j["state"] == "held" && j["reason"] == "circuit_open");
            let suppressed = metric(
                &stack.remediator_metrics(),
                "fleetcheck_remediator_suppressed",
                &[("entity", "agent-config"), ("reason", "circuit_open")],
            ) == 1.0;
            (held && suppressed).then_some(())
        },
    );

    // Case 4: every panel query of every dashboard returns data from this Prometheus.
    let root = repo_root();
    let queries = panel_queries(&root).unwrap();
    assert!(queries.len() >= 20, "only {} panel queries", queries.len());
    let mut problems = Vec::new();
    let deadline = Instant::now() + TO_DASHBOARD_DATA;
    loop {
        problems.clear();
        for q in &queries {
            let expr = expand_variables(&q.expr);
            let at = format!("{} / {:?}: {expr}", q.dashboard_uid, q.panel_title);
            match stack.prometheus.query(&expr) {
                Err(e) => problems.push(format!("{at}: {e:#}")),
                Ok(result) if result.is_empty() => problems.push(format!("{at}: no data")),
                // NaN is what Grafana shows for a ratio or quantile over nothing: no data either.
                Ok(result)
                    if !result
                        .iter()
                        .any(|s| sample_value(s).is_some_and(|v| !v.is_nan())) =>
                {
                    problems.push(format!("{at}: only NaN: {}", Value::from(result)))
                }
                Ok(_) => {}
            }
        }
        for d in load_dashboards(&root).unwrap() {
            for var in d.variables().iter().filter(|v| v["type"] == "query") {
                let query = var["query"]["query"].as_str().unwrap_or_default();
                let Some((selector, label)) = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.strip_suffix(')'))
                    .and_then(|q| q.rsplit_once(','))
                else {
                    problems.push(format!(
                        "{} / variable {}: cannot read {query:?}",
                        d.uid(),
                        var["name"]
                    ));
                    continue;
                };
                match stack.prometheus.label_values(label.trim(), selector.trim()) {
                    Ok(values) if !values.is_empty() => {}
                    Ok(_) => problems.push(format!(
                        "{} / variable {}: {query}: no values",
                        d.uid(),
                        var["name"]
                    )),
                    Err(e) => problems.push(format!(
                        "{} / variable {}: {query}: {e:#}",
                        d.uid(),
                        var["name"]
                    )),
                }
            }
        }
        if problems.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} of {} dashboard queries return no data after {TO_DASHBOARD_DATA:?}:\n  {}\n{}",
                problems.len(),
                queries.len(),
                problems.join("\n  "),
                stack.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "all {} dashboard panel queries and every variable returned data from Prometheus",
        queries.len()
    );

    // The held entity was not touched.
    for host in ["host-01", "host-02"] {
        assert_eq!(
            read_on_host(&fleet, host, "agent/config.toml"),
            AGENT_CONFIG_DRIFTED,
            "{host}: a held entity must not be repaired"
        );
    }
}

#[test]
fn deploy_repair_closes_the_loop_and_waits_for_a_running_deployment() {
    let fleet = Arc::new(TestFleet::start(HOSTS).unwrap());
    for h in fleet.hosts() {
        fleet
            .write_file(&h.name, "paas/agent", PAAS_AGENT_GOOD)
            .unwrap();
    }
    // The deployment system: a deployment of paas-agent to a host writes the right bytes there.
    let deployed_to = fleet.clone();
    let double = DeploySystemDouble::start(move |service, host| {
        service == "paas-agent"
            && deployed_to
                .write_file(host, "paas/agent", PAAS_AGENT_GOOD)
                .is_ok()
    });
    double.set_service("paas-agent", "1.2.3");
    let entity = file_entity(
        "paas-agent",
        "paas/agent",
        PAAS_AGENT_GOOD,
        "    version: \"1.2.3\"\n    repair_script:\n      deploy: { service: paas-agent }\n",
    );
    let stack = Stack::start(
        fleet.clone(),
        &entity,
        &format!(
            "deploy: {{ url: \"{}\", poll_interval: 100ms, request_timeout: 5s }}\n",
            double.url()
        ),
    );
    stack.wait_consistent_everywhere("paas-agent", "host-01");

    // Case 2: the deploy path.
    let (timeline, job) =
        stack.drift_until_verified("paas-agent", "host-01", "paas/agent", PAAS_AGENT_DRIFTED);
    assert_eq!(job["method"], "deploy", "{job:#}");
    assert_eq!(
        double.triggered(),
        [("paas-agent".to_string(), "host-01".to_string())]
    );
    assert_eq!(
        read_on_host(&fleet, "host-01", "paas/agent"),
        PAAS_AGENT_GOOD
    );
    stack.wait_consistent_everywhere("paas-agent", "host-01");
    let samples = stack.remediator_metrics();
    assert!(
        metric(
            &samples,
            "fleetcheck_remediator_repairs_total",
            &[("method", "deploy"), ("result", "success")]
        ) >= 1.0
    );
    eprintln!("{}", timeline.report("deploy repair of paas-agent@host-01"));

    // Case 3: a deployment is running on host-02 when it drifts: the repair waits for it.
    let triggers = |double: &DeploySystemDouble| {
        double
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST "))
            .count()
    };
    let triggers_before = triggers(&double);
    double.set_host_running("host-02", true);
    stack.wait_consistent_everywhere("paas-agent", "host-02");
    fleet
        .write_file("host-02", "paas/agent", PAAS_AGENT_DRIFTED)
        .unwrap();
    // Deferred, and still deferred on a later look (defers counts the gate's verdicts).
    let deferred = stack.wait_for(
        "the repair of paas-agent@host-02 is deferred twice for the running deployment",
        TO_ALERT + TO_WEBHOOK,
        || {
            stack.jobs("paas-agent", "host-02").into_iter().find(|j| {
                j["state"] == "deferred"
                    && j["reason"] == "deployment_running"
                    && j["defers"].as_u64().is_some_and(|d| d >= 2)
            })
        },
    );
    let gated: Vec<&Value> = deferred["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "gated")
        .collect();
    assert!(
        gated.iter().any(|e| e["reason"] == "deployment_running"),
        "the journal shows the deferral's reason: {deferred:#}"
    );
    assert!(
        !deferred["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "started"),
        "nothing may start while the deployment runs: {deferred:#}"
    );
    assert!(
        metric(
            &stack.remediator_metrics(),
            "fleetcheck_remediator_skips_total",
            &[("reason", "deployment_running")]
        ) >= 1.0
    );
    assert_eq!(
        triggers(&double),
        triggers_before,
        "no deployment may even be requested while one runs on the host: {:?}",
        double.requests()
    );
    assert_eq!(
        read_on_host(&fleet, "host-02", "paas/agent"),
        PAAS_AGENT_DRIFTED
    );

    // The deployment ends: the same job proceeds and is verified.
    double.set_host_running("host-02", false);
    let verified = stack.wait_for(
        "the deferred repair of paas-agent@host-02 is verified",
        TO_VERIFIED,
        || {
            stack
                .jobs("paas-agent", "host-02")
                .into_iter()
                .find(|j| j["state"] == "verified")
        },
    );
    assert_eq!(verified["id"], deferred["id"], "{verified:#}");
    assert_eq!(verified["method"], "deploy");
    assert_eq!(
        double.triggered(),
        [
            ("paas-agent".to_string(), "host-01".to_string()),
            ("paas-agent".to_string(), "host-02".to_string())
        ]
    );
    assert_eq!(
        read_on_host(&fleet, "host-02", "paas/agent"),
        PAAS_AGENT_GOOD
    );
    stack.wait_consistent_everywhere("paas-agent", "host-02");
}
