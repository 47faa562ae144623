//! The `/metrics` exposition, encoded at scrape time from the latest snapshot
//! and the authority in force: a pair or host that left the authority leaves
//! `/metrics` with the next scrape.

use std::collections::{BTreeMap, BTreeSet};

use fleetcheck_core::compare::seconds_since_epoch;
use fleetcheck_core::{Authority, Snapshot, State};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::state::ReloadStatus;

/// What goes into one exposition.
pub struct Exposition<'a> {
    pub authority: &'a Authority,
    pub snapshot: Option<&'a Snapshot>,
    pub reload: ReloadStatus,
    /// Per-pair families (`fleetcheck_entity_consistent` and friends); off for
    /// very large fleets, where the per-entity aggregates remain.
    pub pair_series: bool,
}

pub use fleetcheck_daemon::{REVISION, VERSION};

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Encodes the exposition in the Prometheus text format.
pub fn encode(x: &Exposition<'_>) -> Vec<u8> {
    let r = Registry::new();
    let authority = x.authority;

    let build = gauge_vec(
        &r,
        "fleetcheck_build_info",
        "Build of the exporter; always 1.",
        &["version", "revision"],
    );
    build.with_label_values(&[VERSION, REVISION]).set(1.0);

    gauge(
        &r,
        "fleetcheck_config_last_reload_successful",
        "1 when the last load of the authority succeeded.",
    )
    .set(if x.reload.successful { 1.0 } else { 0.0 });
    gauge(
        &r,
        "fleetcheck_config_last_reload_success_timestamp_seconds",
        "When the authority was last loaded successfully.",
    )
    .set(seconds_since_epoch(x.reload.success_time));

    // Entity metadata, for joins: every free-form label any entity uses
    // becomes a label of the family (empty where an entity lacks it).
    let extra: BTreeSet<&str> = authority
        .entities
        .iter()
        .flat_map(|e| e.labels.keys().map(String::as_str))
        .collect();
    let mut info_labels = vec!["entity", "kind", "version"];
    info_labels.extend(extra.iter().copied());
    let info = gauge_vec(
        &r,
        "fleetcheck_authority_entity_info",
        "Entities of the authority with their kind, version and labels; always 1.",
        &info_labels,
    );
    for e in &authority.entities {
        let mut values = vec![
            e.name.as_str(),
            e.kind.as_str(),
            e.version.as_deref().unwrap_or(""),
        ];
        values.extend(
            extra
                .iter()
                .map(|k| e.labels.get(*k).map(String::as_str).unwrap_or("")),
        );
        info.with_label_values(&values).set(1.0);
    }

    let Some(snapshot) = x.snapshot else {
        return finish(&r);
    };

    gauge(
        &r,
        "fleetcheck_cycle_duration_seconds",
        "Duration of the last collection cycle.",
    )
    .set(snapshot.duration.as_secs_f64());
    gauge(
        &r,
        "fleetcheck_last_cycle_timestamp_seconds",
        "When the last collection cycle started.",
    )
    .set(seconds_since_epoch(snapshot.started));

    let up = gauge_vec(
        &r,
        "fleetcheck_host_up",
        "1 when the host answered in the last cycle.",
        &["host"],
    );
    let host_duration = gauge_vec(
        &r,
        "fleetcheck_host_check_duration_seconds",
        "Time the last cycle spent checking the host.",
        &["host"],
    );
    for h in snapshot.current_hosts(authority) {
        up.with_label_values(&[&h.name])
            .set(if h.up { 1.0 } else { 0.0 });
        host_duration
            .with_label_values(&[&h.name])
            .set(h.duration.as_secs_f64());
    }

    // Only pairs the authority in force still asks for.
    let pairs: Vec<_> = snapshot.current_pairs(authority).collect();

    let counts = gauge_vec(
        &r,
        "fleetcheck_entity_hosts",
        "Hosts of the entity per state in the last cycle.",
        &["entity", "state"],
    );
    let mut per_entity: BTreeMap<&str, BTreeMap<State, u64>> = BTreeMap::new();
    for e in &authority.entities {
        per_entity.insert(&e.name, State::ALL.iter().map(|s| (*s, 0)).collect());
    }
    for p in &pairs {
        if let Some(m) = per_entity.get_mut(p.entity.as_str()) {
            *m.entry(p.state).or_default() += 1;
        }
    }
    for (entity, states) in &per_entity {
        for (state, n) in states {
            counts
                .with_label_values(&[entity, state.as_str()])
                .set(*n as f64);
        }
    }

    if x.pair_series {
        let consistent = gauge_vec(
            &r,
            "fleetcheck_entity_consistent",
            "1 when the last check proved the authority's state on the host, else 0.",
            &["entity", "host"],
        );
        let success = gauge_vec(
            &r,
            "fleetcheck_entity_check_success",
            "1 when the last check obtained a value.",
            &["entity", "host"],
        );
        let last = gauge_vec(
            &r,
            "fleetcheck_entity_last_check_timestamp_seconds",
            "When the pair was last checked.",
            &["entity", "host"],
        );
        let why = gauge_vec(
            &r,
            "fleetcheck_entity_inconsistency_info",
            "1 for each pair that is not consistent, with the reason.",
            &["entity", "host", "reason"],
        );
        for p in &pairs {
            let labels = [p.entity.as_str(), p.host.as_str()];
            consistent
                .with_label_values(&labels)
                .set(if p.state == State::Consistent {
                    1.0
                } else {
                    0.0
                });
            success
                .with_label_values(&labels)
                .set(if p.state.check_succeeded() { 1.0 } else { 0.0 });
            last.with_label_values(&labels)
                .set(seconds_since_epoch(p.checked_at));
            if p.state != State::Consistent {
                why.with_label_values(&[&p.entity, &p.host, p.state.as_str()])
                    .set(1.0);
            }
        }
    }
    finish(&r)
}

