//! The real `fleetcheck-exporter` against a real SSH test fleet with planted
//! drift: every pair's metrics and status must match what was planted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcheck_tests::daemon::{free_addr, Daemon};
use fleetcheck_tests::fleet::TestFleet;
use fleetcheck_tests::{http, prom};

const EXPORTER: &str = env!("CARGO_BIN_EXE_fleetcheck-exporter");
const HOSTS: usize = 20;
const FILES: usize = 17;

fn md5(data: &[u8]) -> String {
    use md5::Digest as _;
    format!("{:x}", md5::Md5::digest(data))
}

fn file_content(i: usize) -> Vec<u8> {
    format!("agent config {i}\nthreads = {}\n", i * 3).into_bytes()
}

/// A deterministic 1 MiB blob, the same on every host.
fn blob() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

const IRQS: [&str; 4] = ["24", "25", "26", "27"];

/// What each host should be and what was planted, by (entity, host).
struct Plan {
    expected: BTreeMap<(String, String), &'static str>,
}

fn plant(fleet: &TestFleet) -> Plan {
    let blob = blob();
    for host in fleet.hosts() {
        for i in 1..=FILES {
            fleet
                .write_file(&host.name, &format!("app/file-{i:02}"), &file_content(i))
                .unwrap();
        }
        fleet.write_file(&host.name, "app/blob.bin", &blob).unwrap();
        fleet
            .write_file(&host.name, "app/VERSION", b"2026.11.3\n")
            .unwrap();
        for irq in IRQS {
            fleet
                .write_file(
                    &host.name,
                    &format!("proc/irq/{irq}/smp_affinity"),
                    b"0000000f\n",
                )
                .unwrap();
        }
    }
    // The drift, one kind per host.
    fleet
        .write_file("host-03", "app/file-05", b"agent config 5\nthreads = 99\n")
        .unwrap();
    fleet.remove_file("host-04", "app/file-07").unwrap();
    fleet
        .write_file("host-05", "proc/irq/26/smp_affinity", b"00000001\n")
        .unwrap();
    fleet
        .write_file("host-06", "app/VERSION", b"2026.10.9\n")
        .unwrap();

    let mut expected = BTreeMap::new();
    for host in fleet.hosts() {
        for e in entity_names() {
            expected.insert((e, host.name.clone()), "consistent");
        }
    }
    expected.insert(("hang-check".into(), "host-20".into()), "check_failed");
    expected.insert(("file-05".into(), "host-03".into()), "drifted");
    expected.insert(("file-07".into(), "host-04".into()), "missing");
    expected.insert(("nic-multiqueue".into(), "host-05".into()), "drifted");
    expected.insert(
        ("agent-binary".into(), "host-06".into()),
        "version_mismatch",
    );
    for e in entity_names() {
        // Stopped: unreachable.
        expected.insert((e.clone(), "host-07".into()), "check_failed");
        // Its key in known_hosts is another host's: host key verification fails.
        expected.insert((e, "host-08".into()), "check_failed");
    }
    Plan { expected }
}

fn entity_names() -> Vec<String> {
    let mut names: Vec<String> = (1..=FILES).map(|i| format!("file-{i:02}")).collect();
    names.extend([
        "blob".to_string(),
        "nic-multiqueue".to_string(),
        "agent-binary".to_string(),
    ]);
    names
}

