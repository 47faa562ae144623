//! Every gate on the SSH test fleet, each with a test that fails when the
//! gate is removed: stale alerts, cooldown, per-entity concurrency, the
//! hourly budget, the circuit breaker, waves (canary, widening, halt on
//! failure), dry-run; plus the script executor over SSH.

mod common;

use std::time::Duration;

use common::*;
use fleetcheck_tests::fleet::TestFleet;

const T: Duration = Duration::from_secs(30);

fn fleet(n: usize) -> TestFleet {
    let fleet = TestFleet::start(n).unwrap();
    for h in fleet.hosts() {
        fleet.write_file(&h.name, "app.conf", GOOD).unwrap();
    }
    fleet
}

fn command_setup(fleet: &TestFleet, config: &str, sleep: &str, broken: &[&str]) -> Setup {
    let setup = Setup::new("entities: []\n", config);
    let fix = write_fix_script(&setup, fleet, sleep, broken);
    let repair = format!("      command: [{}]", fix.display());
    std::fs::write(setup.path("authority.yaml"), app_authority(fleet, &repair)).unwrap();
    setup
}

#[test]
fn stale_alerts_and_cooldown_skip_without_running() {
    let fleet = fleet(2);
    let mut setup = command_setup(&fleet, "", "0", &[]);
    setup.start();
    // host-01 is consistent: the alert is stale.
    setup.post_alerts(&[("firing", "app", "host-01")]);
    let job = setup.wait_job("app", "host-01", &["skipped", "verified", "failed"], T);
    assert_eq!(
        (job["state"].as_str(), job["reason"].as_str()),
        (Some("skipped"), Some("already_consistent"))
    );
    assert!(runs(&setup).is_empty());

    // host-02 drifts, is repaired, drifts again at once: the cooldown holds off a second repair.
    drift(&fleet, "host-02");
    setup.post_alerts(&[("firing", "app", "host-02")]);
    assert_eq!(
        setup.wait_job("app", "host-02", &["verified", "failed"], T)["state"],
        "verified"
    );
    drift(&fleet, "host-02");
    let body = String::from_utf8(payload(&[("firing", "app", "host-02")]))
        .unwrap()
        .replace("2024-05-01T12:00:00.000Z", "2024-05-01T13:00:00.000Z");
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/alerts",
            Some(&bearer()),
            body.as_bytes()
        )
        .0,
        200
    );
    let job = setup.wait_job("app", "host-02", &["skipped"], T);
    assert_eq!(job["reason"], "cooldown");
    assert_eq!(
        runs(&setup).len(),
        2,
        "one repair (start + end): {:?}",
        runs(&setup)
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="already_consistent"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="cooldown"}"#),
        1.0
    );
}

#[test]
fn entity_concurrency_runs_one_repair_at_a_time() {
    let fleet = fleet(3);
    let mut setup = command_setup(&fleet, "limits: { entity_concurrency: 1, global_concurrency: 4 }\nwaves: { steps: [] }\ncircuit_breaker: { max_drifted_share: 1.0 }\n", "0.4", &[]);
    setup.start();
    for h in ["host-01", "host-02", "host-03"] {
        drift(&fleet, h);
    }
    setup.post_alerts(&[
        ("firing", "app", "host-01"),
        ("firing", "app", "host-02"),
        ("firing", "app", "host-03"),
    ]);
    for h in ["host-01", "host-02", "host-03"] {
        assert_eq!(
            setup.wait_job("app", h, &["verified", "failed"], T)["state"],
            "verified"
        );
    }
    // start/end strictly alternate: never two at once.
    let log = runs(&setup);
    for pair in log.chunks(2) {
        let host = pair[0].strip_prefix("start ").unwrap();
        assert_eq!(
            pair[1],
            format!("end {host}"),
            "overlapping repairs: {log:?}"
        );
    }
    assert!(setup.metric(r#"fleetcheck_remediator_skips_total{reason="concurrency"}"#) >= 1.0);
}

#[test]
fn hourly_budget_holds_further_repairs_and_suppresses() {
    let fleet = fleet(3);
    let mut setup = command_setup(&fleet, "limits: { repairs_per_hour: 1, global_concurrency: 1 }\nwaves: { steps: [] }\ncircuit_breaker: { max_drifted_share: 1.0 }\n", "0", &[]);
    setup.start();
    drift(&fleet, "host-01");
    drift(&fleet, "host-02");
    setup.post_alerts(&[("firing", "app", "host-01"), ("firing", "app", "host-02")]);
    assert_eq!(
        setup.wait_job("app", "host-01", &["verified", "failed"], T)["state"],
        "verified"
    );
    let held = setup.wait_job("app", "host-02", &["held"], T);
    assert_eq!(held["reason"], "budget_exhausted");
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_suppressed{entity="app",reason="budget_exhausted"}"#),
        1.0
    );
    assert!(!is_good(&fleet, "host-02"));
    assert_eq!(runs(&setup).len(), 2);
}

#[test]
fn circuit_breaker_holds_an_entity_when_too_many_hosts_drift() {
    let fleet = fleet(4);
    let mut setup = command_setup(
        &fleet,
        "circuit_breaker: { max_drifted_share: 0.5, min_drifted_hosts: 2 }\n",
        "0",
        &[],
    );
    setup.start();
    for h in ["host-01", "host-02", "host-03"] {
        drift(&fleet, h);
    }
    setup.post_alerts(&[("firing", "app", "host-01")]);
    let held = setup.wait_job("app", "host-01", &["held", "verified"], T);
    assert_eq!(held["reason"], "circuit_open", "{held:#}");
    assert!(gate_reasons(&held)[0].contains("circuit_open"));
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_suppressed{entity="app",reason="circuit_open"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="circuit_open"}"#),
        1.0
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        runs(&setup).is_empty(),
        "nothing runs while the circuit is open"
    );
    // Once most hosts are right again (the rollout was fixed), the held job proceeds.
    for h in ["host-02", "host-03"] {
        fleet.write_file(h, "app.conf", GOOD).unwrap();
    }
    let config = std::fs::read_to_string(setup.path("remediator.yaml")).unwrap();
    std::fs::write(setup.path("remediator.yaml"), config).unwrap();
    assert_eq!(
        http(setup.port, "POST", "/-/reload", Some(&bearer()), b"").0,
        200
    );
    assert_eq!(
        setup.wait_job("app", "host-01", &["verified"], T)["state"],
        "verified"
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_suppressed{entity="app",reason="circuit_open"}"#),
        0.0
    );
}

