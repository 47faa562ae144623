//! Collection (the seed's StatusCollector): obtains every entity's state from
//! every host, one batched script per host per cycle.
//!
//! `file` and `command` entities of a host run together in one script over
//! one session ([`transport`]); `url` entities are fetched by fleetcheck
//! itself ([`http`]). Hosts are checked concurrently up to a bound, each under
//! its own deadline, so a hung host never stalls the cycle.

pub mod http;
pub mod script;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use md5::{Digest, Md5};
use tokio::sync::Semaphore;

use crate::authority::{Authority, Entity, Host, Kind, Transport};
use crate::compare::{compare, PairStatus};
use script::{Item, ItemResult, Probe};

/// What a check of one pair obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub entity: String,
    pub host: String,
    /// `Err` when no value could be obtained.
    pub outcome: Result<Observed, String>,
    pub checked_at: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Missing,
    Present {
        md5: String,
        /// The version read on the host, when the entity has a version_script.
        version: Option<Result<String, String>>,
    },
}

/// One host's part of a cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct HostReport {
    pub name: String,
    /// True when the host answered (its script ran, or a URL responded).
    pub up: bool,
    pub duration: Duration,
    pub error: Option<String>,
}

/// The result of one collection cycle.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub started: SystemTime,
    pub duration: Duration,
    /// Sorted by (entity, host).
    pub pairs: Vec<PairStatus>,
    /// Sorted by host name.
    pub hosts: Vec<HostReport>,
}

impl Snapshot {
    /// The pairs the authority in force still asks for: a snapshot taken before
    /// a reload may hold pairs of entities or hosts that have since left it.
    pub fn current_pairs<'a>(
        &'a self,
        authority: &'a Authority,
    ) -> impl Iterator<Item = &'a PairStatus> {
        self.pairs.iter().filter(|p| {
            authority
                .entity(&p.entity)
                .is_some_and(|e| e.applies_to(&p.host))
        })
    }

    /// The host reports of hosts still in the authority.
    pub fn current_hosts<'a>(
        &'a self,
        authority: &'a Authority,
    ) -> impl Iterator<Item = &'a HostReport> {
        self.hosts
            .iter()
            .filter(|h| authority.hosts.contains_key(&h.name))
    }
}

/// Collector settings.
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// Hosts checked at once.
    pub concurrency: usize,
    /// SSH sessions kept open between cycles at most.
    pub max_sessions: usize,
    /// Where OpenSSH control sockets live (a private directory).
    pub control_dir: PathBuf,
    /// How long an unused SSH master stays up, so that masters of a crashed
    /// process do not linger for ever.
    pub session_idle: Duration,
}

/// The StatusCollector: collects and judges pairs.
pub struct Collector {
    opts: CollectorOptions,
    pool: transport::SessionPool,
    /// The HTTP client for the authority's `url_ca_file`, rebuilt when a
    /// reload names another file.
    fetcher: std::sync::Mutex<Option<(Option<PathBuf>, http::Fetcher)>>,
}

impl Collector {
    pub fn new(opts: CollectorOptions) -> Collector {
        let pool = transport::SessionPool::new(
            opts.control_dir.clone(),
            opts.max_sessions,
            opts.session_idle,
        );
        Collector {
            opts,
            pool,
            fetcher: std::sync::Mutex::new(None),
        }
    }

    /// Checks every pair of the authority.
    pub async fn collect(&self, authority: &Authority) -> Snapshot {
        let hosts: Vec<&Host> = authority.checked_hosts();
        let plan: Vec<(&Host, Vec<&Entity>)> = hosts
            .into_iter()
            .map(|h| {
                (
                    h,
                    authority
                        .entities
                        .iter()
                        .filter(|e| e.applies_to(&h.name))
                        .collect(),
                )
            })
            .collect();
        let snapshot = self.run_plan(authority, plan).await;
        self.pool
            .retain(&|name| authority.hosts.contains_key(name))
            .await;
        snapshot
    }

    /// Checks only the given (entity, host) pairs (the remediator's re-check
    /// and verification). Pairs the authority does not contain are skipped.
    pub async fn check_pairs(
        &self,
        authority: &Authority,
        pairs: &[(String, String)],
    ) -> Vec<PairStatus> {
        let mut by_host: BTreeMap<&str, Vec<&Entity>> = BTreeMap::new();
        for (entity, host) in pairs {
            if let Some(e) = authority.entity(entity).filter(|e| e.applies_to(host)) {
                by_host.entry(host.as_str()).or_default().push(e);
            }
        }
        let plan = by_host
            .into_iter()
            .filter_map(|(h, es)| authority.host(h).map(|h| (h, es)))
            .collect();
        self.run_plan(authority, plan).await.pairs
    }