fn authority(fleet: &TestFleet, known_hosts: &Path) -> String {
    let mut a = String::new();
    writeln!(a, "defaults:").unwrap();
    writeln!(
        a,
        "  ssh: {{ user: root, connect_timeout: 5s, known_hosts: {}, identity_file: {} }}",
        known_hosts.display(),
        fleet.identity_file().display()
    )
    .unwrap();
    writeln!(a, "  check_timeout: 10s\nhosts:").unwrap();
    for h in fleet.hosts() {
        writeln!(a, "  - {{ name: {}, address: {} }}", h.name, h.address).unwrap();
    }
    writeln!(a, "groups:\n  fleet: [\"host-[01:{HOSTS:02}]\"]\nentities:").unwrap();
    for i in 1..=FILES {
        writeln!(
            a,
            "  - {{ name: file-{i:02}, type: file, path: /srv/app/file-{i:02}, md5: {}, entity_set: [fleet], labels: {{ team: paas }} }}",
            md5(&file_content(i))
        )
        .unwrap();
    }
    writeln!(
        a,
        "  - {{ name: blob, type: file, path: /srv/app/blob.bin, md5: {}, entity_set: [fleet] }}",
        md5(&blob())
    )
    .unwrap();
    let affinity: Vec<u8> = IRQS.iter().flat_map(|_| b"0000000f\n".to_vec()).collect();
    writeln!(
        a,
        "  - {{ name: nic-multiqueue, type: command, collect_script: 'cat /srv/proc/irq/*/smp_affinity', md5: {}, entity_set: [fleet] }}",
        md5(&affinity)
    )
    .unwrap();
    writeln!(
        a,
        "  - {{ name: agent-binary, type: file, path: /srv/app/file-01, md5: {}, version: \"2026.11.3\", version_script: 'cat /srv/app/VERSION', entity_set: [fleet] }}",
        md5(&file_content(1))
    )
    .unwrap();
    writeln!(
        a,
        "  - {{ name: hang-check, type: command, collect_script: 'sleep 600', md5: d41d8cd98f00b204e9800998ecf8427e, check_timeout: 2s, entity_set: [host-20] }}"
    )
    .unwrap();
    a
}

