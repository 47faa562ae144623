//! Intake through the real binary: start-up checks, authentication, payload
//! errors, validation of label values against the authority, queue capacity,
//! and resolved alerts cancelling queued work.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::*;

/// Local hosts `a`, `b` and `outsider`; entity `app` on `a` and `b`, a drifted
/// local file, and a command repair that logs its runs, sleeps, and fails.
fn local_setup(config_extra: &str, sleep: &str) -> Setup {
    let setup = Setup::new("entities: []\n", config_extra);
    std::fs::write(setup.path("app.conf"), DRIFTED).unwrap();
    let authority = format!(
        "hosts:\n  - {{ name: a, transport: local }}\n  - {{ name: b, transport: local }}\n  - {{ name: outsider, transport: local }}\n\
         entities:\n  - name: app\n    type: file\n    path: {}\n    md5: {}\n    entity_set: [a, b]\n    repair_script:\n      command: [sh, -c, 'echo \"start $FLEETCHECK_HOST\" >> runs.log; sleep {sleep}; exit 1']\n",
        setup.path("app.conf").display(),
        good_md5()
    );
    std::fs::write(setup.path("authority.yaml"), authority).unwrap();
    setup
}

#[test]
fn refuses_to_start_without_auth_or_with_a_bad_config() {
    let setup = local_setup("", "0");
    // No auth section at all.
    let config = std::fs::read_to_string(setup.path("remediator.yaml"))
        .unwrap()
        .replace("auth:\n  bearer_token_file: token\n", "");
    std::fs::write(setup.path("remediator.yaml"), &config).unwrap();
    let out = setup.command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.insecure-no-auth"));
    // ...unless told so explicitly.
    let mut insecure = local_setup("", "0");
    std::fs::write(insecure.path("remediator.yaml"), &config).unwrap();
    insecure.extra_args.push("--web.insecure-no-auth".into());
    insecure.start();
    assert_eq!(
        http(insecure.port, "POST", "/api/v1/alerts", None, &payload(&[])).0,
        200
    );

    // An unknown key, and a broken authority: exit 2 before binding, with the reason.
    std::fs::write(
        setup.path("remediator.yaml"),
        format!("{config}auth: {{ bearer_token_file: token }}\nlimitz: 3\n"),
    )
    .unwrap();
    let out = setup.command().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limitz"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        setup.path("remediator.yaml"),
        format!("{config}auth: {{ bearer_token_file: token }}\n"),
    )
    .unwrap();
    std::fs::write(setup.path("authority.yaml"), "entities: [{ name: x }]\n").unwrap();
    let out = setup.command().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authority"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn authentication_failures_are_401_and_403() {
    let mut setup = local_setup("", "0");
    std::fs::write(setup.path("password"), "pw\n").unwrap();
    let config = std::fs::read_to_string(setup.path("remediator.yaml")).unwrap().replace(
        "auth:\n  bearer_token_file: token\n",
        "auth:\n  bearer_token_file: token\n  basic_auth: { username: alertmanager, password_file: password }\n",
    );
    std::fs::write(setup.path("remediator.yaml"), config).unwrap();
    setup.start();
    let body = payload(&[]);
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert_eq!(
        http(setup.port, "POST", "/api/v1/alerts", None, &body).0,
        401
    );
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/alerts",
            Some("Bearer wrong"),
            &body
        )
        .0,
        403
    );
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/alerts",
            Some(&basic("alertmanager:nope")),
            &body
        )
        .0,
        403
    );
    assert_eq!(http(setup.port, "GET", "/api/v1/repairs", None, b"").0, 401);
    assert_eq!(http(setup.port, "POST", "/-/reload", None, b"").0, 401);
    assert_eq!(
        http(setup.port, "POST", "/api/v1/alerts", Some(&bearer()), &body).0,
        200
    );
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/alerts",
            Some(&basic("alertmanager:pw")),
            &body
        )
        .0,
        200
    );
    // Health and metrics stay open for Prometheus; secrets never show anywhere.
    assert_eq!(http(setup.port, "GET", "/-/healthy", None, b"").0, 200);
    assert!(!setup.metrics().contains(TOKEN));
    assert!(!setup.log().contains(TOKEN));
}

