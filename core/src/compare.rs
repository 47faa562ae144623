//! Comparison (the seed's ConsistencyCalculator): an observation of a pair
//! against what the authority says, giving one [`State`].

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use crate::authority::Entity;
use crate::collect::{Observation, Observed};

/// The state of one (entity, host) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The check proved the authority's MD5 (and version, when it can be read).
    Consistent,
    /// The content differs from the authority's MD5.
    Drifted,
    /// The file or URL does not exist on the host.
    Missing,
    /// The content matches but the version read on the host differs.
    VersionMismatch,
    /// No value could be obtained: unreachable host, failing script, timeout.
    CheckFailed,
}

impl State {
    /// Every state, in the order metrics list them.
    pub const ALL: [State; 5] = [
        State::Consistent,
        State::Drifted,
        State::Missing,
        State::VersionMismatch,
        State::CheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Consistent => "consistent",
            State::Drifted => "drifted",
            State::Missing => "missing",
            State::VersionMismatch => "version_mismatch",
            State::CheckFailed => "check_failed",
        }
    }

    /// True when a value was obtained (everything but `check_failed`).
    pub fn check_succeeded(self) -> bool {
        self != State::CheckFailed
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The judged state of one pair after a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairStatus {
    pub entity: String,
    pub host: String,
    pub state: State,
    pub expected_md5: String,
    pub observed_md5: Option<String>,
    pub expected_version: Option<String>,
    pub observed_version: Option<String>,
    pub error: Option<String>,
    #[serde(serialize_with = "unix_seconds")]
    pub checked_at: SystemTime,
}

fn unix_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(seconds_since_epoch(*t))
}

/// Seconds since the Unix epoch, as Prometheus timestamps are written.
pub fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Judges `obs` against `entity` (the seed's ConsistencyCalculator).
pub fn compare(entity: &Entity, obs: &Observation) -> PairStatus {
    let mut status = PairStatus {
        entity: entity.name.clone(),
        host: obs.host.clone(),
        state: State::CheckFailed,
        expected_md5: entity.md5.clone(),
        observed_md5: None,
        expected_version: entity.version.clone(),
        observed_version: None,
        error: None,
        checked_at: obs.checked_at,
    };
    match &obs.outcome {
        Err(error) => status.error = Some(error.clone()),
        Ok(Observed::Missing) => status.state = State::Missing,
        Ok(Observed::Present { md5, version }) => {
            status.observed_md5 = Some(md5.clone());
            status.state = if *md5 != entity.md5 {
                State::Drifted
            } else {
                match version {
                    None => State::Consistent,
                    Some(Err(e)) => {
                        status.error = Some(format!("reading the version failed: {e}"));
                        State::CheckFailed
                    }
                    Some(Ok(v)) if Some(v) == entity.version.as_ref() => State::Consistent,
                    Some(Ok(_)) => State::VersionMismatch,
                }
            };
            if let Some(Ok(v)) = version {
                status.observed_version = Some(v.clone());
            }
        }
    }
    status
}