/// known_hosts with host-08's key replaced by host-09's.
fn tampered_known_hosts(fleet: &TestFleet) -> PathBuf {
    let text = std::fs::read_to_string(fleet.known_hosts_file()).unwrap();
    let key_of = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap();
        line.split_once(' ').unwrap().1.to_string()
    };
    let foreign = key_of("host-09");
    let out: String = text
        .lines()
        .map(|l| {
            if l.starts_with("host-08,") {
                format!("{} {foreign}\n", l.split_once(' ').unwrap().0)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = fleet.dir().join("known_hosts.tampered");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn metrics_and_status_match_planted_drift_on_a_20_host_fleet() {
    let mut fleet = TestFleet::start(HOSTS).unwrap();
    let plan = plant(&fleet);
    fleet.stop_host("host-07");
    let known = tampered_known_hosts(&fleet);
    let work = tempfile::tempdir().unwrap();
    let authority_path = work.path().join("authority.yaml");
    std::fs::write(&authority_path, authority(&fleet, &known)).unwrap();

    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut exporter = Daemon::start(
        Path::new(EXPORTER),
        &[
            "--config.file",
            authority_path.to_str().unwrap(),
            "--web.listen-address",
            &addr.to_string(),
            "--collect.interval",
            "10m",
            "--log.level",
            "debug",
        ],
        &work.path().join("exporter.log"),
    )
    .unwrap();
    exporter
        .wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60))
        .unwrap();

    let text = http::get(&format!("{base}/metrics")).unwrap().body;
    prom::promtool_check_metrics(&text).unwrap();
    let samples = prom::parse(&text);

    // Every pair: consistent, check_success and the inconsistency reason.
    let consistent = prom::family(&samples, "fleetcheck_entity_consistent");
    assert_eq!(consistent.len(), plan.expected.len(), "one series per pair");
    for ((entity, host), state) in &plan.expected {
        let labels = [("entity", entity.as_str()), ("host", host.as_str())];
        let want = if *state == "consistent" { 1.0 } else { 0.0 };
        assert_eq!(
            prom::value(&samples, "fleetcheck_entity_consistent", &labels),
            Some(want),
            "{entity}@{host} should be {state}"
        );
        let success = if *state == "check_failed" { 0.0 } else { 1.0 };
        assert_eq!(
            prom::value(&samples, "fleetcheck_entity_check_success", &labels),
            Some(success),
            "{entity}@{host}"
        );
        let reason = prom::family(&samples, "fleetcheck_entity_inconsistency_info")
            .into_iter()
            .find(|s| s.labels["entity"] == *entity && s.labels["host"] == *host)
            .map(|s| s.labels["reason"].clone());
        assert_eq!(
            reason.as_deref(),
            (*state != "consistent").then_some(*state),
            "{entity}@{host}"
        );
    }
    // Aggregates per entity and state.
    for entity in entity_names() {
        for state in [
            "consistent",
            "drifted",
            "missing",
            "version_mismatch",
            "check_failed",
        ] {
            let want = plan
                .expected
                .iter()
                .filter(|((e, _), s)| *e == entity && **s == state)
                .count();
            assert_eq!(
                prom::value(
                    &samples,
                    "fleetcheck_entity_hosts",
                    &[("entity", &entity), ("state", state)]
                ),
                Some(want as f64),
                "{entity} {state}"
            );
        }
    }
    // Hosts: host-07 is down, host-08 refused (its key is wrong); all others answered,
    // host-20 too, although one of its checks hung.
    for h in fleet.hosts() {
        let want = if h.name == "host-07" || h.name == "host-08" {
            0.0
        } else {
            1.0
        };
        assert_eq!(
            prom::value(&samples, "fleetcheck_host_up", &[("host", &h.name)]),
            Some(want),
            "{}",
            h.name
        );
    }
    assert_eq!(
        prom::value(
            &samples,
            "fleetcheck_authority_entity_info",
            &[("entity", "file-01"), ("team", "paas")]
        ),
        Some(1.0)
    );
    let cycle = prom::value(&samples, "fleetcheck_cycle_duration_seconds", &[]).unwrap();
    eprintln!(
        "cycle over {HOSTS} hosts x {} entities (cold sessions): {cycle:.3}s",
        entity_names().len()
    );

    // /api/v1/status carries observed values and errors.
    let status: serde_json::Value =
        serde_json::from_str(&http::get(&format!("{base}/api/v1/status")).unwrap().body).unwrap();
    let pairs = status["data"]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), plan.expected.len());
    let find = |e: &str, h: &str| {
        pairs
            .iter()
            .find(|p| p["entity"] == e && p["host"] == h)
            .unwrap()
            .clone()
    };
    let drifted = find("file-05", "host-03");
    assert_eq!(drifted["state"], "drifted");
    assert_eq!(
        drifted["observed_md5"],
        md5(b"agent config 5\nthreads = 99\n")
    );
    let version = find("agent-binary", "host-06");
    assert_eq!(
        (
            version["state"].as_str(),
            version["observed_version"].as_str()
        ),
        (Some("version_mismatch"), Some("2026.10.9"))
    );
    let hung = find("hang-check", "host-20");
    assert!(
        hung["error"].as_str().unwrap().contains("timed out"),
        "{hung}"
    );
    let unreachable = find("file-01", "host-07");
    assert!(
        unreachable["error"].as_str().unwrap().contains("ssh"),
        "{unreachable}"
    );
    let bad_key = find("file-01", "host-08");
    let error = bad_key["error"].as_str().unwrap();
    assert!(
        error.to_lowercase().contains("host key"),
        "host key verification must be enforced: {error}"
    );
    let filtered: serde_json::Value = serde_json::from_str(
        &http::get(&format!("{base}/api/v1/status?state=drifted"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(filtered["data"]["pairs"].as_array().unwrap().len(), 2);

    // A second cycle (a reload triggers one) reuses the SSH sessions.
    let logins_before = fleet.accepted_logins("host-01");
    let before = prom::value(&samples, "fleetcheck_last_cycle_timestamp_seconds", &[]).unwrap();
    assert_eq!(
        http::post(&format!("{base}/-/reload"), &[], "")
            .unwrap()
            .status,
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let second = loop {
        let s = prom::parse(&http::get(&format!("{base}/metrics")).unwrap().body);
        if prom::value(&s, "fleetcheck_last_cycle_timestamp_seconds", &[]).unwrap() > before {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no second cycle");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        fleet.accepted_logins("host-01"),
        logins_before,
        "the second cycle opened a new SSH login"
    );
    let warm = prom::value(&second, "fleetcheck_cycle_duration_seconds", &[]).unwrap();
    let mut per_host: Vec<(String, f64)> =
        prom::family(&second, "fleetcheck_host_check_duration_seconds")
            .iter()
            .map(|s| (s.labels["host"].clone(), s.value))
            .collect();
    per_host.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("slowest hosts (warm): {:?}", &per_host[..3]);
    eprintln!(
        "cycle over {HOSTS} hosts x {} entities (warm sessions): {warm:.3}s",
        entity_names().len()
    );

    // Clean shutdown on SIGTERM.
    exporter.signal("TERM");
    assert_eq!(
        exporter.wait_exit(Duration::from_secs(20)).unwrap(),
        Some(0),
        "{}",
        exporter.log()
    );
}
