//! The engine: intake into the journal, the scheduler that picks due jobs,
//! the gates every job passes before a repair, the repair itself and its
//! verification.
//!
//! Gates, in order (each journaled with its reason and counted in
//! `skips_total`): concurrency (a job waits in the queue for a slot), re-check
//! of the pair (already consistent: skipped as stale), cooldown after a
//! verified repair, the deployment system (a running deployment defers, a
//! version disagreeing with the authority holds), the per-entity hourly
//! budget, the circuit breaker (too large a share of the entity's hosts
//! drifted at once), progressive waves (canary first), and dry-run.
//! Duplicate deliveries are merged at intake by the journal.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use fleetcheck_core::authority::{Authority, Entity, Host, RepairMethod};
use fleetcheck_core::compare::{PairStatus, State};
use fleetcheck_core::{Collector, CollectorOptions};
use tokio::sync::Notify;

use crate::config::Config;
use crate::deploy::DeployClient;
use crate::executor::{self, process, Attempt, ExecResult};
use crate::journal::{Intake, IntakeOutcome, Job, Journal, JournalError};
use crate::metrics::Metrics;
use crate::webhook::{AlertEvent, AlertStatus};

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    fleetcheck_core::compare::seconds_since_epoch(SystemTime::now())
}

/// A loaded config with the authority it names; replaced as a whole on reload.
pub struct Loaded {
    pub config: Config,
    pub authority: Arc<Authority>,
    pub deploy: Option<Arc<DeployClient>>,
}

/// Why a config or authority could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Authority(#[from] fleetcheck_core::LoadError),
}

impl Loaded {
    pub fn load(path: &std::path::Path) -> Result<Loaded, LoadError> {
        let config = Config::load(path)?;
        let authority = Arc::new(Authority::load(&config.authority)?);
        let deploy = config
            .deploy
            .as_ref()
            .map(|d| Arc::new(DeployClient::new(d)));
        Ok(Loaded {
            config,
            authority,
            deploy,
        })
    }
}

/// What intake did with one delivery, for the response body.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IntakeSummary {
    pub queued: usize,
    pub merged: usize,
    pub cancelled: usize,
    pub rejected: usize,
}

/// A rollout of one entity's repair in waves.
#[derive(Debug)]
struct Rollout {
    total: usize,
    wave: usize,
    admitted: BTreeSet<i64>,
    verified: BTreeSet<i64>,
    halted_until: Option<Instant>,
}

struct CircuitReading {
    at: Instant,
    drifted: usize,
    total: usize,
}

#[derive(Default)]
struct Sched {
    /// Jobs being gated or repaired now, with their entity.
    claimed: HashMap<i64, String>,
    rollouts: HashMap<String, Rollout>,
    circuit: HashMap<String, CircuitReading>,
}

pub struct Engine {
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    loaded: RwLock<Arc<Loaded>>,
    config_path: PathBuf,
    collector: Arc<Collector>,
    storage: PathBuf,
    dry_run: bool,
    sched: Mutex<Sched>,
    wake: Notify,
    idle: Notify,
    stopping: AtomicBool,
}

/// How a gate left a job.
enum Gate {
    Pass,
    /// The job ended or went back to wait; stop processing it.
    Stop,
}

