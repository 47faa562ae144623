//! The monitoring half of an end-to-end test: a real Prometheus and a real Alertmanager, each
//! with its own temporary directory and a free loopback port, and the rules of `rules/` copied
//! with their `for:` durations shortened so that alerts fire within seconds.
//!
//! - [`copy_rules_with_short_for`] copies `rules/*.yml`, changing nothing but the value of each
//!   `for:` line (the rules keep every `for:` on one line so this textual substitution works).
//! - [`Prometheus::start`] writes a config from [`PrometheusSettings`] (scrape and evaluation
//!   interval, scrape jobs, rule files, Alertmanagers), checks it with `promtool check config`
//!   (which also checks the rule files), starts `prometheus` and waits for `/-/ready`;
//!   [`Prometheus::query`] runs an instant query through the HTTP API.
//! - [`Alertmanager::start`] checks a config with `amtool check-config`, starts
//!   `prometheus-alertmanager` with `--cluster.listen-address=` (an empty address: without it
//!   Alertmanager opens a gossip port on `0.0.0.0:9094`) and waits for `/-/ready`;
//!   [`remediator_alertmanager_config`] is a config routing `FleetcheckEntityInconsistent` to a
//!   remediator the way `examples/alertmanager.yml` does, with test timings.
//!
//! Both run as [`Daemon`]s: killed on drop, their log printed when the test panics. A port
//! taken by someone else between choosing it and binding it is retried with another one. A
//! missing program panics with how to install it (via [`require_tool`]); nothing is skipped.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::daemon::{free_addr, Daemon};
use crate::{http, require_tool};

const PROMETHEUS_HINT: &str = "install it with `apt-get install prometheus` \
     (the README's test command, scripts/test, does this)";
const ALERTMANAGER_HINT: &str = "install it with `apt-get install prometheus-alertmanager` \
     (the README's test command, scripts/test, does this)";

/// How long Prometheus or Alertmanager may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when the chosen one was taken before the daemon could bind it.
const PORT_ATTEMPTS: usize = 3;

/// The repository checkout (where `rules/`, `grafana/` and `examples/` are).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("repository root {}: {e}", root.display()))
}

/// Copies every `*.yml` file directly in `src` (such as `rules/`) into `dst` with the value of
/// every `for:` line replaced by `for_` (such as `1s`), and returns the copies' paths.
///
/// Nothing else changes. A line whose first word is `for:` must hold just a duration
/// (`for: 2m`), and at least one must exist, so a rule file that stops following the one-line
/// form fails here instead of keeping its long `for:` silently.
pub fn copy_rules_with_short_for(src: &Path, dst: &Path, for_: &str) -> Result<Vec<PathBuf>> {
    ensure!(
        is_duration(for_),
        "{for_:?} is not a Prometheus duration such as 1s"
    );
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut sources = Vec::new();
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yml") {
            sources.push(path);
        }
    }
    sources.sort();
    ensure!(
        !sources.is_empty(),
        "no *.yml rule files in {}",
        src.display()
    );
    let mut copies = Vec::new();
    let mut shortened = 0;
    for source in sources {
        let text =
            fs::read_to_string(&source).with_context(|| format!("reading {}", source.display()))?;
        let (text, count) = shorten_for(&text, for_)
            .with_context(|| format!("shortening the `for:` lines of {}", source.display()))?;
        shortened += count;
        let copy = dst.join(source.file_name().expect("a file name"));
        fs::write(&copy, text).with_context(|| format!("writing {}", copy.display()))?;
        copies.push(copy);
    }
    ensure!(
        shortened > 0,
        "no `for:` line in {}: nothing was shortened",
        src.display()
    );
    Ok(copies)
}

/// Replaces the value of every `for: DURATION` line; returns the text and how many it changed.
fn shorten_for(text: &str, for_: &str) -> Result<(String, usize)> {
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = &body[..body.len() - body.trim_start().len()];
        match body.trim_start().strip_prefix("for:") {
            Some(value) => {
                let value = value.trim();
                ensure!(
                    is_duration(value),
                    "line {}: `{}` is not of the form `for: 2m`",
                    number + 1,
                    body.trim()
                );
                out.push_str(indent);
                out.push_str("for: ");
                out.push_str(for_);
                out.push_str(&line[body.len()..]);
                count += 1;
            }
            None => out.push_str(line),
        }
    }
    Ok((out, count))
}

