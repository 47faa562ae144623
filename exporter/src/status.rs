//! `/api/v1/status`: every pair with its state, observed MD5 and version, last
//! check and error, as JSON. Filters: `?entity=`, `?host=`, `?state=`.

use fleetcheck_core::compare::seconds_since_epoch;
use fleetcheck_core::{Authority, Snapshot};
use serde_json::{json, Value};

pub fn render(authority: &Authority, snapshot: Option<&Snapshot>, query: &str) -> String {
    let filter = |key: &str| fleetcheck_daemon::query_param(query, key);
    let (entity, host, state) = (filter("entity"), filter("host"), filter("state"));
    let Some(snapshot) = snapshot else {
        return json!({"status": "success", "data": {"ready": false, "pairs": [], "hosts": []}})
            .to_string();
    };
    let pairs: Vec<Value> = snapshot
        .current_pairs(authority)
        .filter(|p| entity.as_deref().is_none_or(|e| e == p.entity))
        .filter(|p| host.as_deref().is_none_or(|h| h == p.host))
        .filter(|p| state.as_deref().is_none_or(|s| s == p.state.as_str()))
        .map(|p| {
            json!({
                "entity": p.entity,
                "host": p.host,
                "state": p.state.as_str(),
                "consistent": p.state == fleetcheck_core::State::Consistent,
                "expected_md5": p.expected_md5,
                "observed_md5": p.observed_md5,
                "expected_version": p.expected_version,
                "observed_version": p.observed_version,
                "last_check": seconds_since_epoch(p.checked_at),
                "error": p.error,
            })
        })
        .collect();
    let hosts: Vec<Value> = snapshot.current_hosts(authority)
        .filter(|h| host.as_deref().is_none_or(|x| x == h.name))
        .map(|h| json!({"host": h.name, "up": h.up, "duration_seconds": h.duration.as_secs_f64(), "error": h.error}))
        .collect();
    json!({
        "status": "success",
        "data": {
            "ready": true,
            "cycle_started": seconds_since_epoch(snapshot.started),
            "cycle_duration_seconds": snapshot.duration.as_secs_f64(),
            "pairs": pairs,
            "hosts": hosts,
        }
    })
    .to_string()
}