    /// Runs `script` with `sh -s` on `host` over the collector's transport (its
    /// pooled SSH session, or locally) and returns its stdout, at most `cap`
    /// bytes; a non-zero exit is an error carrying stderr. The remediator's
    /// script executor uses this, so that only this module opens SSH sessions.
    pub async fn run_on_host(
        &self,
        authority: &Authority,
        host: &Host,
        script: &str,
        cap: usize,
    ) -> Result<Vec<u8>, String> {
        match host.transport {
            Transport::Local => transport::run_local(script, cap).await,
            Transport::Ssh => self.pool.run(host, &authority.ssh, script, cap).await,
        }
    }

    /// The HTTP client trusting the authority's `url_ca_file`.
    fn fetcher_for(&self, authority: &Authority) -> Result<http::Fetcher, String> {
        let mut cached = self.fetcher.lock().expect("fetcher lock");
        if let Some((ca, f)) = cached.as_ref() {
            if *ca == authority.url_ca_file {
                return Ok(f.clone());
            }
        }
        let f = http::Fetcher::new(authority.url_ca_file.as_deref())?;
        *cached = Some((authority.url_ca_file.clone(), f.clone()));
        Ok(f)
    }

    /// Closes pooled sessions (clean shutdown).
    pub async fn shutdown(&self) {
        self.pool.close_all().await;
    }

    /// Open SSH sessions right now.
    pub async fn open_sessions(&self) -> usize {
        self.pool.open().await
    }

    async fn run_plan(&self, authority: &Authority, plan: Vec<(&Host, Vec<&Entity>)>) -> Snapshot {
        let started = SystemTime::now();
        let t0 = Instant::now();
        let limit = Arc::new(Semaphore::new(self.opts.concurrency.max(1)));
        let tasks = plan.into_iter().map(|(host, entities)| {
            let limit = limit.clone();
            async move {
                let _permit = limit.acquire().await.expect("semaphore never closed");
                self.check_host(authority, host, &entities).await
            }
        });
        let results = futures_util::future::join_all(tasks).await;
        let mut pairs = Vec::new();
        let mut hosts = Vec::new();
        for (report, observations) in results {
            for obs in observations {
                if let Some(e) = authority.entity(&obs.entity) {
                    pairs.push(compare(e, &obs));
                }
            }
            hosts.push(report);
        }
        pairs.sort_by(|a, b| (&a.entity, &a.host).cmp(&(&b.entity, &b.host)));
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot {
            started,
            duration: t0.elapsed(),
            pairs,
            hosts,
        }
    }

    async fn check_host(
        &self,
        authority: &Authority,
        host: &Host,
        entities: &[&Entity],
    ) -> (HostReport, Vec<Observation>) {
        let t0 = Instant::now();
        let (urls, scripted): (Vec<&Entity>, Vec<&Entity>) =
            entities.iter().partition(|e| e.kind == Kind::Url);
        let mut observations = Vec::with_capacity(entities.len());
        let mut up = false;
        let mut error = None;

        if !scripted.is_empty() {
            let (obs, result) = self.run_script(authority, host, &scripted).await;
            observations.extend(obs);
            match result {
                Ok(()) => up = true,
                Err(e) => error = Some(e),
            }
        }
        // The client is made only for hosts with url entities: it loads the
        // system CA store. An empty `urls` makes the loop a no-op.
        let fetcher = if urls.is_empty() {
            Err(String::new())
        } else {
            self.fetcher_for(authority)
        };
        for e in urls {
            let url = http::render(
                e.path.as_deref().unwrap_or_default(),
                &host.name,
                &host.address,
            );
            let fetched = match &fetcher {
                Ok(f) => f.fetch(&url, e.check_timeout, e.max_output).await,
                Err(err) => Err(err.clone()),
            };
            let outcome = match fetched {
                Ok(http::Fetched::Body(body)) => {
                    up = true;
                    Ok(Observed::Present {
                        md5: md5_hex(&body),
                        version: None,
                    })
                }
                Ok(http::Fetched::NotFound) => {
                    up = true;
                    Ok(Observed::Missing)
                }
                Err(err) => Err(err),
            };
            observations.push(Observation {
                entity: e.name.clone(),
                host: host.name.clone(),
                outcome,
                checked_at: SystemTime::now(),
            });
        }
        let report = HostReport {
            name: host.name.clone(),
            up,
            duration: t0.elapsed(),
            error,
        };
        (report, observations)
    }