fn finish(r: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .expect("text encoding cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use fleetcheck_core::collect::HostReport;
    use fleetcheck_core::{PairStatus, Snapshot, State};

    use super::*;

    const AUTHORITY: &str = r#"
hosts:
  - { name: web-01, transport: local }
  - { name: web-02, transport: local }
entities:
  - { name: agent, type: file, path: /opt/agent, md5: 9e107d9d372bb6826bd81d3542a419d6, version: "1.2", entity_set: [web-01, web-02], labels: { team: paas } }
  - { name: irq, type: command, collect_script: "cat /proc/irq/*/smp_affinity", md5: 3b5d5c3712955042212316173ccf37be, entity_set: [web-01, web-02], labels: { class: kernel } }
"#;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn pair(entity: &str, host: &str, state: State) -> PairStatus {
        PairStatus {
            entity: entity.into(),
            host: host.into(),
            state,
            expected_md5: String::new(),
            observed_md5: None,
            expected_version: None,
            observed_version: None,
            error: None,
            checked_at: at(1_700_000_010),
        }
    }

    /// The whole exposition for a fixed authority and snapshot, against
    /// `testdata/golden.prom` (`UPDATE_GOLDEN=1` rewrites it after a deliberate change).
    #[test]
    fn golden_exposition() {
        let authority =
            Authority::parse(AUTHORITY, Path::new("/etc/fleetcheck/authority.yaml")).unwrap();
        let snapshot = Snapshot {
            started: at(1_700_000_000),
            duration: Duration::from_millis(1500),
            pairs: vec![
                pair("agent", "web-01", State::Consistent),
                pair("agent", "web-02", State::VersionMismatch),
                pair("irq", "web-01", State::Drifted),
                pair("irq", "web-02", State::CheckFailed),
                // A pair of an entity no longer in the authority is not exported.
                pair("removed", "web-01", State::Consistent),
            ],
            hosts: vec![
                HostReport {
                    name: "web-01".into(),
                    up: true,
                    duration: Duration::from_millis(250),
                    error: None,
                },
                HostReport {
                    name: "web-02".into(),
                    up: false,
                    duration: Duration::from_secs(5),
                    error: Some("x".into()),
                },
                HostReport {
                    name: "gone".into(),
                    up: true,
                    duration: Duration::from_secs(1),
                    error: None,
                },
            ],
        };
        let reload = ReloadStatus {
            successful: false,
            success_time: at(1_699_999_000),
        };
        let text = String::from_utf8(encode(&Exposition {
            authority: &authority,
            snapshot: Some(&snapshot),
            reload,
            pair_series: true,
        }))
        .unwrap()
        .replace(REVISION, "REVISION")
        .replace(VERSION, "VERSION");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden.prom");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .expect("testdata/golden.prom (UPDATE_GOLDEN=1 creates it)");
        assert_eq!(
            text, want,
            "the exposition changed; if deliberate, rerun with UPDATE_GOLDEN=1"
        );
    }

    #[test]
    fn without_pair_series_only_aggregates_remain() {
        let authority = Authority::parse(AUTHORITY, Path::new("a.yaml")).unwrap();
        let snapshot = Snapshot {
            started: at(1),
            duration: Duration::from_secs(1),
            pairs: vec![pair("agent", "web-01", State::Drifted)],
            hosts: vec![],
        };
        let reload = ReloadStatus {
            successful: true,
            success_time: at(1),
        };
        let text = String::from_utf8(encode(&Exposition {
            authority: &authority,
            snapshot: Some(&snapshot),
            reload,
            pair_series: false,
        }))
        .unwrap();
        assert!(text.contains("fleetcheck_entity_hosts{entity=\"agent\",state=\"drifted\"} 1"));
        for family in [
            "fleetcheck_entity_consistent",
            "fleetcheck_entity_check_success",
            "fleetcheck_entity_inconsistency_info",
        ] {
            assert!(!text.contains(family), "{family} should be off");
        }
    }
}