/// Regression: the gauge stayed 1 when the held jobs ended before reaching the
/// circuit gate again (the pairs were fixed by hand, so the re-check skipped
/// them), and FleetcheckRemediationSuppressed kept firing with nothing held.
#[test]
fn suppressed_clears_when_held_jobs_end_before_the_circuit_gate() {
    let fleet = fleet(3);
    let mut setup = command_setup(
        &fleet,
        "circuit_breaker: { max_drifted_share: 0.5, min_drifted_hosts: 2 }\n",
        "0",
        &[],
    );
    setup.start();
    for h in ["host-01", "host-02"] {
        drift(&fleet, h);
    }
    setup.post_alerts(&[("firing", "app", "host-01"), ("firing", "app", "host-02")]);
    setup.wait_job("app", "host-01", &["held"], T);
    let suppressed = r#"fleetcheck_remediator_suppressed{entity="app",reason="circuit_open"}"#;
    assert_eq!(setup.metric(suppressed), 1.0);
    for h in ["host-01", "host-02"] {
        fleet.write_file(h, "app.conf", GOOD).unwrap();
    }
    for h in ["host-01", "host-02"] {
        let job = setup.wait_job("app", h, &["skipped"], T);
        assert_eq!(job["reason"], "already_consistent", "{job:#}");
    }
    assert_eq!(setup.metric(suppressed), 0.0, "nothing is held any more");
    assert!(runs(&setup).is_empty(), "fixed by hand: nothing ran");
}

/// A repair whose executor succeeds but leaves the pair drifted is not a
/// success: verification fails, the job is retried with backoff up to
/// `retry.max_attempts` (2 here), then marked failed.
#[test]
fn an_unverified_repair_is_retried_then_failed() {
    let fleet = fleet(1);
    let mut setup = command_setup(&fleet, "", "0", &[]);
    // The executor claims success and changes nothing.
    std::fs::write(
        setup.path("fix.sh"),
        "#!/bin/sh\necho \"start $FLEETCHECK_HOST\" >> \"$(dirname \"$0\")/runs.log\"\nexit 0\n",
    )
    .unwrap();
    setup.start();
    drift(&fleet, "host-01");
    setup.post_alerts(&[("firing", "app", "host-01")]);
    let job = setup.wait_job("app", "host-01", &["failed", "verified"], T);
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["attempts"], 2, "{job:#}");
    assert_eq!(runs(&setup), ["start host-01", "start host-01"]);
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_jobs_total{outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_jobs_total{outcome="verified"}"#),
        0.0
    );
}

