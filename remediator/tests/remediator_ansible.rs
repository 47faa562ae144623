//! End to end with real parts: a drifted file on an SSH test fleet host, a
//! firing alert delivered five times, and a real `ansible-playbook` repair
//! verified by the core collector.

mod common;

use std::time::Duration;

use common::*;
use fleetcheck_tests::fleet::TestFleet;
use fleetcheck_tests::require_tool;

const HINT: &str = "install it with `apt-get install ansible-core` (the README's test command, scripts/test, does this)";

#[test]
fn drifted_pair_is_repaired_once_by_ansible_and_verified() {
    require_tool("ansible-playbook", HINT);
    let fleet = TestFleet::start(2).unwrap();
    for h in ["host-01", "host-02"] {
        fleet.write_file(h, "app.conf", GOOD).unwrap();
    }
    drift(&fleet, "host-01");
    let playbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/playbooks/restore-file.yml");
    let repair = format!(
        "      ansible:\n        playbook: {}\n        extra_vars: {{ content: \"good\\n\", ansible_python_interpreter: /usr/bin/python3 }}",
        playbook.canonicalize().unwrap().display()
    );
    let mut setup = Setup::new(&app_authority(&fleet, &repair), "");
    setup.start();

    // Alertmanager retries and repeats: the same alert five times.
    for _ in 0..5 {
        let (status, body) = setup.post_alerts(&[("firing", "app", "host-01")]);
        assert_eq!(status, 200, "{body}");
    }
    let job = setup.wait_job(
        "app",
        "host-01",
        &["verified", "failed"],
        Duration::from_secs(120),
    );
    assert_eq!(job["state"], "verified", "{job:#}\n{}", setup.log());
    assert!(is_good(&fleet, "host-01"));
    assert_eq!(job["method"], "ansible");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["deliveries"], 5);

    let all = setup.repairs("");
    assert_eq!(all.len(), 1, "one job for five deliveries: {all:#?}");
    let kinds: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "started").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"output") && kinds.ends_with(&["verified"]),
        "{kinds:?}"
    );
    let output = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "output")
        .unwrap();
    assert!(
        output["detail"].as_str().unwrap().contains("PLAY RECAP"),
        "the playbook's output is journaled: {output}"
    );

    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_jobs_total{outcome="verified"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_repairs_total{method="ansible",result="success"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_alerts_received_total{status="firing"}"#),
        5.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="duplicate"}"#),
        4.0
    );
    assert_eq!(
        setup.metric("fleetcheck_remediator_time_to_repair_seconds_count"),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_repair_duration_seconds_count{method="ansible"}"#),
        1.0
    );
    assert_eq!(setup.metric("fleetcheck_remediator_in_progress"), 0.0);

    // The untouched host stayed as it was, and a later alert for the now
    // consistent pair is skipped as stale... after the cooldown window check.
    assert!(is_good(&fleet, "host-02"));
    assert_eq!(
        setup.terminate(),
        Some(0),
        "SIGTERM exits cleanly\n{}",
        setup.log()
    );
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let mut setup = Setup::new(
        "hosts:\n  - { name: localhost, transport: local }\nentities: []\n",
        "",
    );
    setup.start();
    setup.post_alerts(&[("firing", "nope", "localhost")]);
    let metrics = setup.metrics();
    if let Err(e) = fleetcheck_tests::prom::promtool_check_metrics(&metrics) {
        panic!("{e:#}\n{metrics}");
    }
    for family in [
        "fleetcheck_remediator_alerts_received_total",
        "fleetcheck_remediator_alerts_rejected_total",
        "fleetcheck_remediator_jobs_total",
        "fleetcheck_remediator_repairs_total",
        "fleetcheck_remediator_skips_total",
        "fleetcheck_remediator_in_progress",
        "fleetcheck_remediator_queue_depth",
        "fleetcheck_remediator_repair_duration_seconds",
        "fleetcheck_remediator_time_to_repair_seconds",
        "fleetcheck_remediator_build_info",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{metrics}"
        );
    }
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_alerts_rejected_total{reason="unknown_entity"}"#),
        1.0
    );
}
