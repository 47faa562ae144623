//! The deploy executor and the deployment-system gate against
//! `DeploySystemDouble`, which speaks the contract of docs/deploy-system.md:
//! a running deployment defers, a version conflict holds, and a successful
//! deployment is verified on the fleet host.

mod common;

use std::time::Duration;

use common::*;
use fleetcheck_tests::deploy_double::DeploySystemDouble;
use fleetcheck_tests::fleet::TestFleet;

#[test]
fn running_deployment_defers_version_conflict_holds_success_verifies() {
    let fleet = TestFleet::start(1).unwrap();
    drift(&fleet, "host-01");
    let root = fleet.host("host-01").root.clone();
    let double = DeploySystemDouble::start(move |service, host| {
        assert_eq!((service, host), ("app-svc", "host-01"));
        std::fs::write(root.join("app.conf"), GOOD).is_ok()
    });
    double.set_service("app-svc", "1.2.4");
    double.set_host_running("host-01", true);

    let mut authority = app_authority(&fleet, "      deploy: { service: app-svc }");
    authority = authority.replace(
        "    type: file\n",
        "    type: file\n    version: \"1.2.3\"\n",
    );
    let mut setup = Setup::new(
        &authority,
        &format!(
            "deploy: {{ url: {}, poll_interval: 100ms }}\n",
            double.url()
        ),
    );
    setup.start();
    setup.post_alerts(&[("firing", "app", "host-01")]);

    // A deployment is running on the host: deferred, nothing triggered.
    let job = setup.wait_job("app", "host-01", &["deferred"], Duration::from_secs(20));
    assert_eq!(job["reason"], "deployment_running", "{job:#}");
    assert!(double.triggered().is_empty());

    // It ends, but the deploy system rolls out another version than the authority: held.
    double.set_host_running("host-01", false);
    let job = setup.wait_job("app", "host-01", &["held"], Duration::from_secs(20));
    assert_eq!(job["reason"], "version_conflict", "{job:#}");
    assert!(gate_reasons(&job).contains(&"version_conflict".to_string()));
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        double.triggered().is_empty(),
        "nothing deploys during a version conflict"
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="version_conflict"}"#),
        1.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_skips_total{reason="deployment_running"}"#),
        1.0
    );

    // They agree: one deployment is triggered, polled, and verified on the host.
    double.set_service("app-svc", "1.2.3");
    let job = setup.wait_job(
        "app",
        "host-01",
        &["verified", "failed"],
        Duration::from_secs(20),
    );
    assert_eq!(job["state"], "verified", "{job:#}\n{}", setup.log());
    assert_eq!(job["method"], "deploy");
    assert_eq!(
        double.triggered(),
        [("app-svc".to_string(), "host-01".to_string())]
    );
    assert!(is_good(&fleet, "host-01"));
    assert!(double
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /api/v1/deployments/d-1")));
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_repairs_total{method="deploy",result="success"}"#),
        1.0
    );
}
