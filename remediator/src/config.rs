//! `remediator.yaml`: the raw file as written (serde, unknown keys refused) and
//! the checked [`Config`] the rest of the remediator uses.
//!
//! Relative paths resolve against the config file's directory. Secrets (the
//! webhook token and password, the deploy-system token) are read from files at
//! load time and kept in [`Secret`], whose `Debug` never shows the bytes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcheck_core::duration;
use serde::Deserialize;

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse config file {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{} problem{} in config file {}:\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, path.display(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Bytes read from a secret file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    authority: String,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    deploy: Option<RawDeploy>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    cooldown: Option<String>,
    #[serde(default)]
    circuit_breaker: RawCircuit,
    #[serde(default)]
    waves: RawWaves,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    hold_recheck: Option<String>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    output_cap: Option<usize>,
    #[serde(default)]
    queue_capacity: Option<usize>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    ansible: RawAnsible,
    #[serde(default)]
    collector: RawCollector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    basic_auth: Option<RawBasic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    username: String,
    password_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    url: String,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    request_timeout: Option<String>,
    #[serde(default)]
    poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    global_concurrency: Option<usize>,
    #[serde(default)]
    entity_concurrency: Option<usize>,
    #[serde(default)]
    repairs_per_hour: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuit {
    #[serde(default)]
    max_drifted_share: Option<f64>,
    #[serde(default)]
    min_drifted_hosts: Option<usize>,
    #[serde(default)]
    recheck_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaves {
    #[serde(default)]
    steps: Option<Vec<serde_yaml::Value>>,
    #[serde(default)]
    min_hosts: Option<usize>,
    #[serde(default)]
    halt_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    initial_backoff: Option<String>,
    #[serde(default)]
    max_backoff: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default)]
    repair: Option<String>,
    #[serde(default)]
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnsible {
    #[serde(default)]
    playbook_binary: Option<String>,
    #[serde(default)]
    extra_args: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    max_sessions: Option<usize>,
}

// ---------------------------------------------------------------------------
// The checked config.

/// The checked `remediator.yaml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: PathBuf,
    /// The authority file (absolute or relative to the working directory).
    pub authority: PathBuf,
    pub auth: Credentials,
    pub deploy: Option<DeployConfig>,
    pub limits: Limits,
    /// No new repair of a pair this long after its last verified repair.
    pub cooldown: Duration,
    pub circuit: CircuitConfig,
    pub waves: WavesConfig,
    pub retry: RetryConfig,
    /// How long a held job waits before its gates are evaluated again.
    pub hold_recheck: Duration,
    /// Repair timeout when the entity sets none.
    pub repair_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Bytes of executor output kept (the tail) per attempt.
    pub output_cap: usize,
    /// Most jobs waiting or running at once; beyond it intake answers 503.
    pub queue_capacity: usize,
    pub max_body_bytes: usize,
    pub ansible: AnsibleConfig,
    pub collector_concurrency: usize,
    pub collector_max_sessions: usize,
}

/// Webhook credentials: either or both may be set.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub bearer: Option<Secret>,
    pub basic: Option<(String, Secret)>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.basic.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct DeployConfig {
    /// Base URL without a trailing slash, e.g. `http://deploy.internal:8080`.
    pub url: String,
    pub token: Option<Secret>,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub global_concurrency: usize,
    pub entity_concurrency: usize,
    pub repairs_per_hour: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CircuitConfig {
    /// Open when more than this share of an entity's hosts are drifted.
    pub max_drifted_share: f64,
    /// ... and at least this many are.
    pub min_drifted_hosts: usize,
    /// How long a measured share is reused.
    pub recheck_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum WaveStep {
    Hosts(usize),
    Percent(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct WavesConfig {
    /// Cumulative sizes; an empty list turns waves off.
    pub steps: Vec<WaveStep>,
    /// Waves start when at least this many hosts of one entity need repair.
    pub min_hosts: usize,
    /// How long a halted rollout holds the entity's remaining repairs.
    pub halt_for: Duration,
}

impl WavesConfig {
    /// The cumulative number of repairs allowed through wave `index` of a
    /// rollout of `total` hosts (always at least one more than the previous wave).
    pub fn cumulative(&self, index: usize, total: usize) -> usize {
        let mut allowed = 0usize;
        for step in self.steps.iter().take(index + 1) {
            let n = match step {
                WaveStep::Hosts(n) => *n,
                WaveStep::Percent(p) => (p / 100.0 * total as f64).ceil() as usize,
            };
            allowed = n.max(allowed + 1);
        }
        if index + 1 >= self.steps.len() {
            allowed = allowed.max(total);
        }
        allowed.min(total.max(1))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryConfig {
    /// The wait after the `n`-th failure (1-based), doubling up to the cap.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(30));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[derive(Clone, Debug)]
pub struct AnsibleConfig {
    pub playbook_binary: String,
    pub extra_args: Vec<String>,
}

impl Config {
    /// Reads and checks the config at `path`, reading secret files too.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut c = Checker {
            dir,
            problems: Vec::new(),
        };
        let config = c.check(raw, path);
        if c.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: c.problems,
            })
        }
    }
}

struct Checker {
    dir: PathBuf,
    problems: Vec<String>,
}

impl Checker {
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn duration(&mut self, field: &str, value: &Option<String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => match duration::parse(text) {
                Ok(d) => d,
                Err(e) => {
                    self.problems.push(format!("{field}: {e}"));
                    default
                }
            },
        }
    }

    fn positive(&mut self, field: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.problems.push(format!("{field}: must be at least 1"));
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn secret(&mut self, field: &str, file: &str) -> Option<Secret> {
        let path = self.path(file);
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.is_empty() {
                    self.problems
                        .push(format!("{field}: {} is empty", path.display()));
                    None
                } else {
                    Some(Secret(bytes))
                }
            }
            Err(e) => {
                self.problems
                    .push(format!("{field}: cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn check(&mut self, raw: RawConfig, source: &Path) -> Config {
        let authority = self.path(&raw.authority);
        let mut auth = Credentials::default();
        if let Some(a) = &raw.auth {
            if let Some(f) = &a.bearer_token_file {
                auth.bearer = self.secret("auth.bearer_token_file", f);
            }
            if let Some(b) = &a.basic_auth {
                if b.username.is_empty() || b.username.contains(':') {
                    self.problems.push(
                        "auth.basic_auth.username: must be non-empty and contain no ':'".into(),
                    );
                }
                if let Some(p) = self.secret("auth.basic_auth.password_file", &b.password_file) {
                    auth.basic = Some((b.username.clone(), p));
                }
            }
            if a.bearer_token_file.is_none() && a.basic_auth.is_none() {
                self.problems.push("auth: name bearer_token_file or basic_auth (or remove auth and pass --web.insecure-no-auth)".into());
            }
        }
        let deploy = raw.deploy.as_ref().map(|d| {
            let url = d.url.trim_end_matches('/').to_string();
            if !url.starts_with("http://") {
                self.problems
                    .push(format!("deploy.url: {url:?} must be an http:// URL"));
            }
            DeployConfig {
                url,
                token: d
                    .bearer_token_file
                    .as_ref()
                    .and_then(|f| self.secret("deploy.bearer_token_file", f)),
                request_timeout: self.duration(
                    "deploy.request_timeout",
                    &d.request_timeout,
                    Duration::from_secs(10),
                ),
                poll_interval: self.duration(
                    "deploy.poll_interval",
                    &d.poll_interval,
                    Duration::from_secs(5),
                ),
            }
        });
        let limits = Limits {
            global_concurrency: self.positive(
                "limits.global_concurrency",
                raw.limits.global_concurrency,
                4,
            ),
            entity_concurrency: self.positive(
                "limits.entity_concurrency",
                raw.limits.entity_concurrency,
                1,
            ),
            repairs_per_hour: self.positive(
                "limits.repairs_per_hour",
                raw.limits.repairs_per_hour.map(|n| n as usize),
                20,
            ) as u32,
        };
        let cooldown = self.duration("cooldown", &raw.cooldown, Duration::from_secs(600));
        let share = raw.circuit_breaker.max_drifted_share.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&share) {
            self.problems.push(format!(
                "circuit_breaker.max_drifted_share: {share} must be between 0 and 1"
            ));
        }
        let circuit = CircuitConfig {
            max_drifted_share: share,
            min_drifted_hosts: self.positive(
                "circuit_breaker.min_drifted_hosts",
                raw.circuit_breaker.min_drifted_hosts,
                3,
            ),
            recheck_interval: self.duration(
                "circuit_breaker.recheck_interval",
                &raw.circuit_breaker.recheck_interval,
                Duration::from_secs(60),
            ),
        };
        let steps = match &raw.waves.steps {
            None => vec![
                WaveStep::Hosts(1),
                WaveStep::Percent(5.0),
                WaveStep::Percent(25.0),
                WaveStep::Percent(100.0),
            ],
            Some(values) => values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| self.wave_step(i, v))
                .collect(),
        };
        let waves = WavesConfig {
            steps,
            min_hosts: self.positive("waves.min_hosts", raw.waves.min_hosts, 3),
            halt_for: self.duration(
                "waves.halt_for",
                &raw.waves.halt_for,
                Duration::from_secs(3600),
            ),
        };
        let retry = RetryConfig {
            max_attempts: self.positive(
                "retry.max_attempts",
                raw.retry.max_attempts.map(|n| n as usize),
                3,
            ) as u32,
            initial_backoff: self.duration(
                "retry.initial_backoff",
                &raw.retry.initial_backoff,
                Duration::from_secs(30),
            ),
            max_backoff: self.duration(
                "retry.max_backoff",
                &raw.retry.max_backoff,
                Duration::from_secs(600),
            ),
        };
        Config {
            source: source.to_path_buf(),
            authority,
            auth,
            deploy,
            limits,
            cooldown,
            circuit,
            waves,
            retry,
            hold_recheck: self.duration("hold_recheck", &raw.hold_recheck, Duration::from_secs(60)),
            repair_timeout: self.duration(
                "timeouts.repair",
                &raw.timeouts.repair,
                Duration::from_secs(600),
            ),
            shutdown_grace: self.duration(
                "timeouts.shutdown_grace",
                &raw.timeouts.shutdown_grace,
                Duration::from_secs(60),
            ),
            output_cap: self.positive("output_cap", raw.output_cap, 64 * 1024),
            queue_capacity: self.positive("queue_capacity", raw.queue_capacity, 10_000),
            max_body_bytes: self.positive("max_body_bytes", raw.max_body_bytes, 1024 * 1024),
            ansible: AnsibleConfig {
                playbook_binary: raw
                    .ansible
                    .playbook_binary
                    .clone()
                    .unwrap_or_else(|| "ansible-playbook".to_string()),
                extra_args: raw.ansible.extra_args.clone(),
            },
            collector_concurrency: self.positive(
                "collector.concurrency",
                raw.collector.concurrency,
                16,
            ),
            collector_max_sessions: self.positive(
                "collector.max_sessions",
                raw.collector.max_sessions,
                64,
            ),
        }
    }

    fn wave_step(&mut self, i: usize, v: &serde_yaml::Value) -> Option<WaveStep> {
        let field = format!("waves.steps[{i}]");
        if let Some(n) = v.as_u64() {
            if n == 0 {
                self.problems
                    .push(format!("{field}: a wave has at least one host"));
                return None;
            }
            return Some(WaveStep::Hosts(n as usize));
        }
        if let Some(s) = v.as_str() {
            if let Some(p) = s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
            {
                if p > 0.0 && p <= 100.0 {
                    return Some(WaveStep::Percent(p));
                }
            }
        }
        self.problems.push(format!(
            "{field}: expected a host count such as 1 or a share such as \"25%\""
        ));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let path = dir.path().join("remediator.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let c = load("authority: a.yaml\nauth: { bearer_token_file: token }\n").unwrap();
        assert!(c.authority.is_absolute());
        assert_eq!(c.auth.bearer.as_ref().unwrap().expose(), b"s3cret");
        assert_eq!(
            c.limits,
            Limits {
                global_concurrency: 4,
                entity_concurrency: 1,
                repairs_per_hour: 20
            }
        );
        assert_eq!(c.waves.steps.len(), 4);
        assert!(
            !format!("{:?}", c.auth).contains("s3cret"),
            "secrets never show in Debug"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let e = load(
            "authority: a.yaml\nauth: { bearer_token_file: nope }\nlimits: { global_concurrency: 0 }\ncooldown: 5x\nwaves: { steps: [0, \"200%\"] }\n",
        )
        .unwrap_err();
        for needle in [
            "nope",
            "global_concurrency",
            "cooldown",
            "steps[0]",
            "steps[1]",
        ] {
            assert!(e.contains(needle), "{needle} missing in {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = load("authority: a.yaml\nlimitz: {}\n").unwrap_err();
        assert!(e.contains("cannot parse"), "{e}");
    }

    #[test]
    fn waves_widen_cumulatively() {
        let w = WavesConfig {
            steps: vec![
                WaveStep::Hosts(1),
                WaveStep::Percent(5.0),
                WaveStep::Percent(25.0),
                WaveStep::Percent(100.0),
            ],
            min_hosts: 3,
            halt_for: Duration::from_secs(1),
        };
        assert_eq!(
            (0..4).map(|i| w.cumulative(i, 100)).collect::<Vec<_>>(),
            [1, 5, 25, 100]
        );
        assert_eq!(
            (0..4).map(|i| w.cumulative(i, 4)).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!([1, 2, 3, 4].map(|n| r.backoff(n).as_secs()), [1, 2, 4, 5]);
    }
}