impl Engine {
    pub fn new(
        loaded: Loaded,
        config_path: PathBuf,
        journal: Journal,
        metrics: Metrics,
        storage: PathBuf,
        dry_run: bool,
    ) -> Engine {
        let control_dir = storage.join("ssh");
        let _ = std::fs::create_dir_all(&control_dir);
        let collector = Collector::new(CollectorOptions {
            concurrency: loaded.config.collector_concurrency,
            max_sessions: loaded.config.collector_max_sessions,
            control_dir,
            session_idle: Duration::from_secs(60),
        });
        metrics.config_reload_ok.set(1);
        metrics.config_reload_time.set(now());
        Engine {
            journal: Arc::new(journal),
            metrics: Arc::new(metrics),
            loaded: RwLock::new(Arc::new(loaded)),
            config_path,
            collector: Arc::new(collector),
            storage,
            dry_run,
            sched: Mutex::new(Sched::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Reloads config and authority; on error the old ones stay.
    pub fn reload(&self) -> Result<(), LoadError> {
        match Loaded::load(&self.config_path) {
            Ok(loaded) => {
                *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                {
                    // Measurements and halts were about the old authority.
                    let mut s = self.sched();
                    s.circuit.clear();
                    s.rollouts.retain(|_, r| r.halted_until.is_none());
                }
                self.metrics.config_reload_ok.set(1);
                self.metrics.config_reload_time.set(now());
                tracing::info!(config = %self.config_path.display(), "config reloaded");
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                self.metrics.config_reload_ok.set(0);
                tracing::error!(error = %format!("{e:#}"), "config reload failed, keeping the previous config");
                Err(e)
            }
        }
    }

    /// Refreshes the gauges that mirror the journal (before a scrape).
    pub fn refresh_gauges(&self) {
        if let Ok((running, waiting)) = self.journal.counts() {
            self.metrics.in_progress.set(running as i64);
            self.metrics.queue_depth.set(waiting as i64);
        }
        // Suppression is whatever the journal holds right now: a hold that
        // ended because its jobs were fixed, skipped or cancelled must not
        // leave the gauge (and FleetcheckRemediationSuppressed) on.
        if let Ok(held) = self
            .journal
            .held_entities(&["circuit_open", "budget_exhausted"])
        {
            self.metrics.suppressed.reset();
            for (entity, reason) in held {
                self.metrics.set_suppressed(&entity, &reason, true);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Intake.

    /// Validates the alerts of one delivery against the authority and
    /// journals them in one transaction; metrics are counted only once the
    /// delivery is durable (a refused one is retried by Alertmanager).
    pub fn intake(&self, events: Vec<AlertEvent>) -> Result<IntakeSummary, JournalError> {
        let loaded = self.loaded();
        let auth = &loaded.authority;
        let mut statuses = Vec::with_capacity(events.len());
        let mut batch = Vec::with_capacity(events.len());
        let mut reject_reasons = Vec::new();
        for event in events {
            match event {
                AlertEvent::BadLabels {
                    status,
                    reason,
                    labels,
                } => {
                    statuses.push(status);
                    if status == AlertStatus::Firing {
                        reject_reasons.push("bad_labels");
                        batch.push(Intake::Rejected {
                            entity: String::new(),
                            host: String::new(),
                            reason: "bad_labels".into(),
                            detail: format!("{reason}; labels {labels}"),
                        });
                    }
                }
                AlertEvent::Pair {
                    status,
                    entity,
                    host,
                    starts_at,
                    fingerprint,
                } => {
                    statuses.push(status);
                    let problem = match auth.entity(&entity) {
                        None => Some((
                            "unknown_entity",
                            format!("entity {entity:?} is not in the authority"),
                        )),
                        Some(e) if !e.applies_to(&host) => Some((
                            "host_not_in_entity_set",
                            format!("host {host:?} is not in the entity_set of {entity:?}"),
                        )),
                        Some(_) => None,
                    };
                    match (status, problem) {
                        (AlertStatus::Firing, Some((reason, detail))) => {
                            reject_reasons.push(reason);
                            batch.push(Intake::Rejected {
                                entity,
                                host,
                                reason: reason.into(),
                                detail,
                            });
                        }
                        (AlertStatus::Firing, None) => batch.push(Intake::Firing {
                            entity,
                            host,
                            starts_at,
                            fingerprint,
                        }),
                        (AlertStatus::Resolved, _) => batch.push(Intake::Resolved { entity, host }),
                    }
                }
            }
        }
        let cfg = &loaded.config;
        let outcomes = self.journal.intake(
            &batch,
            cfg.queue_capacity,
            cfg.cooldown.as_secs_f64(),
            now(),
        )?;
        for s in statuses {
            self.metrics
                .alerts_received
                .with_label_values(&[s.as_str()])
                .inc();
        }
        for r in reject_reasons {
            self.metrics.alerts_rejected.with_label_values(&[r]).inc();
        }
        let mut summary = IntakeSummary::default();
        for o in outcomes {
            match o {
                IntakeOutcome::Queued(_) => summary.queued += 1,
                IntakeOutcome::Merged(_) => {
                    summary.merged += 1;
                    self.metrics.skip("duplicate");
                }
                IntakeOutcome::Cancelled(ids) => {
                    summary.cancelled += ids.len();
                    for _ in ids {
                        self.metrics.job("cancelled");
                    }
                }
                IntakeOutcome::Rejected(_) => {
                    summary.rejected += 1;
                    self.metrics.job("rejected");
                }
                IntakeOutcome::Nothing => {}
            }
        }
        self.wake.notify_one();
        Ok(summary)
    }

    // -----------------------------------------------------------------------
    // Start, scheduling and shutdown.

    /// After a restart: stops the process groups of repairs that were running
    /// when the remediator died, and queues those jobs again (their first gate
    /// re-checks the pair).
    pub fn recover(&self) -> Result<usize, JournalError> {
        let jobs = self.journal.recover_interrupted(now())?;
        for job in &jobs {
            if let (Some(pid), Some(start)) = (job.pid, &job.pid_start) {
                if process::process_start(pid).as_deref() == Some(start.as_str()) {
                    process::kill_group(pid);
                    self.journal.event(
                        job.id,
                        "interrupted",
                        Some("killed"),
                        Some(&format!(
                            "stopped the interrupted repair's process group {pid}"
                        )),
                        now(),
                    )?;
                }
            }
            tracing::warn!(job = job.id, entity = %job.entity, host = %job.host, "resuming a repair interrupted by a restart");
        }
        Ok(jobs.len())
    }

    /// The scheduler: picks due jobs until [`Engine::stop`].
    pub async fn run(self: Arc<Self>) {
        while !self.is_stopping() {
            let blocked = match self.dispatch() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "journal unavailable to the scheduler");
                    true
                }
            };
            let wait = if blocked {
                Duration::from_secs(1)
            } else {
                match self.journal.next_due() {
                    Ok(Some(due)) => Duration::from_secs_f64((due - now()).clamp(0.01, 1.0)),
                    _ => Duration::from_secs(1),
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Stops picking jobs and waits up to `grace` for the claimed ones.
    /// Returns how many were still running.
    pub async fn stop(&self, grace: Duration) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let left = self.sched().claimed.len();
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, self.idle.notified())
                .await
                .is_err()
            {
                let left = self.sched().claimed.len();
                if left == 0 {
                    break;
                }
                return left;
            }
        }
        self.collector.shutdown().await;
        0
    }

    /// Claims due jobs within the concurrency limits and spawns their
    /// processing. Returns true when due jobs had to wait for a slot.
    fn dispatch(self: &Arc<Self>) -> Result<bool, JournalError> {
        let loaded = self.loaded();
        let limits = &loaded.config.limits;
        let t = now();
        let ready = self.journal.ready(t, 512)?;
        let mut blocked = false;
        let mut global_noted = false;
        for job in ready {
            let mut s = self.sched();
            if s.claimed.contains_key(&job.id) {
                continue;
            }
            let global_full = s.claimed.len() >= limits.global_concurrency;
            let same = s.claimed.values().filter(|e| **e == job.entity).count();
            if global_full || same >= limits.entity_concurrency {
                blocked = true;
                drop(s);
                // Every job waiting for its entity's slot is noted; of the jobs
                // waiting for a global slot only the first per round, since
                // they all wait for the same thing.
                let detail = if global_full {
                    (!std::mem::replace(&mut global_noted, true)).then(|| {
                        format!(
                            "all {} global repair slots are busy",
                            limits.global_concurrency
                        )
                    })
                } else {
                    Some(format!(
                        "{same} repair(s) of entity {} already in progress",
                        job.entity
                    ))
                };
                if let Some(detail) = detail {
                    if self
                        .journal
                        .note_waiting(job.id, "concurrency", &detail, t)?
                    {
                        self.metrics.skip("concurrency");
                    }
                }
                continue;
            }
            s.claimed.insert(job.id, job.entity.clone());
            drop(s);
            let me = self.clone();
            tokio::spawn(async move {
                let id = job.id;
                let entity = job.entity.clone();
                if let Err(e) = me.process(job).await {
                    tracing::error!(job = id, error = %format!("{:#}", anyhow::Error::from(e)), "journal error while processing a job");
                }
                me.sched().claimed.remove(&id);
                me.after_job(id, &entity);
                me.idle.notify_waiters();
                me.wake.notify_one();
            });
        }
        Ok(blocked)
    }

    // -----------------------------------------------------------------------
    // One job.

    async fn check(&self, auth: &Authority, entity: &str, host: &str) -> PairStatus {
        let pair = [(entity.to_string(), host.to_string())];
        let mut statuses = self.collector.check_pairs(auth, &pair).await;
        statuses.pop().unwrap_or_else(|| PairStatus {
            entity: entity.to_string(),
            host: host.to_string(),
            state: State::CheckFailed,
            expected_md5: String::new(),
            observed_md5: None,
            expected_version: None,
            observed_version: None,
            error: Some("the pair is not in the authority".to_string()),
            checked_at: SystemTime::now(),
        })
    }

    fn finish(
        &self,
        job: &Job,
        state: &str,
        reason: Option<&str>,
        detail: &str,
    ) -> Result<(), JournalError> {
        self.journal.finish(job.id, state, reason, detail, now())?;
        self.metrics.job(state);
        if state == "skipped" {
            if let Some(r) = reason {
                self.metrics.skip(r);
            }
        }
        let mut s = self.sched();
        if let Some(r) = s.rollouts.get_mut(&job.entity) {
            match state {
                "verified" => {
                    r.verified.insert(job.id);
                }
                "failed" if r.admitted.contains(&job.id) => {
                    let halt = self.loaded().config.waves.halt_for;
                    r.halted_until = Some(Instant::now() + halt);
                    tracing::warn!(entity = %job.entity, host = %job.host, "a repair of the rollout failed: the rollout is halted");
                }
                _ => {
                    r.admitted.remove(&job.id);
                }
            }
        }
        tracing::info!(job = job.id, entity = %job.entity, host = %job.host, state, reason = reason.unwrap_or(""), "job ended");
        Ok(())
    }

    /// Puts the job back to wait; counts the gate when its reason is new.
    fn hold(
        &self,
        job: &Job,
        state: &str,
        reason: &str,
        detail: &str,
        after: Duration,
        bump: bool,
    ) -> Result<(), JournalError> {
        let until = now() + after.as_secs_f64();
        if self
            .journal
            .wait(job.id, state, reason, detail, until, bump, now())?
        {
            if crate::metrics::SKIP_REASONS.contains(&reason) {
                self.metrics.skip(reason);
            }
            tracing::info!(job = job.id, entity = %job.entity, host = %job.host, state, reason, detail, "job waits");
        }
        Ok(())
    }

    async fn process(&self, job: Job) -> Result<(), JournalError> {
        let loaded = self.loaded();
        let cfg = &loaded.config;
        let auth = loaded.authority.clone();
        let Some(entity) = auth.entity(&job.entity).cloned() else {
            return self.finish(
                &job,
                "rejected",
                Some("unknown_entity"),
                "the entity is no longer in the authority",
            );
        };
        let Some(host) = auth
            .host(&job.host)
            .filter(|h| entity.applies_to(&h.name))
            .cloned()
        else {
            return self.finish(
                &job,
                "rejected",
                Some("host_not_in_entity_set"),
                "the host is no longer in the entity's set",
            );
        };
        let Some(repair) = entity.repair.clone() else {
            return self.finish(
                &job,
                "failed",
                Some("no_repair_script"),
                "the entity has no repair_script",
            );
        };
        if self.is_stopping() {
            return Ok(());
        }

        // Gate: re-check the pair.
        let status = self.check(&auth, &entity.name, &host.name).await;
        match status.state {
            State::Consistent => {
                return if job.attempts > 0 {
                    self.verified(
                        &job,
                        "the pair is consistent on re-check after an earlier attempt",
                    )
                } else {
                    self.finish(
                        &job,
                        "skipped",
                        Some("already_consistent"),
                        "the pair is already consistent: the alert is stale",
                    )
                };
            }
            State::CheckFailed => {
                let why = status.error.unwrap_or_default();
                let after = cfg.retry.backoff(job.defers + 1);
                return self.hold(
                    &job,
                    "deferred",
                    "check_failed",
                    &format!("the re-check failed: {why}"),
                    after,
                    true,
                );
            }
            _ => {}
        }

        // Gate: cooldown after a verified repair.
        if let Some(t) = self.journal.last_verified(&job.entity, &job.host)? {
            let since = now() - t;
            if since < cfg.cooldown.as_secs_f64() {
                let detail = format!(
                    "repaired {since:.0}s ago; cooldown is {:?}; not fighting a flapping pair",
                    cfg.cooldown
                );
                return self.finish(&job, "skipped", Some("cooldown"), &detail);
            }
        }

        // Gate: the deployment system.
        if let Gate::Stop = self
            .deploy_gate(&loaded, &job, &entity, &host, &repair.method)
            .await?
        {
            return Ok(());
        }

        // Gate: per-entity budget per hour.
        let window_start = now() - 3600.0;
        let starts = self.journal.starts_since(&entity.name, window_start)?;
        let budget = cfg.limits.repairs_per_hour as usize;
        if starts.len() >= budget {
            let free_at = starts[starts.len() - budget] + 3600.0;
            let detail = format!(
                "{} repairs of {} in the last hour (budget {budget})",
                starts.len(),
                entity.name
            );
            let after = Duration::from_secs_f64((free_at - now()).max(1.0));
            return self.hold(&job, "held", "budget_exhausted", &detail, after, false);
        }

        // Gate: circuit breaker.
        let (drifted, total) = self.drift_reading(&auth, &entity, cfg).await;
        let c = &cfg.circuit;
        if drifted >= c.min_drifted_hosts
            && total > 0
            && drifted as f64 / total as f64 > c.max_drifted_share
        {
            let detail = format!(
                "{drifted} of {total} hosts of {} are inconsistent (more than {:.0}%): the authority or a rollout is likely wrong",
                entity.name,
                c.max_drifted_share * 100.0
            );
            tracing::warn!(entity = %entity.name, drifted, total, "circuit breaker open: holding the entity's repairs");
            return self.hold(
                &job,
                "held",
                "circuit_open",
                &detail,
                cfg.hold_recheck,
                false,
            );
        }

        // Gate: progressive waves.
        let active = self.journal.active_for_entity(&entity.name)?;
        if let Err(detail) = self.wave_admit(&job, active, cfg) {
            return self.hold(&job, "held", "wave_hold", &detail, cfg.hold_recheck, false);
        }

        // Gate: dry-run.
        let what = executor::describe(&repair.method, &entity, &host);
        if self.dry_run {
            self.finish(
                &job,
                "skipped",
                Some("dry_run"),
                &format!("dry run: would {what}"),
            )?;
            // A dry run counts as a success for the rollout, so that it shows
            // every wave.
            if let Some(r) = self.sched().rollouts.get_mut(&job.entity) {
                r.verified.insert(job.id);
            }
            return Ok(());
        }
        if self.is_stopping() {
            return self.hold(
                &job,
                "queued",
                "shutdown",
                "the remediator is stopping",
                Duration::ZERO,
                false,
            );
        }

        // The repair.
        let method = repair.method.as_str();
        let attempt_no = job.attempts + 1;
        self.journal.start(
            job.id,
            method,
            &format!("attempt {attempt_no}: {what}"),
            now(),
        )?;
        tracing::info!(job = job.id, entity = %entity.name, host = %host.name, method, attempt = attempt_no, "repair started");
        let attempt = Attempt {
            job_id: job.id,
            authority: auth.clone(),
            entity: entity.clone(),
            host: host.clone(),
            timeout: repair.timeout.unwrap_or(cfg.repair_timeout),
            output_cap: cfg.output_cap,
            work_dir: self
                .storage
                .join("work")
                .join(format!("job-{}-{attempt_no}", job.id)),
            ansible: cfg.ansible.clone(),
            deploy: loaded.deploy.clone(),
            deploy_poll: cfg
                .deploy
                .as_ref()
                .map(|d| d.poll_interval)
                .unwrap_or(Duration::from_secs(5)),
            collector: self.collector.clone(),
        };
        let journal = self.journal.clone();
        let id = job.id;
        let t0 = Instant::now();
        let outcome = executor::execute(&attempt, &repair.method, move |pid| {
            if let Some(start) = process::process_start(pid) {
                let _ = journal.record_process(id, pid, &start);
            }
        })
        .await;
        let took = t0.elapsed();
        self.metrics
            .repair_duration
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
        self.metrics
            .repairs
            .with_label_values(&[method, outcome.result.label()])
            .inc();
        self.journal.event(
            job.id,
            "output",
            Some(outcome.result.label()),
            Some(&outcome.output),
            now(),
        )?;
        let job = Job {
            attempts: attempt_no,
            ..job
        };

        let failure = match &outcome.result {
            ExecResult::Busy(body) => {
                let after = cfg.retry.backoff(job.defers + 1);
                return self.hold(
                    &job,
                    "deferred",
                    "deployment_running",
                    &format!("the deploy system is busy: {body}"),
                    after,
                    true,
                );
            }
            ExecResult::Timeout => format!("the repair timed out after {:?}", attempt.timeout),
            ExecResult::Failure(why) => format!("the repair failed: {why}"),
            ExecResult::Success => {
                // Verification: only a re-collected consistent pair is a success.
                let status = self.check(&auth, &entity.name, &host.name).await;
                if status.state == State::Consistent {
                    return self.verified(
                        &job,
                        &format!(
                            "verified consistent after attempt {attempt_no} ({:.1}s)",
                            took.as_secs_f64()
                        ),
                    );
                }
                format!(
                    "the repair ran but the pair is still {}{}",
                    status.state,
                    status.error.map(|e| format!(": {e}")).unwrap_or_default()
                )
            }
        };
        if attempt_no >= cfg.retry.max_attempts {
            tracing::warn!(job = job.id, entity = %entity.name, host = %host.name, error = %failure, "repair failed, giving up");
            return self.finish(
                &job,
                "failed",
                Some("attempts_exhausted"),
                &format!(
                    "{failure} (attempt {attempt_no} of {})",
                    cfg.retry.max_attempts
                ),
            );
        }
        let after = cfg.retry.backoff(attempt_no);
        tracing::warn!(job = job.id, entity = %entity.name, host = %host.name, error = %failure, "repair attempt failed, retrying");
        self.hold(
            &job,
            "deferred",
            "retry",
            &format!("{failure}; retrying in {after:?}"),
            after,
            false,
        )
    }

    fn verified(&self, job: &Job, detail: &str) -> Result<(), JournalError> {
        if let Some(start) = job.starts_at {
            self.metrics
                .time_to_repair
                .observe((now() - start).max(0.0));
        }
        self.finish(job, "verified", None, detail)
    }

    /// The deployment-system gate (only with `deploy:` configured).
    async fn deploy_gate(
        &self,
        loaded: &Loaded,
        job: &Job,
        entity: &Entity,
        host: &Host,
        method: &RepairMethod,
    ) -> Result<Gate, JournalError> {
        let Some(client) = &loaded.deploy else {
            return Ok(Gate::Pass);
        };
        let cfg = &loaded.config;
        let backoff = cfg.retry.backoff(job.defers + 1);
        match client.host(&host.name).await {
            Ok(Some(d)) if d.is_active() => {
                let detail = format!("deployment {} is {} on host {}", d.id, d.state, host.name);
                self.hold(
                    job,
                    "deferred",
                    "deployment_running",
                    &detail,
                    backoff,
                    true,
                )?;
                return Ok(Gate::Stop);
            }
            Ok(_) => {}
            Err(e) => {
                self.hold(
                    job,
                    "deferred",
                    "deploy_unavailable",
                    &format!("{:#}", anyhow::Error::from(e)),
                    backoff,
                    true,
                )?;
                return Ok(Gate::Stop);
            }
        }
        let RepairMethod::Deploy { service } = method else {
            return Ok(Gate::Pass);
        };
        match client.service(service).await {
            Ok(s) => {
                if let Some(d) = s.deployment.filter(|d| d.is_active()) {
                    let detail = format!("deployment {} of service {service} is {}", d.id, d.state);
                    self.hold(
                        job,
                        "deferred",
                        "deployment_running",
                        &detail,
                        backoff,
                        true,
                    )?;
                    return Ok(Gate::Stop);
                }
                if let (Some(theirs), Some(ours)) = (&s.version, &entity.version) {
                    if theirs != ours {
                        let detail = format!(
                            "version conflict: the deploy system rolls out {service} {theirs}, the authority says {ours}; holding until they agree"
                        );
                        tracing::warn!(entity = %entity.name, service, theirs, ours, "version conflict with the deploy system");
                        self.hold(
                            job,
                            "held",
                            "version_conflict",
                            &detail,
                            cfg.hold_recheck,
                            false,
                        )?;
                        return Ok(Gate::Stop);
                    }
                }
                Ok(Gate::Pass)
            }
            Err(e) => {
                self.hold(
                    job,
                    "deferred",
                    "deploy_unavailable",
                    &format!("{:#}", anyhow::Error::from(e)),
                    backoff,
                    true,
                )?;
                Ok(Gate::Stop)
            }
        }
    }

    /// (drifted hosts, hosts) of the entity, measured with the collector and
    /// reused for `circuit_breaker.recheck_interval`.
    async fn drift_reading(
        &self,
        auth: &Authority,
        entity: &Entity,
        cfg: &Config,
    ) -> (usize, usize) {
        let total = entity.hosts.len();
        if total < cfg.circuit.min_drifted_hosts || cfg.circuit.max_drifted_share >= 1.0 {
            return (0, total);
        }
        if let Some(r) = self.sched().circuit.get(&entity.name) {
            if r.at.elapsed() < cfg.circuit.recheck_interval {
                return (r.drifted, r.total);
            }
        }
        let pairs: Vec<(String, String)> = entity
            .hosts
            .iter()
            .map(|h| (entity.name.clone(), h.clone()))
            .collect();
        let statuses = self.collector.check_pairs(auth, &pairs).await;
        let drifted = statuses
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    State::Drifted | State::Missing | State::VersionMismatch
                )
            })
            .count();
        self.sched().circuit.insert(
            entity.name.clone(),
            CircuitReading {
                at: Instant::now(),
                drifted,
                total,
            },
        );
        (drifted, total)
    }

    /// Admits the job into its entity's rollout, or says why it must wait.
    fn wave_admit(&self, job: &Job, active: usize, cfg: &Config) -> Result<(), String> {
        let waves = &cfg.waves;
        if waves.steps.is_empty() {
            return Ok(());
        }
        let mut s = self.sched();
        if let Some(r) = s.rollouts.get(&job.entity) {
            if r.halted_until.is_some_and(|t| Instant::now() >= t) {
                s.rollouts.remove(&job.entity);
            }
        }
        if !s.rollouts.contains_key(&job.entity) {
            if active < waves.min_hosts {
                return Ok(());
            }
            tracing::info!(entity = %job.entity, hosts = active, "starting a rollout in waves");
            s.rollouts.insert(
                job.entity.clone(),
                Rollout {
                    total: active,
                    wave: 0,
                    admitted: BTreeSet::new(),
                    verified: BTreeSet::new(),
                    halted_until: None,
                },
            );
        }
        let r = s.rollouts.get_mut(&job.entity).expect("inserted above");
        if r.halted_until.is_some() {
            return Err(format!(
                "the rollout of {} is halted after a failed repair ({} of {} verified)",
                job.entity,
                r.verified.len(),
                r.total
            ));
        }
        if r.admitted.contains(&job.id) {
            return Ok(());
        }
        r.total = r.total.max(active + r.verified.len());
        loop {
            let cap = waves.cumulative(r.wave, r.total);
            if r.admitted.len() >= cap
                && r.verified.len() >= r.admitted.len()
                && r.wave + 1 < waves.steps.len()
            {
                r.wave += 1;
                tracing::info!(entity = %job.entity, wave = r.wave + 1, "widening the rollout");
            } else {
                break;
            }
        }
        let cap = waves.cumulative(r.wave, r.total);
        if r.admitted.len() < cap {
            r.admitted.insert(job.id);
            return Ok(());
        }
        Err(format!(
            "wave {} of the rollout of {}: {} of {} admitted repairs verified so far, {} hosts in the rollout",
            r.wave + 1,
            job.entity,
            r.verified.len(),
            r.admitted.len(),
            r.total
        ))
    }

    /// After a job of `entity` was processed: wakes jobs held by its waves and
    /// ends a finished rollout.
    fn after_job(&self, id: i64, entity: &str) {
        let ended = self
            .journal
            .get(id)
            .ok()
            .flatten()
            .is_some_and(|j| !crate::journal::ACTIVE.contains(&j.state.as_str()));
        if ended {
            let _ = self.journal.release_held(entity, "wave_hold");
        }
        let active = self.journal.active_for_entity(entity).unwrap_or(1);
        let mut s = self.sched();
        if active == 0
            && s.rollouts
                .get(entity)
                .is_some_and(|r| r.halted_until.is_none())
        {
            s.rollouts.remove(entity);
        }
    }
}
