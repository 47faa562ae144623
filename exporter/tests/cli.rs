//! The exporter binary's command line, reloads and shutdown, on local hosts
//! (no SSH): what an operator sees when the authority is good, bad or changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleetcheck_tests::daemon::{free_addr, Daemon};
use fleetcheck_tests::{http, prom, require_tool};

const EXPORTER: &str = env!("CARGO_BIN_EXE_fleetcheck-exporter");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(EXPORTER)
        .args(args)
        .output()
        .expect("run exporter");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// An authority over one local host with a file entity and a command entity.
fn authority(dir: &Path, file_md5: &str, with_command: bool) -> PathBuf {
    std::fs::write(dir.join("agent.conf"), "threads = 4\n").unwrap();
    let mut text = format!(
        "hosts:\n  - {{ name: localhost, transport: local }}\nentities:\n  - {{ name: agent-conf, type: file, path: {}, md5: {file_md5}, entity_set: [localhost] }}\n",
        dir.join("agent.conf").display()
    );
    if with_command {
        // md5("2\n")
        text.push_str("  - { name: two, type: command, collect_script: 'echo 2', md5: 26ab0db90d72e28ad0ba1e22ee510510, entity_set: [localhost] }\n");
    }
    let path = dir.join("authority.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const WRONG_MD5: &str = "8d8d3cc3a3dd81b6dee0e25a4f6c3a4f";

fn good_md5() -> String {
    use md5::Digest as _;
    format!("{:x}", md5::Md5::digest(b"threads = 4\n"))
}

#[test]
fn check_reports_success_and_every_problem_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = authority(dir.path(), &good_md5(), true);
    let (code, stdout, _) = run(&["check", "--config.file", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("SUCCESS: 2 entities, 1 hosts (1 local), 0 groups, 2 pairs"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "entities:\n  - name: x\n    type: file\n    path: /x\n    md5: nope\n    entity_set: [ghost]\n").unwrap();
    let (code, _, stderr) = run(&["check", "--config.file", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("bad.yaml:5:10: entities[0].md5: \"nope\" is not an MD5"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("bad.yaml:6:18: entities[0].entity_set[0]: unknown group or host \"ghost\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn once_prints_pairs_and_fails_when_anything_is_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let good = authority(dir.path(), &good_md5(), true);
    let (code, stdout, stderr) = run(&["once", "--config.file", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 of 2 pairs consistent"), "{stdout}");

    let drifted = authority(dir.path(), WRONG_MD5, true);
    let (code, stdout, _) = run(&[
        "once",
        "--config.file",
        drifted.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pairs = doc["pairs"].as_array().unwrap();
    let agent = pairs.iter().find(|p| p["entity"] == "agent-conf").unwrap();
    assert_eq!(agent["state"], "drifted");
    assert_eq!(agent["observed_md5"], good_md5());
    assert_eq!(
        pairs.iter().find(|p| p["entity"] == "two").unwrap()["state"],
        "consistent"
    );
}

#[test]
fn bad_config_or_flags_exit_2_before_binding_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "entities: [ { name: x } ]\n").unwrap();
    // Hold the port: if the exporter tried to bind before checking the
    // config, it would fail with a bind error instead.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&[
        "--config.file",
        bad.to_str().unwrap(),
        "--web.listen-address",
        &addr,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("an entity needs a `type`"), "{stderr}");
    assert!(!stderr.contains("listen"), "{stderr}");

    let good = authority(dir.path(), &good_md5(), false);
    let (code, _, stderr) = run(&[
        "--config.file",
        good.to_str().unwrap(),
        "--web.listen-address",
        "nonsense",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid --web.listen-address"), "{stderr}");
    let (code, _, stderr) = run(&[
        "--config.file",
        good.to_str().unwrap(),
        "--collect.interval",
        "soon",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

/// Starts the exporter on `authority` at a free loopback address with `extra`
/// flags; returns it and its address.
fn start_exporter(dir: &Path, authority: &Path, extra: &[&str]) -> (Daemon, std::net::SocketAddr) {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut args = vec![
        "--config.file",
        authority.to_str().unwrap(),
        "--web.listen-address",
        &listen,
    ];
    args.extend_from_slice(extra);
    let exporter = Daemon::start(Path::new(EXPORTER), &args, &dir.join("exporter.log")).unwrap();
    (exporter, addr)
}

fn scrape(base: &str) -> Vec<prom::Sample> {
    prom::parse(&http::get(&format!("{base}/metrics")).unwrap().body)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_keeps_the_last_good_authority_and_removed_entities_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let path = authority(dir.path(), &good_md5(), true);
    let (mut exporter, addr) = start_exporter(dir.path(), &path, &["--collect.interval", "1h"]);
    let base = format!("http://{addr}");
    exporter
        .wait_ready(&format!("{base}/-/ready"), Duration::from_secs(30))
        .unwrap();
    let s = scrape(&base);
    assert_eq!(
        prom::value(&s, "fleetcheck_entity_consistent", &[("entity", "two")]),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "fleetcheck_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let landing = http::get(&format!("{base}/")).unwrap().body;
    assert!(
        landing.contains("Fleet consistency: <strong>100.000 %</strong>"),
        "{landing}"
    );

    // A broken file: the reload fails, the old authority stays, the metric says so.
    std::fs::write(&path, "entities: [ { name: broken } ]\n").unwrap();
    let r = http::post(&format!("{base}/-/reload"), &[], "").unwrap();
    assert_eq!(r.status, 500);
    assert!(r.body.contains("an entity needs a `type`"), "{}", r.body);
    let s = scrape(&base);
    assert_eq!(
        prom::value(&s, "fleetcheck_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        prom::value(&s, "fleetcheck_entity_consistent", &[("entity", "two")]),
        Some(1.0)
    );

    // A good file without `two`, by SIGHUP: it vanishes from /metrics, and the
    // drifted agent-conf shows up after the cycle the reload triggers.
    authority(dir.path(), WRONG_MD5, false);
    exporter.signal("HUP");
    wait_for("the reload and its cycle", || {
        let s = scrape(&base);
        prom::value(&s, "fleetcheck_config_last_reload_successful", &[]) == Some(1.0)
            && prom::value(
                &s,
                "fleetcheck_entity_consistent",
                &[("entity", "agent-conf")],
            ) == Some(0.0)
    });
    let s = scrape(&base);
    assert!(prom::family(&s, "fleetcheck_entity_consistent")
        .iter()
        .all(|x| x.labels["entity"] != "two"));
    assert!(prom::family(&s, "fleetcheck_entity_hosts")
        .iter()
        .all(|x| x.labels["entity"] != "two"));
    assert_eq!(
        prom::value(
            &s,
            "fleetcheck_entity_inconsistency_info",
            &[("entity", "agent-conf"), ("reason", "drifted")]
        ),
        Some(1.0)
    );

    exporter.signal("TERM");
    assert_eq!(
        exporter.wait_exit(Duration::from_secs(10)).unwrap(),
        Some(0)
    );
}

#[test]
fn basic_auth_from_the_web_config_file_and_bad_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = authority(dir.path(), &good_md5(), false);
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
    let (exporter, addr) = start_exporter(
        dir.path(),
        &path,
        &["--web.config.file", web.to_str().unwrap()],
    );
    let base = format!("http://{addr}");
    // Healthy needs auth too, so wait on the raw status.
    wait_for("the listener", || {
        http::get(&format!("{base}/-/healthy")).is_ok()
    });
    assert_eq!(http::get(&format!("{base}/metrics")).unwrap().status, 401);
    let wrong = format!("Basic {}", base64_encode("prometheus:nope"));
    assert_eq!(
        http::request(
            "GET",
            &format!("{base}/metrics"),
            &[("Authorization", &wrong)],
            ""
        )
        .unwrap()
        .status,
        401
    );
    let right = format!("Basic {}", base64_encode("prometheus:s3cret"));
    let r = http::request(
        "GET",
        &format!("{base}/metrics"),
        &[("Authorization", &right)],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("fleetcheck_build_info"));
    assert!(
        !exporter.log().contains("s3cret"),
        "the password must never be logged"
    );
    drop(exporter);

    std::fs::write(
        &web,
        "tls_server_config: { cert_file: missing.pem, key_file: missing.key }\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&[
        "--config.file",
        path.to_str().unwrap(),
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tls_server_config: cert_file missing.pem"),
        "{stderr}"
    );
}

#[test]
fn tls_and_basic_auth_from_the_web_config_file() {
    let openssl = require_tool(
        "openssl",
        "install it with `apt-get install openssl` (scripts/test does this)",
    );
    let curl = require_tool(
        "curl",
        "install it with `apt-get install curl` (scripts/test does this)",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = authority(dir.path(), &good_md5(), false);
    let status = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=fleetcheck-test",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();
    let (exporter, addr) = start_exporter(
        dir.path(),
        &path,
        &["--web.config.file", web.to_str().unwrap()],
    );
    let url = format!("https://{addr}/metrics");
    let curl = |extra: &[&str]| {
        let out = Command::new(&curl)
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(dir.path().join("cert.pem"))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    wait_for("the HTTPS listener", || curl(&[]).0.ends_with("401"));
    let (body, _) = curl(&["-u", "prometheus:s3cret"]);
    assert!(
        body.ends_with("200") && body.contains("fleetcheck_build_info"),
        "{body}"
    );
    assert!(curl(&["-u", "prometheus:wrong"]).0.ends_with("401"));
    // Plain HTTP gets no answer from the TLS listener.
    let plain = http::get(&format!("http://{addr}/metrics"));
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
    drop(exporter);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