/// Whether `s` is a Prometheus duration such as `90s`, `1h30m` or `500ms`.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|unit| rest.starts_with(unit))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// Percent-encodes `s` for a URL query component.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Starts a daemon on a free loopback port and waits until `/-/ready` answers 200 and the
/// daemon's own log says it listens on that address (so the answer is not from another test's
/// daemon that took the port), trying another port when the chosen one was taken meanwhile.
/// Prometheus and Alertmanager both log `msg="Listening on" address=ADDR` once bound.
fn start_on_free_port(
    what: &str,
    mut start: impl FnMut(SocketAddr) -> Result<Daemon>,
) -> Result<(Daemon, SocketAddr)> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let addr = free_addr();
        let mut daemon = start(addr)?;
        let ready = daemon
            .wait_ready(&format!("http://{addr}/-/ready"), READY_TIMEOUT)
            .and_then(|()| wait_listening(&daemon, addr));
        match ready {
            Ok(()) => return Ok((daemon, addr)),
            Err(error) if daemon.log().contains("address already in use") => {
                last_error = Some(error)
            }
            Err(error) => return Err(error),
        }
    }
    Err(last_error
        .expect("at least one attempt")
        .context(format!("{what}: every port tried was taken")))
}

/// Waits until the daemon's log says it listens on `addr`; fails when it says the address is
/// taken.
fn wait_listening(daemon: &Daemon, addr: SocketAddr) -> Result<()> {
    let listening = format!("msg=\"Listening on\" address={addr}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let log = daemon.log();
        if log.contains(&listening) {
            return Ok(());
        }
        ensure!(
            !log.contains("address already in use"),
            "{addr} was taken by another process; log:\n{log}"
        );
        ensure!(
            Instant::now() < deadline,
            "the log never says `{listening}` within {READY_TIMEOUT:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a checking tool (`promtool check config`, `amtool check-config`) and fails with its
/// output when it does not accept the file.
fn check_with(tool: &Path, args: &[&str], file: &Path) -> Result<()> {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} {} failed ({}):\n{}{}\nthe file:\n{}",
            tool.display(),
            args.join(" "),
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(file).unwrap_or_default()
        );
    }
    Ok(())
}

/// GETs `url` and parses the JSON body, failing unless the status is 200.
fn get_json(url: &str) -> Result<Value> {
    let response = http::get(url)?;
    ensure!(
        response.status == 200,
        "GET {url}: HTTP {}: {}",
        response.status,
        response.body
    );
    serde_json::from_str(&response.body)
        .with_context(|| format!("GET {url}: not JSON: {}", response.body))
}

/// What a [`Prometheus`] scrapes and evaluates.
#[derive(Debug, Clone)]
pub struct PrometheusSettings {
    /// The scrape and the rule evaluation interval (and the scrape timeout), e.g. `1s`.
    pub interval: String,
    /// Scrape jobs: (job name, target address), one target each.
    pub scrape: Vec<(String, SocketAddr)>,
    /// Rule files (paths or globs).
    pub rule_files: Vec<PathBuf>,
    /// Alertmanagers to send alerts to.
    pub alertmanagers: Vec<SocketAddr>,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            interval: "1s".to_string(),
            scrape: Vec::new(),
            rule_files: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }
}

impl PrometheusSettings {
    /// The `prometheus.yml` for these settings (JSON, which YAML reads as is).
    pub fn config(&self) -> String {
        let interval = &self.interval;
        let scrape: Vec<Value> = self
            .scrape
            .iter()
            .map(|(job, target)| {
                json!({ "job_name": job, "static_configs": [{ "targets": [target.to_string()] }] })
            })
            .collect();
        let alertmanagers: Vec<String> = self.alertmanagers.iter().map(|a| a.to_string()).collect();
        let config = json!({
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": self.rule_files,
            "alerting": { "alertmanagers": [{ "static_configs": [{ "targets": alertmanagers }] }] },
            "scrape_configs": scrape,
        });
        serde_json::to_string_pretty(&config).expect("serialisable")
    }
}

