//! Crash safety: `kill -9` during a repair, then a restart. The interrupted
//! job is resumed (its stray process group stopped, the pair re-checked and
//! repaired), the job queued behind it runs, and nothing accepted is lost.

mod common;

use std::time::Duration;

use common::*;
use fleetcheck_tests::fleet::TestFleet;

#[test]
fn kill_9_during_a_repair_then_restart_resumes_every_job() {
    let fleet = TestFleet::start(2).unwrap();
    drift(&fleet, "host-01");
    drift(&fleet, "host-02");
    let setup = Setup::new("entities: []\n", "limits: { global_concurrency: 1 }\nwaves: { steps: [] }\ncircuit_breaker: { max_drifted_share: 1.0 }\n");
    let fix = write_fix_script(&setup, &fleet, "1.5", &[]);
    std::fs::write(
        setup.path("authority.yaml"),
        app_authority(&fleet, &format!("      command: [{}]", fix.display())),
    )
    .unwrap();
    let mut setup = setup;
    setup.start();
    assert_eq!(
        setup
            .post_alerts(&[("firing", "app", "host-01"), ("firing", "app", "host-02")])
            .0,
        200
    );
    let running = setup.wait_job("app", "host-01", &["running"], Duration::from_secs(20));
    wait_until(Duration::from_secs(5), "the repair started", || {
        runs(&setup).len() == 1
    });
    setup.kill9();
    // The killed remediator's repair (its own process group) may still be running:
    // the restart must stop it before repairing again.
    setup.start();
    for h in ["host-01", "host-02"] {
        let job = setup.wait_job("app", h, &["verified", "failed"], Duration::from_secs(30));
        assert_eq!(job["state"], "verified", "{job:#}\n{}", setup.log());
    }
    let jobs = setup.repairs("");
    assert_eq!(jobs.len(), 2, "nothing lost, nothing duplicated: {jobs:#?}");
    let first = setup.repairs("host=host-01").remove(0);
    assert_eq!(first["id"], running["id"]);
    let kinds: Vec<String> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"interrupted".to_string()), "{kinds:?}");
    assert!(is_good(&fleet, "host-01") && is_good(&fleet, "host-02"));
    // The interrupted attempt never finished: its `end` line is missing and
    // the stray group was killed, so it can never write after the restart.
    let log = runs(&setup);
    assert_eq!(
        log.iter().filter(|l| *l == "end host-01").count(),
        1,
        "{log:?}"
    );
    assert!(setup
        .log()
        .contains("resuming a repair interrupted by a restart"));
}
