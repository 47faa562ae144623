//! Authority parsing and validation through the public API: good files load,
//! bad files report every problem with its position.

use std::path::Path;

use fleetcheck_core::authority::{Authority, Kind, RepairMethod, Transport};

fn load(text: &str) -> Result<Authority, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    std::fs::write(dir.path().join("playbooks/fix.yml"), "- hosts: all\n").unwrap();
    std::fs::write(
        dir.path().join("inventory.yml"),
        "all:\n  children:\n    db:\n      hosts:\n        db-[1:2]: { ansible_host: 10.1.0.9, ansible_port: 2222, ansible_user: ops }\n",
    )
    .unwrap();
    let path = dir.path().join("authority.yaml");
    std::fs::write(&path, text).unwrap();
    Authority::load(&path).map_err(|e| {
        e.problems()
            .iter()
            .map(|p| {
                let file = p.file.file_name().unwrap().to_string_lossy().to_string();
                format!("{file}:{}:{}: {}: {}", p.line, p.column, p.field, p.message)
            })
            .collect()
    })
}

const GOOD: &str = r#"
defaults:
  ssh: { user: root, port: 22, connect_timeout: 3s, known_hosts: known_hosts }
  check_timeout: 10s
inventory: inventory.yml
hosts:
  - name: web-01
    address: 127.0.1.1
    user: deploy
  - name: localhost
    transport: local
groups:
  web: ["web-[01:03]"]
  all-web: [web, localhost]
entities:
  - name: paas-agent
    type: file
    path: /usr/local/paas/bin/agent
    md5: 9E107D9D372BB6826BD81D3542A419D6
    version: "2026.11.3"
    version_script: /usr/local/paas/bin/agent --version
    entity_set: [all-web, db]
    repair_script:
      deploy: { service: paas-agent }
    labels: { team: paas, class: agent }
  - name: nic-multiqueue
    type: command
    collect_script: "cat /proc/irq/*/smp_affinity"
    md5: 3b5d5c3712955042212316173ccf37be
    entity_set: [web, "edge-[a:b]"]
    repair_script:
      ansible: { playbook: playbooks/fix.yml, extra_vars: { queues: 8 } }
  - name: motd
    type: url
    path: "http://{address}:8080/motd"
    md5: d41d8cd98f00b204e9800998ecf8427e
    entity_set: [localhost]
    repair_script: "echo fix"
"#;

#[test]
fn good_authority_loads_with_hosts_groups_inventory_and_ranges() {
    let a = load(GOOD).unwrap();
    assert_eq!(a.entities.len(), 3);
    let agent = a.entity("paas-agent").unwrap();
    assert_eq!(
        agent.md5, "9e107d9d372bb6826bd81d3542a419d6",
        "md5 is normalised to lowercase"
    );
    assert_eq!(agent.kind, Kind::File);
    let hosts: Vec<&str> = agent.hosts.iter().map(String::as_str).collect();
    assert_eq!(
        hosts,
        ["db-1", "db-2", "localhost", "web-01", "web-02", "web-03"]
    );
    assert_eq!(agent.labels["team"], "paas");
    assert_eq!(agent.check_timeout.as_secs(), 10);
    assert!(
        matches!(&agent.repair.as_ref().unwrap().method, RepairMethod::Deploy { service } if service == "paas-agent")
    );

    let web01 = a.host("web-01").unwrap();
    assert_eq!(
        (web01.address.as_str(), web01.user.as_str(), web01.port),
        ("127.0.1.1", "deploy", 22)
    );
    let web02 = a.host("web-02").unwrap();
    assert_eq!(
        (web02.address.as_str(), web02.user.as_str()),
        ("web-02", "root")
    );
    let db1 = a.host("db-1").unwrap();
    assert_eq!(
        (db1.address.as_str(), db1.port, db1.user.as_str()),
        ("10.1.0.9", 2222, "ops")
    );
    assert_eq!(a.host("localhost").unwrap().transport, Transport::Local);
    assert!(
        a.host("edge-b").is_some(),
        "ranges in entity_set declare hosts"
    );
    assert_eq!(a.ssh.connect_timeout.as_secs(), 3);
    assert!(
        a.ssh.known_hosts.as_ref().unwrap().is_absolute(),
        "relative paths resolve against the file"
    );

    let nic = a.entity("nic-multiqueue").unwrap();
    match &nic.repair.as_ref().unwrap().method {
        RepairMethod::Ansible {
            playbook,
            extra_vars,
        } => {
            assert!(playbook.ends_with("playbooks/fix.yml") && playbook.is_absolute());
            assert_eq!(extra_vars["queues"], serde_json::json!(8));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.entity("motd").unwrap().repair.as_ref().unwrap().method,
        RepairMethod::Script { .. }
    ));
    assert_eq!(a.pair_count(), 6 + 5 + 1);
}