/// A running Prometheus with its own TSDB in a temporary directory; see the
/// [module documentation](self).
pub struct Prometheus {
    daemon: Daemon,
    addr: SocketAddr,
    config_file: PathBuf,
    /// Removed after the process is gone (fields drop in order).
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes the config, checks it (and the rule files) with `promtool check config`, starts
    /// `prometheus` on a free loopback port and waits until it is ready.
    pub fn start(settings: &PrometheusSettings) -> Result<Prometheus> {
        let prometheus = require_tool("prometheus", PROMETHEUS_HINT);
        let promtool = require_tool("promtool", PROMETHEUS_HINT);
        let dir = tempfile::Builder::new()
            .prefix("fleetcheck-prometheus-")
            .tempdir()
            .context("creating Prometheus' temporary directory")?;
        let config_file = dir.path().join("prometheus.yml");
        fs::write(&config_file, settings.config())
            .with_context(|| format!("writing {}", config_file.display()))?;
        check_with(&promtool, &["check", "config"], &config_file)?;
        let storage = dir.path().join("data");
        let log = dir.path().join("prometheus.log");
        let (daemon, addr) = start_on_free_port("prometheus", |addr| {
            Daemon::start_with(
                Command::new(&prometheus)
                    .arg(format!("--config.file={}", config_file.display()))
                    .arg(format!("--storage.tsdb.path={}", storage.display()))
                    .arg(format!("--web.listen-address={addr}")),
                &log,
            )
        })?;
        Ok(Prometheus {
            daemon,
            addr,
            config_file,
            _dir: dir,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The config file it runs with.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Runs the instant query `expr` now (`/api/v1/query`) and returns the result's samples
    /// (each `{"metric": {...}, "value": [time, "value"]}`; a scalar or string result is one
    /// sample without labels). Fails unless Prometheus answers `status: success`.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let url = format!("{}/api/v1/query?query={}", self.url(), percent_encode(expr));
        let response = http::get(&url)?;
        let body: Value = serde_json::from_str(&response.body)
            .with_context(|| format!("query {expr:?}: not JSON: {}", response.body))?;
        ensure!(
            response.status == 200 && body["status"] == "success",
            "query {expr:?}: HTTP {}: {}",
            response.status,
            response.body
        );
        let data = &body["data"];
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar" | "string") => Ok(vec![json!({ "metric": {}, "value": data["result"] })]),
            other => bail!("query {expr:?}: unexpected result type {other:?}"),
        }
    }

    /// The values of `label` on the series matching `selector` (`/api/v1/label/…/values`),
    /// which is what a Grafana `label_values(selector, label)` variable lists.
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}/api/v1/label/{}/values?match%5B%5D={}",
            self.url(),
            percent_encode(label),
            percent_encode(selector)
        );
        let body = get_json(&url)?;
        ensure!(body["status"] == "success", "GET {url}: {body}");
        Ok(body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// Its alerts (`/api/v1/alerts`: pending and firing, with labels and `activeAt`).
    pub fn alerts(&self) -> Result<Value> {
        Ok(get_json(&format!("{}/api/v1/alerts", self.url()))?["data"]["alerts"].clone())
    }
}

/// The numeric value of a sample returned by [`Prometheus::query`] (`NaN` included), or
/// `None` when it has none.
pub fn sample_value(sample: &Value) -> Option<f64> {
    sample["value"][1].as_str()?.parse().ok()
}

