//! The durable job journal: SQLite in WAL mode with `synchronous=FULL`, so a
//! job acknowledged to Alertmanager survives a crash or `kill -9`.
//!
//! Two tables: `jobs` (one row per (entity, host) job with its current state)
//! and `events` (its history: received, merged, gated, started, output,
//! verified, failed, cancelled, ...). A partial unique index keeps at most one
//! active job per pair, which is what makes deduplication hold even across
//! restarts.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// States a job can be in. The first four are active (at most one per pair).
pub const ACTIVE: [&str; 4] = ["queued", "deferred", "held", "running"];

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the storage directory {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal database error")]
    Sql(#[from] rusqlite::Error),
    #[error("the queue is full ({0} jobs waiting or running)")]
    QueueFull(usize),
}

/// One job as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub id: i64,
    pub entity: String,
    pub host: String,
    pub state: String,
    pub reason: Option<String>,
    pub method: Option<String>,
    pub fingerprint: Option<String>,
    pub starts_at: Option<f64>,
    pub received_at: f64,
    pub updated_at: f64,
    pub finished_at: Option<f64>,
    pub not_before: f64,
    pub attempts: u32,
    pub defers: u32,
    pub deliveries: u32,
    #[serde(skip)]
    pub pid: Option<u32>,
    #[serde(skip)]
    pub pid_start: Option<String>,
}

/// One history entry of a job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub at: f64,
    pub kind: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

/// What intake asks the journal to record for one alert.
#[derive(Clone, Debug)]
pub enum Intake {
    Firing {
        entity: String,
        host: String,
        starts_at: Option<f64>,
        fingerprint: Option<String>,
    },
    Resolved {
        entity: String,
        host: String,
    },
    Rejected {
        entity: String,
        host: String,
        reason: String,
        detail: String,
    },
}

/// What the journal did with one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// A new job was queued.
    Queued(i64),
    /// The pair already had a job in flight (or the same alert's job finished
    /// recently): the delivery was merged into it.
    Merged(i64),
    /// Queued work for the pair was cancelled.
    Cancelled(Vec<i64>),
    Rejected(i64),
    /// A resolved alert with nothing queued.
    Nothing,
}

/// A filter for [`Journal::query`].
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub entity: Option<String>,
    pub host: Option<String>,
    pub state: Option<String>,
    pub limit: usize,
}

pub struct Journal {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    host TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    method TEXT,
    fingerprint TEXT,
    starts_at REAL,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    defers INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 1,
    pid INTEGER,
    pid_start TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job_per_pair ON jobs(entity, host)
    WHERE state IN ('queued', 'deferred', 'held', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, not_before);
CREATE INDEX IF NOT EXISTS jobs_by_pair ON jobs(entity, host, finished_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_job ON events(job_id);
CREATE INDEX IF NOT EXISTS events_by_kind ON events(kind, at);
"#;

const JOB_COLUMNS: &str =
    "id, entity, host, state, reason, method, fingerprint, starts_at, received_at, updated_at, \
     finished_at, not_before, attempts, defers, deliveries, pid, pid_start";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        entity: r.get(1)?,
        host: r.get(2)?,
        state: r.get(3)?,
        reason: r.get(4)?,
        method: r.get(5)?,
        fingerprint: r.get(6)?,
        starts_at: r.get(7)?,
        received_at: r.get(8)?,
        updated_at: r.get(9)?,
        finished_at: r.get(10)?,
        not_before: r.get(11)?,
        attempts: r.get(12)?,
        defers: r.get(13)?,
        deliveries: r.get(14)?,
        pid: r.get(15)?,
        pid_start: r.get(16)?,
    })
}

fn add_event(
    conn: &Connection,
    job: i64,
    at: f64,
    kind: &str,
    reason: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO events (job_id, at, kind, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![job, at, kind, reason, detail],
    )?;
    Ok(())
}