#[test]
fn malformed_payloads_are_400_and_oversized_ones_413() {
    let mut setup = local_setup("max_body_bytes: 2048\n", "0");
    setup.start();
    let post = |body: &[u8]| http(setup.port, "POST", "/api/v1/alerts", Some(&bearer()), body);
    let (status, body) = post(b"{not json");
    assert_eq!(status, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    let (status, body) = post(br#"{"version":"3","alerts":[]}"#);
    assert_eq!(status, 400);
    assert!(body.contains("version"), "{body}");
    assert_eq!(
        post(br#"{"version":"4","alerts":[{"status":"weird","labels":{}}]}"#).0,
        400
    );
    assert_eq!(post(&vec![b' '; 4096]).0, 413);
    assert!(
        setup.repairs("").is_empty(),
        "nothing malformed is journaled"
    );
}

#[test]
fn labels_outside_the_authority_are_rejected_and_never_run() {
    let mut setup = local_setup("", "0");
    setup.start();
    let marker = setup.path("pwned");
    let evil_host = format!("a; touch {}", marker.display());
    let evil_entity = format!("$(touch {})", marker.display());
    let (status, body) = setup.post_alerts(&[
        ("firing", "no-such-entity", "a"),
        ("firing", "app", "outsider"),
        ("firing", "app", &evil_host),
        ("firing", &evil_entity, "a"),
        ("firing", "app", "-i"),
    ]);
    assert_eq!(status, 200, "{body}");
    let jobs = setup.repairs("");
    assert_eq!(jobs.len(), 5);
    assert!(jobs.iter().all(|j| j["state"] == "rejected"), "{jobs:#?}");
    assert_eq!(
        setup.repairs("state=rejected&host=outsider")[0]["reason"],
        "host_not_in_entity_set"
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_alerts_rejected_total{reason="unknown_entity"}"#),
        2.0
    );
    assert_eq!(
        setup.metric(
            r#"fleetcheck_remediator_alerts_rejected_total{reason="host_not_in_entity_set"}"#
        ),
        3.0
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_jobs_total{outcome="rejected"}"#),
        5.0
    );
    // Bad labels (no host label) are journaled and counted too.
    let bad = br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"FleetcheckEntityInconsistent","entity":"app"}}]}"#;
    assert_eq!(
        http(setup.port, "POST", "/api/v1/alerts", Some(&bearer()), bad).0,
        200
    );
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_alerts_rejected_total{reason="bad_labels"}"#),
        1.0
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "a label value reached a shell");
    assert!(
        runs(&setup).is_empty(),
        "a rejected alert ran a repair: {:?}",
        runs(&setup)
    );
}

#[test]
fn a_full_queue_answers_503_so_alertmanager_retries() {
    let mut setup = local_setup("queue_capacity: 1\n", "3");
    setup.start();
    assert_eq!(setup.post_alerts(&[("firing", "app", "a")]).0, 200);
    let (status, body) = setup.post_alerts(&[("firing", "app", "b")]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("queue is full"), "{body}");
    assert_eq!(setup.repairs("").len(), 1);
    // A repeat of the queued alert is merged, not refused.
    assert_eq!(setup.post_alerts(&[("firing", "app", "a")]).0, 200);
}

#[test]
fn a_resolved_alert_cancels_queued_work_for_its_pair() {
    let mut setup = local_setup(
        "limits: { entity_concurrency: 1 }\nretry: { max_attempts: 1 }\n",
        "2",
    );
    // The config above repeats `retry`; keep the last one only.
    let config = std::fs::read_to_string(setup.path("remediator.yaml"))
        .unwrap()
        .replace(
            "retry: { max_attempts: 2, initial_backoff: 200ms, max_backoff: 1s }\n",
            "",
        );
    std::fs::write(setup.path("remediator.yaml"), config).unwrap();
    setup.start();
    assert_eq!(
        setup
            .post_alerts(&[("firing", "app", "a"), ("firing", "app", "b")])
            .0,
        200
    );
    setup.wait_job("app", "a", &["running"], Duration::from_secs(10));
    let queued = setup.wait_job("app", "b", &["queued"], Duration::from_secs(5));
    assert!(
        gate_reasons(&queued).contains(&"concurrency".to_string()),
        "{queued:#}"
    );
    let (status, body) = setup.post_alerts(&[("resolved", "app", "b")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""cancelled":1"#), "{body}");
    // A resolved alert does not cancel a running repair.
    assert_eq!(setup.post_alerts(&[("resolved", "app", "a")]).0, 200);
    let a = setup.wait_job("app", "a", &["failed", "verified"], Duration::from_secs(20));
    assert_eq!(a["state"], "failed");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(setup.repairs("host=b")[0]["state"], "cancelled");
    assert_eq!(runs(&setup), ["start a"], "the cancelled job never ran");
    assert_eq!(
        setup.metric(r#"fleetcheck_remediator_jobs_total{outcome="cancelled"}"#),
        1.0
    );
}

/// A journal that cannot be written (its file system is full) answers 503, so
/// Alertmanager retries, and never 2xx for what it did not store; what was
/// stored before stays readable.
#[test]
fn an_unwritable_journal_answers_503() {
    let mut setup = Setup::new(
        "hosts:\n  - { name: localhost, transport: local }\nentities: []\n",
        "",
    );
    let data = setup.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // The remediator runs in its own mount namespace where its storage path
    // is a 256 KiB tmpfs; nothing is mounted outside it.
    setup.start_wrapped(|inner| {
        let mut c = Command::new(fleetcheck_tests::require_tool(
            "unshare",
            "install it with `apt-get install util-linux`",
        ));
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs -o size=256k fleetcheck-journal \"$0\" && exec \"$@\"")
            .arg(&data)
            .arg(inner.get_program())
            .args(inner.get_args())
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c
    });
    // Alerts for an unknown entity are rejected, but journaled all the same.
    let filler = "x".repeat(4000);
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..200 {
        let alerts: Vec<(&str, &str, &str)> = (0..20)
            .map(|_| ("firing", filler.as_str(), "localhost"))
            .collect();
        let (status, body) = setup.post_alerts(&alerts);
        match status {
            200 => accepted += 1,
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let body = refused
        .unwrap_or_else(|| panic!("the full journal never answered 503; log:\n{}", setup.log()));
    assert!(body.contains("journal unavailable"), "{body}");
    assert!(accepted > 0, "the journal took nothing before filling up");
    // Every delivery answered 200 is in the journal.
    let jobs = setup.repairs("state=rejected&limit=10000");
    assert_eq!(
        jobs.len(),
        accepted * 20,
        "accepted deliveries must all be journaled"
    );
    assert!(
        setup.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the remediator must keep running"
    );
}