    /// Runs the batched script for `entities` on `host`. Returns one
    /// observation per entity, and whether the host answered.
    async fn run_script(
        &self,
        authority: &Authority,
        host: &Host,
        entities: &[&Entity],
    ) -> (Vec<Observation>, Result<(), String>) {
        let mut items = Vec::new();
        for (i, e) in entities.iter().enumerate() {
            let probe = match (e.kind, &e.collect_script) {
                (_, Some(script)) => Probe::Output {
                    script: script.clone(),
                    path: if e.kind == Kind::File {
                        e.path.clone()
                    } else {
                        None
                    },
                },
                (_, None) => Probe::HashFile {
                    path: e.path.clone().unwrap_or_default(),
                },
            };
            let cap = e.max_output;
            items.push(Item {
                id: format!("{i}c"),
                entity: e.name.clone(),
                probe,
                timeout: e.check_timeout,
                cap,
            });
            if let Some(vs) = &e.version_script {
                items.push(Item {
                    id: format!("{i}v"),
                    entity: e.name.clone(),
                    probe: Probe::Output {
                        script: vs.clone(),
                        path: None,
                    },
                    timeout: e.check_timeout,
                    cap: script::SMALL_CAP,
                });
            }
        }
        let boundary = script::new_boundary();
        let text = script::build(&boundary, &items);
        let output_cap: usize = items
            .iter()
            .map(|i| 2 * (i.cap as usize + 1024))
            .sum::<usize>()
            + 4096;
        let deadline = entities
            .iter()
            .map(|e| e.check_timeout)
            .max()
            .unwrap_or_default()
            + authority.ssh.connect_timeout
            + Duration::from_secs(5);
        let run = async {
            match host.transport {
                Transport::Local => transport::run_local(&text, output_cap).await,
                Transport::Ssh => self.pool.run(host, &authority.ssh, &text, output_cap).await,
            }
        };
        let out = match tokio::time::timeout(deadline, run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return (fail_all(host, entities, &e), Err(e)),
            Err(_) => {
                let e = format!(
                    "host did not answer within {}",
                    crate::duration::format(deadline)
                );
                return (fail_all(host, entities, &e), Err(e));
            }
        };
        let results = match script::parse(&boundary, &items, &out) {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                return (fail_all(host, entities, &e), Err(e));
            }
        };
        let now = SystemTime::now();
        let by_id: BTreeMap<&str, (&Item, &ItemResult)> = items
            .iter()
            .zip(results.iter())
            .map(|(i, r)| (i.id.as_str(), (i, r)))
            .collect();
        let observations = entities
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (item, content) = by_id[format!("{i}c").as_str()];
                let version = by_id
                    .get(format!("{i}v").as_str())
                    .map(|(item, r)| version_of(item, r));
                Observation {
                    entity: e.name.clone(),
                    host: host.name.clone(),
                    outcome: content_of(item, content).map(|found| match found {
                        None => Observed::Missing,
                        Some(md5) => Observed::Present { md5, version },
                    }),
                    checked_at: now,
                }
            })
            .collect();
        (observations, Ok(()))
    }
}

fn fail_all(host: &Host, entities: &[&Entity], error: &str) -> Vec<Observation> {
    let now = SystemTime::now();
    entities
        .iter()
        .map(|e| Observation {
            entity: e.name.clone(),
            host: host.name.clone(),
            outcome: Err(error.to_string()),
            checked_at: now,
        })
        .collect()
}

fn describe_failure(item: &Item, rc: i32, stderr: &[u8]) -> String {
    if rc == script::RC_TIMEOUT {
        return format!("timed out after {}", crate::duration::format(item.timeout));
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("exited with status {rc}")
    } else {
        format!("exited with status {rc}: {stderr}")
    }
}

/// The MD5 of an item's content, `None` when missing.
fn content_of(item: &Item, result: &ItemResult) -> Result<Option<String>, String> {
    match result {
        ItemResult::Missing => Ok(None),
        ItemResult::Hashed(md5) => Ok(Some(md5.clone())),
        ItemResult::Failed(e) => Err(e.clone()),
        ItemResult::Ran { rc, stdout, .. }
            if *rc == script::RC_TOO_LARGE || stdout.len() as u64 > item.cap =>
        {
            Err(format!("output exceeds max_output ({} bytes)", item.cap))
        }
        ItemResult::Ran { rc: 0, stdout, .. } => Ok(Some(md5_hex(stdout))),
        ItemResult::Ran { rc, stderr, .. } => Err(describe_failure(item, *rc, stderr)),
    }
}

fn version_of(item: &Item, result: &ItemResult) -> Result<String, String> {
    match result {
        ItemResult::Ran { rc: 0, stdout, .. } => {
            Ok(String::from_utf8_lossy(stdout).trim().to_string())
        }
        ItemResult::Ran { rc, stderr, .. } => Err(describe_failure(item, *rc, stderr)),
        ItemResult::Failed(e) => Err(e.clone()),
        ItemResult::Missing | ItemResult::Hashed(_) => Err("no version reported".to_string()),
    }
}

/// Lowercase hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", Md5::digest(data))
}