#[test]
fn waves_repair_a_canary_first_then_widen() {
    let fleet = fleet(4);
    let mut setup = command_setup(&fleet, "circuit_breaker: { max_drifted_share: 1.0 }\nlimits: { entity_concurrency: 4 }\nwaves: { steps: [1, \"50%\", \"100%\"], min_hosts: 2 }\n", "0.3", &[]);
    setup.start();
    let hosts = ["host-01", "host-02", "host-03", "host-04"];
    for h in hosts {
        drift(&fleet, h);
    }
    let alerts: Vec<(&str, &str, &str)> = hosts.iter().map(|h| ("firing", "app", *h)).collect();
    setup.post_alerts(&alerts);
    for h in hosts {
        assert_eq!(
            setup.wait_job("app", h, &["verified", "failed"], T)["state"],
            "verified"
        );
    }
    let log = runs(&setup);
    let canary = log[0].strip_prefix("start ").unwrap();
    assert_eq!(
        log[1],
        format!("end {canary}"),
        "the canary ran alone and first: {log:?}"
    );
    // Wave 2 (50% of 4 = 2 hosts: the canary and one more) ends before the last wave starts.
    let second = log[2].strip_prefix("start ").unwrap();
    assert_eq!(
        log[3],
        format!("end {second}"),
        "wave 2 widened by one host: {log:?}"
    );
    assert_eq!(log.len(), 8);
    assert!(setup.metric(r#"fleetcheck_remediator_skips_total{reason="wave_hold"}"#) >= 1.0);
}

#[test]
fn waves_stop_when_the_canary_fails() {
    let fleet = fleet(3);
    let mut setup = command_setup(&fleet, "circuit_breaker: { max_drifted_share: 1.0 }\nlimits: { entity_concurrency: 3 }\nwaves: { steps: [1, \"100%\"], min_hosts: 2 }\nretry: { max_attempts: 1 }\n", "0", &["host-01", "host-02", "host-03"]);
    let config = std::fs::read_to_string(setup.path("remediator.yaml"))
        .unwrap()
        .replace(
            "retry: { max_attempts: 2, initial_backoff: 200ms, max_backoff: 1s }\n",
            "",
        );
    std::fs::write(setup.path("remediator.yaml"), config).unwrap();
    setup.start();
    for h in ["host-01", "host-02", "host-03"] {
        drift(&fleet, h);
    }
    setup.post_alerts(&[
        ("firing", "app", "host-01"),
        ("firing", "app", "host-02"),
        ("firing", "app", "host-03"),
    ]);
    // Whichever host is the canary, its repair fails and nothing else runs.
    wait_until(T, "the canary failed", || {
        setup.repairs("state=failed").len() == 1
    });
    let canary = setup.repairs("state=failed")[0]["host"]
        .as_str()
        .unwrap()
        .to_string();
    let others: Vec<&str> = ["host-01", "host-02", "host-03"]
        .into_iter()
        .filter(|h| *h != canary)
        .collect();
    for h in &others {
        let job = setup.wait_job("app", h, &["held"], T);
        assert_eq!(job["reason"], "wave_hold");
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        runs(&setup),
        [format!("start {canary}"), format!("end {canary}")],
        "no host beyond the failed canary was touched"
    );
    assert!(setup.repairs(&format!("host={}", others[0]))[0]["events"]
        .to_string()
        .contains("halted"));
}

#[test]
fn dry_run_journals_what_would_run_and_runs_nothing() {
    let fleet = fleet(1);
    let mut setup = command_setup(&fleet, "", "0", &[]);
    setup.extra_args.push("--dry-run".into());
    setup.start();
    drift(&fleet, "host-01");
    setup.post_alerts(&[("firing", "app", "host-01")]);
    let job = setup.wait_job("app", "host-01", &["skipped", "verified", "failed"], T);
    assert_eq!(job["reason"], "dry_run");
    assert!(job["events"].to_string().contains("would run"), "{job:#}");
    assert!(runs(&setup).is_empty());
    assert!(!is_good(&fleet, "host-01"));
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="dry_run"}"#),
        1.0
    );
}

#[test]
fn script_executor_repairs_over_ssh_with_the_pair_as_quoted_env() {
    let fleet = fleet(1);
    let setup_authority = app_authority(
        &fleet,
        "      script: |\n        printf 'good\\n' > \"$FLEETCHECK_PATH\"\n        echo \"repaired $FLEETCHECK_ENTITY on $(hostname)\"",
    );
    let mut setup = Setup::new(&setup_authority, "");
    setup.start();
    drift(&fleet, "host-01");
    setup.post_alerts(&[("firing", "app", "host-01")]);
    let job = setup.wait_job("app", "host-01", &["verified", "failed"], T);
    assert_eq!(job["state"], "verified", "{job:#}");
    assert_eq!(job["method"], "script");
    assert!(
        job["events"]
            .to_string()
            .contains("repaired app on host-01"),
        "{job:#}"
    );
    assert!(is_good(&fleet, "host-01"));
}