#[test]
fn every_problem_is_reported_at_once_with_positions() {
    let bad = r#"
defaults:
  check_timeout: 10 seconds
hosts:
  - name: h1
    transport: telnet
  - name: h1
groups:
  g: [h1]
entites: []
entities:
  - name: a
    type: file
    path: /etc/a
    md5: not-an-md5
    entity_set: [g]
    colour: blue
  - name: a
    type: command
    md5: 3b5d5c3712955042212316173ccf37be
    entity_set: [nosuchgroup]
  - name: b
    type: disk
    md5: 3b5d5c3712955042212316173ccf37be
    entity_set: []
  - name: c
    type: file
    path: relative/path
    md5: 3b5d5c3712955042212316173ccf37be
    version: 1.10
    entity_set: ["h[3:1]"]
    repair_script: { ansible: { playbook: missing.yml }, deploy: { service: x } }
"#;
    let problems = load(bad).unwrap_err();
    let expected = [
        "authority.yaml:3:18: defaults.check_timeout: invalid duration \"10 seconds\": unknown unit \" seconds\"",
        "authority.yaml:6:16: hosts[0].transport: unknown transport \"telnet\" (expected ssh or local)",
        "authority.yaml:7:11: hosts[1].name: duplicate host \"h1\"",
        "authority.yaml:10:1: entites: unknown field \"entites\", did you mean \"entities\"?",
        "authority.yaml:15:10: entities[0].md5: \"not-an-md5\" is not an MD5 (32 hexadecimal digits)",
        "authority.yaml:17:5: entities[0].colour: unknown field \"colour\" (expected one of: name, type, path, md5, version, version_script, collect_script, repair_script, entity_set, labels, check_timeout, max_output)",
        "authority.yaml:18:5: entities[1]: a `command` entity needs a `collect_script`",
        "authority.yaml:18:11: entities[1].name: duplicate entity name \"a\"",
        "authority.yaml:21:18: entities[1].entity_set[0]: unknown group or host \"nosuchgroup\"",
        "authority.yaml:23:11: entities[2].type: unknown type \"disk\" (expected file, url or command)",
        "authority.yaml:25:17: entities[2].entity_set: entity_set is empty",
        "authority.yaml:28:11: entities[3].path: \"relative/path\" must be an absolute path",
        "authority.yaml:30:14: entities[3].version: version must be a quoted string (YAML reads 1.1 as a number); write version: \"...\"",
        "authority.yaml:31:18: entities[3].entity_set[0]: host pattern \"h[3:1]\": start 3 is greater than end 1",
        "authority.yaml:32:20: entities[3].repair_script: repair_script must name exactly one of ansible, deploy, script, command",
    ];
    assert_eq!(problems, expected, "got:\n{}", problems.join("\n"));
}

#[test]
fn syntax_and_type_errors_point_at_their_position() {
    let problems = load("entities:\n  - name: a\n    md5: [1\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("authority.yaml:4:1: "),
        "{problems:?}"
    );

    let problems = load("hosts:\n  - name: a\n    port: not-a-port\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems,
        ["authority.yaml:3:11: hosts[0].port: invalid type: string \"not-a-port\", expected u16"]
    );
}

#[test]
fn unreadable_inventory_is_a_problem_at_the_inventory_key() {
    let problems = load("inventory: nowhere.yml\nentities: []\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("authority.yaml:1:12: inventory: cannot read inventory "),
        "{problems:?}"
    );
}

#[test]
fn bad_inventory_contents_point_into_the_inventory_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yml"),
        "all:\n  hosts:\n    x: { ansible_port: 99999 }\n",
    )
    .unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, "inventory: inv.yml\n").unwrap();
    let err = Authority::load(&path).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.file, dir.path().join("inv.yml"));
    assert_eq!((p.line, p.field.as_str()), (3, "all.hosts.x.ansible_port"));
}

#[test]
fn missing_authority_file_is_a_read_error() {
    let err = Authority::load(Path::new("/nonexistent/authority.yaml")).unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot read authority /nonexistent/authority.yaml"));
    assert!(err.problems().is_empty());
}

#[test]
fn group_cycles_are_reported() {
    let problems = load("groups:\n  a: [b]\n  b: [a]\nentities: []\n").unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("includes itself")),
        "{problems:?}"
    );
}
