//! `/api/v1/status`: every pair with its state, observed MD5 and version, last
//! check and error, as JSON. Filters: `?entity=`, `?host=`, `?state=`.

use fleetcheck_core::compare::seconds_since_epoch;
use fleetcheck_core::{Authority, Snapshot};
use serde_json::{json, Value};

pub fn render(authority: &Authority, snapshot: Option<&Snapshot>, query: &str) -> String {
    let filter = |key: &str| -> Option<String> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| decode(v))
    };
    let (entity, host, state) = (filter("entity"), filter("host"), filter("state"));
    let Some(snapshot) = snapshot else {
        return json!({"status": "success", "data": {"ready": false, "pairs": [], "hosts": []}})
            .to_string();
    };
    let pairs: Vec<Value> = snapshot
        .pairs
        .iter()
        .filter(|p| {
            authority
                .entity(&p.entity)
                .is_some_and(|e| e.applies_to(&p.host))
        })
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
    let hosts: Vec<Value> = snapshot
        .hosts
        .iter()
        .filter(|h| authority.hosts.contains_key(&h.name))
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

/// Percent-decoding for query values (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = || {
            std::str::from_utf8(b.get(i + 1..i + 3)?)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match (b[i], hex()) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