/// A running Alertmanager with its own storage in a temporary directory; see the
/// [module documentation](self).
pub struct Alertmanager {
    daemon: Daemon,
    addr: SocketAddr,
    /// Removed after the process is gone (fields drop in order).
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Writes `config` (an `alertmanager.yml`), checks it with `amtool check-config`, starts
    /// `prometheus-alertmanager` on a free loopback port without clustering and waits until it
    /// is ready.
    pub fn start(config: &str) -> Result<Alertmanager> {
        let alertmanager = require_tool("prometheus-alertmanager", ALERTMANAGER_HINT);
        let amtool = require_tool("amtool", ALERTMANAGER_HINT);
        let dir = tempfile::Builder::new()
            .prefix("fleetcheck-alertmanager-")
            .tempdir()
            .context("creating Alertmanager's temporary directory")?;
        let config_file = dir.path().join("alertmanager.yml");
        fs::write(&config_file, config)
            .with_context(|| format!("writing {}", config_file.display()))?;
        check_with(&amtool, &["check-config"], &config_file)?;
        let storage = dir.path().join("data");
        let log = dir.path().join("alertmanager.log");
        let (daemon, addr) = start_on_free_port("prometheus-alertmanager", |addr| {
            Daemon::start_with(
                Command::new(&alertmanager)
                    .arg(format!("--config.file={}", config_file.display()))
                    .arg(format!("--storage.path={}", storage.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    // Empty: no gossip listener on 0.0.0.0:9094.
                    .arg("--cluster.listen-address=")
                    .arg("--log.level=debug"),
                &log,
            )
        })?;
        Ok(Alertmanager {
            daemon,
            addr,
            _dir: dir,
        })
    }

    /// The address it listens on (for Prometheus' `alerting` section).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Its alerts (`/api/v2/alerts`, with their status and receivers).
    pub fn alerts(&self) -> Result<Value> {
        get_json(&format!("{}/api/v2/alerts", self.url()))
    }
}

/// An Alertmanager config shaped like `examples/alertmanager.yml`: `FleetcheckEntityInconsistent`
/// goes to the remediator's webhook `webhook_url` (grouped by entity, `send_resolved`, the bearer
/// token read from `credentials_file`), everything else to a receiver without integrations.
/// `group_wait` and `group_interval` (e.g. `1s`) apply to both routes.
pub fn remediator_alertmanager_config(
    webhook_url: &str,
    credentials_file: &Path,
    group_wait: &str,
    group_interval: &str,
) -> String {
    // Paths and URLs are written as JSON strings, which YAML reads as is.
    let url = Value::from(webhook_url);
    let credentials = Value::from(credentials_file.display().to_string());
    format!(
        "route:
  receiver: default
  group_by: [alertname, severity]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 4h
  routes:
    - receiver: fleetcheck-remediator
      matchers:
        - alertname = FleetcheckEntityInconsistent
      group_by: [entity]
      group_wait: {group_wait}
      group_interval: {group_interval}
      repeat_interval: 1h
      continue: false
receivers:
  - name: default
  - name: fleetcheck-remediator
    webhook_configs:
      - url: {url}
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials_file: {credentials}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_for_changes_only_the_for_values() {
        let text = "# keep `for:` lines short\n  - alert: A\n    expr: x > 0\n    for: 15m\n    labels: {}\n      for: 1h30m\r\n";
        let (out, count) = shorten_for(text, "1s").unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            out,
            "# keep `for:` lines short\n  - alert: A\n    expr: x > 0\n    for: 1s\n    labels: {}\n      for: 1s\r\n"
        );
    }

    #[test]
    fn shorten_for_refuses_a_for_it_cannot_read() {
        let error = shorten_for("    for: \"2m\"\n", "1s").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }

    #[test]
    fn durations() {
        for good in ["1s", "500ms", "1h30m", "2m", "30d"] {
            assert!(is_duration(good), "{good}");
        }
        for bad in ["", "m", "1", "1x", "1.5m", "-1s"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn the_repository_rules_copy_with_short_for() {
        let dst = tempfile::tempdir().unwrap();
        let copies =
            copy_rules_with_short_for(&repo_root().join("rules"), dst.path(), "1s").unwrap();
        assert!(!copies.is_empty());
        for copy in copies {
            let text = fs::read_to_string(&copy).unwrap();
            for line in text.lines().filter(|l| l.trim_start().starts_with("for:")) {
                assert_eq!(line.trim(), "for: 1s", "{}", copy.display());
            }
        }
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            percent_encode(r#"up{job="a b"} == 1"#),
            "up%7Bjob%3D%22a%20b%22%7D%20%3D%3D%201"
        );
    }
}
