//! Repair executors, chosen by the entity's `repair_script`: `ansible`
//! (ansible-playbook limited to the host), `deploy` (the deployment system's
//! API), `script` (a script run on the host over the collector's transport)
//! and `command` (a local argv).
//!
//! Alert data never reaches a shell: the pair comes from the authority (the
//! alert's labels only select it), commands are argv, ansible gets the host as
//! `--limit` after a check that it is a plain name, and the script executor
//! sends the authority's script with the pair as sh-quoted variables.

pub mod ansible;
pub mod process;
pub mod script;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleetcheck_core::authority::{Authority, Entity, Host, RepairMethod};
use fleetcheck_core::Collector;

use crate::config::AnsibleConfig;
use crate::deploy::{DeployClient, Triggered};

/// How an attempt ended, as far as the executor can tell (verification is
/// separate: only a re-collected consistent pair is a success).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecResult {
    Success,
    Failure(String),
    Timeout,
    /// The deployment system refused because a deployment is running.
    Busy(String),
}

impl ExecResult {
    /// The `result` label of `repairs_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ExecResult::Success => "success",
            ExecResult::Failure(_) | ExecResult::Busy(_) => "failure",
            ExecResult::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExecOutcome {
    pub result: ExecResult,
    /// The bounded tail of what the executor printed.
    pub output: String,
}

/// Everything one repair attempt needs.
pub struct Attempt {
    pub job_id: i64,
    pub authority: Arc<Authority>,
    pub entity: Entity,
    pub host: Host,
    pub timeout: Duration,
    pub output_cap: usize,
    /// A private directory for this attempt's files (generated inventory).
    pub work_dir: PathBuf,
    pub ansible: AnsibleConfig,
    pub deploy: Option<Arc<DeployClient>>,
    pub deploy_poll: Duration,
    pub collector: Arc<Collector>,
}

/// The environment a `command` repair gets: the pair, from the authority.
pub fn pair_env(job_id: i64, entity: &Entity, host: &Host) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("FLEETCHECK_ENTITY".to_string(), entity.name.clone());
    env.insert("FLEETCHECK_HOST".to_string(), host.name.clone());
    env.insert("FLEETCHECK_ADDRESS".to_string(), host.address.clone());
    env.insert("FLEETCHECK_PORT".to_string(), host.port.to_string());
    env.insert("FLEETCHECK_USER".to_string(), host.user.clone());
    env.insert(
        "FLEETCHECK_PATH".to_string(),
        entity.path.clone().unwrap_or_default(),
    );
    env.insert("FLEETCHECK_MD5".to_string(), entity.md5.clone());
    env.insert(
        "FLEETCHECK_VERSION".to_string(),
        entity.version.clone().unwrap_or_default(),
    );
    env.insert("FLEETCHECK_JOB_ID".to_string(), job_id.to_string());
    env
}

/// One line saying what an attempt would run (journaled; dry-run shows it).
pub fn describe(method: &RepairMethod, entity: &Entity, host: &Host) -> String {
    match method {
        RepairMethod::Ansible { playbook, .. } => {
            format!(
                "ansible-playbook {} --limit {} (entity {})",
                playbook.display(),
                host.name,
                entity.name
            )
        }
        RepairMethod::Deploy { service } => {
            format!("deploy service {service} to host {}", host.name)
        }
        RepairMethod::Script { script } => {
            format!(
                "run the entity's repair script ({} bytes) on host {}",
                script.len(),
                host.name
            )
        }
        RepairMethod::Command { argv } => format!("run {argv:?} for host {}", host.name),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs one attempt. `on_process` gets the process group of a local program.
pub async fn execute(
    a: &Attempt,
    method: &RepairMethod,
    on_process: impl FnOnce(u32) + Send,
) -> ExecOutcome {
    match method {
        RepairMethod::Ansible {
            playbook,
            extra_vars,
        } => ansible::run(a, playbook, extra_vars, on_process).await,
        RepairMethod::Command { argv } => {
            let env = pair_env(a.job_id, &a.entity, &a.host);
            let cwd = a.authority.source.parent().map(PathBuf::from);
            local(argv, &env, cwd, a.timeout, a.output_cap, on_process).await
        }
        RepairMethod::Script { script } => script::run(a, script).await,
        RepairMethod::Deploy { service } => deploy(a, service).await,
    }
}

/// Runs a local argv and maps its exit to an outcome.
pub async fn local(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    cap: usize,
    on_process: impl FnOnce(u32),
) -> ExecOutcome {
    match process::run(argv, env, cwd.as_deref(), timeout, cap, on_process).await {
        Err(e) => ExecOutcome {
            result: ExecResult::Failure(format!("{:#}", anyhow::Error::from(e))),
            output: String::new(),
        },
        Ok(f) => {
            let result = match f.exit {
                process::Exit::Code(0) => ExecResult::Success,
                process::Exit::Code(c) => ExecResult::Failure(format!("exited with status {c}")),
                process::Exit::Signal => ExecResult::Failure("killed by a signal".to_string()),
                process::Exit::TimedOut => ExecResult::Timeout,
            };
            ExecOutcome {
                result,
                output: text(&f.tail),
            }
        }
    }
}

async fn deploy(a: &Attempt, service: &str) -> ExecOutcome {
    let fail = |m: String| ExecOutcome {
        result: ExecResult::Failure(m),
        output: String::new(),
    };
    let Some(client) = &a.deploy else {
        return fail(
            "the entity repairs through the deploy system, but remediator.yaml configures none"
                .to_string(),
        );
    };
    let reason = format!(
        "fleetcheck-remediator job {}: {} drifted on {}",
        a.job_id, a.entity.name, a.host.name
    );
    let work = async {
        let started = match client
            .trigger(service, &a.host.name, a.entity.version.as_deref(), &reason)
            .await
        {
            Err(e) => return fail(format!("{:#}", anyhow::Error::from(e))),
            Ok(Triggered::Busy(body)) => {
                return ExecOutcome {
                    result: ExecResult::Busy(body),
                    output: String::new(),
                };
            }
            Ok(Triggered::Started(d)) => d,
        };
        let mut log = format!("deployment {} {}\n", started.id, started.state);
        let mut current = started;
        loop {
            match current.state.as_str() {
                "succeeded" => {
                    return ExecOutcome {
                        result: ExecResult::Success,
                        output: log,
                    }
                }
                "failed" => {
                    let why = current
                        .message
                        .clone()
                        .unwrap_or_else(|| "no message".to_string());
                    return ExecOutcome {
                        result: ExecResult::Failure(format!(
                            "deployment {} failed: {why}",
                            current.id
                        )),
                        output: log,
                    };
                }
                _ => {}
            }
            tokio::time::sleep(a.deploy_poll).await;
            match client.deployment(&current.id).await {
                Ok(d) => {
                    if d.state != current.state {
                        log.push_str(&format!("deployment {} {}\n", d.id, d.state));
                    }
                    current = d;
                }
                // A failed poll is not a failed deployment: keep polling
                // until the attempt's timeout.
                Err(e) => log.push_str(&format!("poll failed: {:#}\n", anyhow::Error::from(e))),
            }
        }
    };
    match tokio::time::timeout(a.timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => ExecOutcome {
            result: ExecResult::Timeout,
            output: String::new(),
        },
    }
}
