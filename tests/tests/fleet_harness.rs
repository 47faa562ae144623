//! The SSH test fleet itself: real sshd hosts, each with its own files, pinned keys and name.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use fleetcheck_tests::fleet::TestFleet;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The names in a directory of the real filesystem.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a process started from the fleet directory `dir` still runs as `pid`.
fn fleet_process_alive(pid: u32, dir: &Path) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()),
        Err(_) => false,
    }
}

/// Whether the test's own (real) mount namespace has anything mounted at `path`.
fn mounted_here(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(&*path))
}

#[test]
fn each_host_sees_its_own_files_and_name() {
    let real_srv = listing(Path::new("/srv"));
    let fleet = TestFleet::start(3).unwrap();
    assert_eq!(fleet.mount_point(), Path::new("/srv"));
    let names: Vec<&str> = fleet.hosts().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["host-01", "host-02", "host-03"]);

    for host in fleet.hosts() {
        let bytes = format!("contents of {} at {}\n", host.name, host.address);
        let remote = fleet
            .write_file(&host.name, "app/etc/config.yaml", bytes.as_bytes())
            .unwrap();
        assert_eq!(remote, Path::new("/srv/app/etc/config.yaml"));
    }
    for host in fleet.hosts() {
        let output = fleet
            .ssh(&host.name, "hostname; cat /srv/app/etc/config.yaml")
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            host.name,
            stderr(&output)
        );
        assert_eq!(
            stdout(&output),
            format!("{0}\ncontents of {0} at {1}\n", host.name, host.address)
        );
    }

    // A file removed from one host is gone there only.
    fleet.remove_file("host-02", "app/etc/config.yaml").unwrap();
    let gone = fleet
        .ssh("host-02", "test -e /srv/app/etc/config.yaml")
        .unwrap();
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    let kept = fleet
        .ssh("host-03", "test -e /srv/app/etc/config.yaml")
        .unwrap();
    assert!(kept.status.success(), "{}", stderr(&kept));

    // Connecting by address works too: known_hosts pins the key under both.
    let host = fleet.host("host-01");
    let by_address = fleet
        .ssh_command()
        .arg(host.address.to_string())
        .arg("hostname")
        .output()
        .unwrap();
    assert!(by_address.status.success(), "{}", stderr(&by_address));
    assert_eq!(stdout(&by_address), "host-01\n");

    // Nothing reached the real /srv, nor is anything mounted on it out here.
    assert_eq!(listing(Path::new("/srv")), real_srv);
    assert!(!mounted_here(Path::new("/srv")));
}

#[test]
fn a_wrong_or_unknown_host_key_is_refused() {
    let fleet = TestFleet::start(2).unwrap();
    let target = fleet.host("host-01").clone();
    let other = fleet.host("host-02").clone();

    // host-01's name and address, pinned to host-02's key.
    let known = std::fs::read_to_string(fleet.known_hosts_file()).unwrap();
    let other_key = known
        .lines()
        .find(|line| line.starts_with(&format!("{},", other.name)))
        .and_then(|line| line.split_once(' '))
        .map(|(_, key)| key.to_string())
        .unwrap();
    let wrong = fleet.dir().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("{},{} {other_key}\n", target.name, target.address),
    )
    .unwrap();
    let empty = fleet.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();

    for known_hosts in [&wrong, &empty] {
        for destination in [target.name.clone(), target.address.to_string()] {
            let output = fleet
                .ssh_command()
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .arg(&destination)
                .arg("echo connected")
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(255), "{destination}");
            assert!(!stdout(&output).contains("connected"));
            assert!(
                stderr(&output).contains("Host key verification failed"),
                "{destination} with {}: {}",
                known_hosts.display(),
                stderr(&output)
            );
        }
    }

    // The right known_hosts still works.
    let output = fleet.ssh("host-01", "echo connected").unwrap();
    assert_eq!(stdout(&output), "connected\n", "{}", stderr(&output));
}

#[test]
fn a_stopped_host_is_unreachable_and_its_sessions_end() {
    let mut fleet = TestFleet::start(2).unwrap();
    let pid = fleet.sshd_pid("host-01").unwrap();

    // A session that would outlive the test if the host's sessions were not killed.
    let mut session = fleet
        .ssh_command()
        .arg("host-01")
        .arg("echo started; exec sleep 60")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "started\n");

    let stopping = Instant::now();
    fleet.stop_host("host-01");
    assert_eq!(fleet.sshd_pid("host-01"), None);
    assert!(!fleet_process_alive(pid, fleet.dir()));
    let ended = session.wait().unwrap();
    assert!(!ended.success());
    assert!(stopping.elapsed() < Duration::from_secs(10));

    let output = fleet.ssh("host-01", "true").unwrap();
    assert_eq!(output.status.code(), Some(255));
    assert!(
        stderr(&output).contains("Connection refused"),
        "{}",
        stderr(&output)
    );
    let other = fleet.ssh("host-02", "hostname").unwrap();
    assert_eq!(stdout(&other), "host-02\n", "{}", stderr(&other));

    // Brought back, it serves the same files under the same key.
    fleet.write_file("host-01", "back", b"again\n").unwrap();
    fleet.start_host("host-01").unwrap();
    let output = fleet.ssh("host-01", "cat /srv/back").unwrap();
    assert_eq!(stdout(&output), "again\n", "{}", stderr(&output));
}

#[test]
fn dropping_the_fleet_ends_every_sshd_and_removes_its_files() {
    let real_srv = listing(Path::new("/srv"));
    let fleet = TestFleet::builder()
        .hosts(2)
        .name_prefix("drop-")
        .start()
        .unwrap();
    let names: Vec<&str> = fleet.hosts().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["drop-01", "drop-02"]);
    fleet.write_file("drop-01", "marker", b"1").unwrap();
    let output = fleet.ssh("drop-01", "cat /srv/marker").unwrap();
    assert_eq!(stdout(&output), "1", "{}", stderr(&output));

    let dir = fleet.dir().to_path_buf();
    let pids: Vec<u32> = ["drop-01", "drop-02"]
        .iter()
        .map(|name| fleet.sshd_pid(name).unwrap())
        .collect();
    assert!(pids.iter().all(|&pid| fleet_process_alive(pid, &dir)));
    drop(fleet);

    for pid in pids {
        assert!(!fleet_process_alive(pid, &dir), "sshd {pid} survived");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
    assert_eq!(listing(Path::new("/srv")), real_srv);
    assert!(!mounted_here(Path::new("/srv")));
}

#[test]
fn a_panicking_test_still_tears_the_fleet_down() {
    let (sender, receiver) = std::sync::mpsc::channel::<(PathBuf, u32)>();
    let result = std::panic::catch_unwind(move || {
        let fleet = TestFleet::start(1).unwrap();
        sender
            .send((
                fleet.dir().to_path_buf(),
                fleet.sshd_pid("host-01").unwrap(),
            ))
            .unwrap();
        panic!("a test failing with a fleet up");
    });
    assert!(result.is_err());
    let (dir, pid) = receiver.recv().unwrap();
    assert!(!fleet_process_alive(pid, &dir));
    assert!(!dir.exists());
}