impl Journal {
    /// Opens (creating) `dir/remediator.db`.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(dir.join("remediator.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before intake answers 2xx.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A trivial query: is the database usable?
    pub fn ping(&self) -> Result<(), JournalError> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Records a whole webhook delivery in one transaction: either every alert
    /// is journaled or none is (and the caller answers 503).
    ///
    /// A firing alert for a pair with an active job is merged into it; so is
    /// one repeating the alert (same `startsAt`) of a job that finished less
    /// than `merge_window` ago. A new job beyond `capacity` active jobs fails
    /// the delivery with [`JournalError::QueueFull`].
    pub fn intake(
        &self,
        alerts: &[Intake],
        capacity: usize,
        merge_window: f64,
        now: f64,
    ) -> Result<Vec<IntakeOutcome>, JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut active: usize = tx.query_row(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'deferred', 'held', 'running')",
            [],
            |r| r.get::<_, i64>(0),
        )? as usize;
        let mut outcomes = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let outcome = match alert {
                Intake::Firing {
                    entity,
                    host,
                    starts_at,
                    fingerprint,
                } => {
                    let existing: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM jobs WHERE entity = ?1 AND host = ?2 \
                             AND state IN ('queued', 'deferred', 'held', 'running')",
                            params![entity, host],
                            |r| r.get(0),
                        )
                        .optional()?;
                    let existing = match (existing, starts_at) {
                        (Some(id), _) => Some(id),
                        (None, Some(s)) => tx
                            .query_row(
                                "SELECT id FROM jobs WHERE entity = ?1 AND host = ?2 AND starts_at = ?3 \
                                 AND finished_at >= ?4 AND state IN ('verified', 'failed', 'skipped') \
                                 ORDER BY id DESC LIMIT 1",
                                params![entity, host, s, now - merge_window],
                                |r| r.get(0),
                            )
                            .optional()?,
                        (None, None) => None,
                    };
                    if let Some(id) = existing {
                        tx.execute(
                            "UPDATE jobs SET deliveries = deliveries + 1 WHERE id = ?1",
                            params![id],
                        )?;
                        add_event(
                            &tx,
                            id,
                            now,
                            "merged",
                            Some("duplicate"),
                            Some("a repeated delivery of the alert"),
                        )?;
                        IntakeOutcome::Merged(id)
                    } else {
                        if active >= capacity {
                            return Err(JournalError::QueueFull(active));
                        }
                        active += 1;
                        tx.execute(
                            "INSERT INTO jobs (entity, host, state, fingerprint, starts_at, received_at, updated_at, not_before) \
                             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5, 0)",
                            params![entity, host, fingerprint, starts_at, now],
                        )?;
                        let id = tx.last_insert_rowid();
                        add_event(
                            &tx,
                            id,
                            now,
                            "received",
                            None,
                            fingerprint
                                .as_deref()
                                .map(|f| format!("fingerprint {f}"))
                                .as_deref(),
                        )?;
                        IntakeOutcome::Queued(id)
                    }
                }
                Intake::Resolved { entity, host } => {
                    let mut stmt = tx.prepare(
                        "SELECT id FROM jobs WHERE entity = ?1 AND host = ?2 AND state IN ('queued', 'deferred', 'held')",
                    )?;
                    let ids: Vec<i64> = stmt
                        .query_map(params![entity, host], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    drop(stmt);
                    for id in &ids {
                        tx.execute(
                            "UPDATE jobs SET state = 'cancelled', reason = 'resolved', updated_at = ?2, finished_at = ?2 WHERE id = ?1",
                            params![id, now],
                        )?;
                        add_event(
                            &tx,
                            *id,
                            now,
                            "cancelled",
                            Some("resolved"),
                            Some("the alert resolved before the repair ran"),
                        )?;
                        active -= 1;
                    }
                    if ids.is_empty() {
                        IntakeOutcome::Nothing
                    } else {
                        IntakeOutcome::Cancelled(ids)
                    }
                }
                Intake::Rejected {
                    entity,
                    host,
                    reason,
                    detail,
                } => {
                    tx.execute(
                        "INSERT INTO jobs (entity, host, state, reason, received_at, updated_at, finished_at) \
                         VALUES (?1, ?2, 'rejected', ?3, ?4, ?4, ?4)",
                        params![entity, host, reason, now],
                    )?;
                    let id = tx.last_insert_rowid();
                    add_event(&tx, id, now, "rejected", Some(reason), Some(detail))?;
                    IntakeOutcome::Rejected(id)
                }
            };
            outcomes.push(outcome);
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// After a restart: every job left `running` was interrupted. Returns them
    /// (with the process they had started, if any) after queueing them again.
    pub fn recover_interrupted(&self, now: f64) -> Result<Vec<Job>, JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let jobs: Vec<Job> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running'"
            ))?;
            let rows = stmt.query_map([], job_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        for job in &jobs {
            tx.execute(
                "UPDATE jobs SET state = 'queued', reason = 'interrupted', not_before = 0, updated_at = ?2 WHERE id = ?1",
                params![job.id, now],
            )?;
            add_event(
                &tx,
                job.id,
                now,
                "interrupted",
                Some("restart"),
                Some("the remediator stopped during this repair; re-checking the pair"),
            )?;
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// Waiting jobs whose time has come, oldest first.
    pub fn ready(&self, now: f64, limit: usize) -> Result<Vec<Job>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'deferred', 'held') AND not_before <= ?1 \
             ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now, limit as i64], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next waiting job becomes due, if any.
    pub fn next_due(&self) -> Result<Option<f64>, JournalError> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(not_before) FROM jobs WHERE state IN ('queued', 'deferred', 'held')",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn get(&self, id: i64) -> Result<Option<Job>, JournalError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?)
    }

    /// Puts a job back to wait (`deferred` or `held`) with the gate's reason.
    /// The event is written only when the reason changes, so a job waiting on
    /// the same gate does not flood its history. Returns whether it changed.
    // The arguments are the columns of one update; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn wait(
        &self,
        id: i64,
        state: &str,
        reason: &str,
        detail: &str,
        not_before: f64,
        bump_defers: bool,
        now: f64,
    ) -> Result<bool, JournalError> {
        let conn = self.conn();
        let prev: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT state, reason FROM jobs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((prev_state, prev_reason)) = prev else {
            return Ok(false);
        };
        if !ACTIVE.contains(&prev_state.as_str()) {
            return Ok(false);
        }
        conn.execute(
            "UPDATE jobs SET state = ?2, reason = ?3, not_before = ?4, updated_at = ?5, defers = defers + ?6, pid = NULL, pid_start = NULL WHERE id = ?1",
            params![id, state, reason, not_before, now, bump_defers as i64],
        )?;
        let changed = prev_reason.as_deref() != Some(reason) || prev_state != state;
        if changed {
            add_event(&conn, id, now, "gated", Some(reason), Some(detail))?;
        }
        Ok(changed)
    }

    /// Sets only the reason of a waiting job (no state change), writing the
    /// event once. Returns whether it changed.
    pub fn note_waiting(
        &self,
        id: i64,
        reason: &str,
        detail: &str,
        now: f64,
    ) -> Result<bool, JournalError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE jobs SET reason = ?2, updated_at = ?3 WHERE id = ?1 AND (reason IS NULL OR reason != ?2) \
             AND state IN ('queued', 'deferred', 'held')",
            params![id, reason, now],
        )?;
        if n > 0 {
            add_event(&conn, id, now, "gated", Some(reason), Some(detail))?;
        }
        Ok(n > 0)
    }

    /// Marks a job running (a repair attempt starts).
    pub fn start(&self, id: i64, method: &str, detail: &str, now: f64) -> Result<(), JournalError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE jobs SET state = 'running', method = ?2, reason = NULL, attempts = attempts + 1, updated_at = ?3 WHERE id = ?1",
            params![id, method, now],
        )?;
        add_event(&conn, id, now, "started", None, Some(detail))?;
        Ok(())
    }

    /// Remembers the local process group a running repair started, so that a
    /// restart after a crash can stop it before repairing again.
    pub fn record_process(&self, id: i64, pid: u32, start: &str) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE jobs SET pid = ?2, pid_start = ?3 WHERE id = ?1",
            params![id, pid, start],
        )?;
        Ok(())
    }

    /// Adds a history entry without changing the state.
    pub fn event(
        &self,
        id: i64,
        kind: &str,
        reason: Option<&str>,
        detail: Option<&str>,
        now: f64,
    ) -> Result<(), JournalError> {
        add_event(&self.conn(), id, now, kind, reason, detail)?;
        Ok(())
    }

    /// Ends a job (verified, failed, cancelled, rejected, skipped).
    pub fn finish(
        &self,
        id: i64,
        state: &str,
        reason: Option<&str>,
        detail: &str,
        now: f64,
    ) -> Result<(), JournalError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4, finished_at = ?4, pid = NULL, pid_start = NULL WHERE id = ?1",
            params![id, state, reason, now],
        )?;
        let kind = match state {
            "verified" | "failed" | "cancelled" | "rejected" | "skipped" => state,
            _ => "finished",
        };
        add_event(&conn, id, now, kind, reason, Some(detail))?;
        Ok(())
    }

    /// When the pair's last verified repair finished, if any.
    pub fn last_verified(&self, entity: &str, host: &str) -> Result<Option<f64>, JournalError> {
        Ok(self.conn().query_row(
            "SELECT MAX(finished_at) FROM jobs WHERE entity = ?1 AND host = ?2 AND state = 'verified'",
            params![entity, host],
            |r| r.get(0),
        )?)
    }

    /// Start times of the entity's repair attempts since `since` (the budget).
    pub fn starts_since(&self, entity: &str, since: f64) -> Result<Vec<f64>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT e.at FROM events e JOIN jobs j ON j.id = e.job_id \
             WHERE e.kind = 'started' AND j.entity = ?1 AND e.at >= ?2 ORDER BY e.at",
        )?;
        let rows = stmt.query_map(params![entity, since], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Active jobs of an entity (the size of a rollout).
    pub fn active_for_entity(&self, entity: &str) -> Result<usize, JournalError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE entity = ?1 AND state IN ('queued', 'deferred', 'held', 'running')",
            params![entity],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }

    /// Makes the entity's jobs held for `reason` due now (their gate may pass).
    pub fn release_held(&self, entity: &str, reason: &str) -> Result<usize, JournalError> {
        Ok(self.conn().execute(
            "UPDATE jobs SET not_before = 0 WHERE entity = ?1 AND state = 'held' AND reason = ?2 AND not_before > 0",
            params![entity, reason],
        )?)
    }

    /// (running, waiting) job counts.
    pub fn counts(&self) -> Result<(usize, usize), JournalError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(state = 'running'), 0), COALESCE(SUM(state IN ('queued', 'deferred', 'held')), 0) FROM jobs",
            [],
            |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
        )?)
    }

    /// Entities with jobs held for one of `reasons`, with the reason: what the
    /// `suppressed` gauge shows.
    pub fn held_entities(&self, reasons: &[&str]) -> Result<Vec<(String, String)>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT entity, reason FROM jobs WHERE state = 'held' AND reason IS NOT NULL ORDER BY entity, reason",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (entity, reason) = row?;
            if reasons.contains(&reason.as_str()) {
                out.push((entity, reason));
            }
        }
        Ok(out)
    }

    /// Jobs matching `filter`, newest first, each with its history.
    pub fn query(&self, filter: &Filter) -> Result<Vec<(Job, Vec<Event>)>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR entity = ?1) AND (?2 IS NULL OR host = ?2) \
             AND (?3 IS NULL OR state = ?3) ORDER BY id DESC LIMIT ?4"
        ))?;
        let jobs: Vec<Job> = stmt
            .query_map(
                params![
                    filter.entity,
                    filter.host,
                    filter.state,
                    filter.limit.max(1) as i64
                ],
                job_from_row,
            )?
            .collect::<Result<_, _>>()?;
        let mut events_stmt = conn
            .prepare("SELECT at, kind, reason, detail FROM events WHERE job_id = ?1 ORDER BY id")?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let events: Vec<Event> = events_stmt
                .query_map(params![job.id], |r| {
                    Ok(Event {
                        at: r.get(0)?,
                        kind: r.get(1)?,
                        reason: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push((job, events));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing(host: &str, starts_at: Option<f64>) -> Intake {
        Intake::Firing {
            entity: "e".into(),
            host: host.into(),
            starts_at,
            fingerprint: None,
        }
    }

    #[test]
    fn one_active_job_per_pair_and_resolved_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let out = j
            .intake(
                &[
                    firing("h1", Some(1.0)),
                    firing("h1", Some(1.0)),
                    firing("h2", None),
                ],
                10,
                60.0,
                100.0,
            )
            .unwrap();
        assert_eq!(
            out,
            [
                IntakeOutcome::Queued(1),
                IntakeOutcome::Merged(1),
                IntakeOutcome::Queued(2)
            ]
        );
        let out = j
            .intake(
                &[Intake::Resolved {
                    entity: "e".into(),
                    host: "h2".into(),
                }],
                10,
                60.0,
                101.0,
            )
            .unwrap();
        assert_eq!(out, [IntakeOutcome::Cancelled(vec![2])]);
        assert_eq!(j.counts().unwrap(), (0, 1));
        // The same alert again after its job finished is merged; a new one is not.
        j.finish(1, "verified", None, "ok", 102.0).unwrap();
        let out = j
            .intake(
                &[firing("h1", Some(1.0)), firing("h2", Some(5.0))],
                10,
                60.0,
                103.0,
            )
            .unwrap();
        assert_eq!(out, [IntakeOutcome::Merged(1), IntakeOutcome::Queued(3)]);
    }

    #[test]
    fn a_full_queue_refuses_the_whole_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let err = j
            .intake(&[firing("h1", None), firing("h2", None)], 1, 60.0, 1.0)
            .unwrap_err();
        assert!(matches!(err, JournalError::QueueFull(1)));
        assert_eq!(
            j.counts().unwrap(),
            (0, 0),
            "nothing of a refused delivery is kept"
        );
    }

    #[test]
    fn running_jobs_are_recovered_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            j.intake(&[firing("h1", None)], 10, 60.0, 1.0).unwrap();
            j.start(1, "command", "attempt 1", 2.0).unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        let recovered = j.recover_interrupted(3.0).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(j.get(1).unwrap().unwrap().state, "queued");
        assert_eq!(j.ready(3.0, 10).unwrap().len(), 1);
    }
}
