//! Benchmark: how long fleetcheck takes to check every file of every host of a
//! real SSH test fleet, against the peers an operator would otherwise use
//! (parallel `ssh host md5sum …`, with fresh connections and over open
//! ControlMasters, and optionally Ansible), and how much memory it uses.
//!
//! `scripts/bench [--hosts N] [--files N] [--rounds N] [--ansible]`
//! (the script builds the release exporter and passes `--exporter PATH`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fleetcheck_tests::daemon::{free_addr, Daemon};
use fleetcheck_tests::fleet::TestFleet;
use fleetcheck_tests::{http, prom, require_tool};

struct Args {
    hosts: usize,
    files: usize,
    rounds: usize,
    ansible: bool,
    exporter: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        hosts: 20,
        files: 20,
        rounds: 5,
        ansible: false,
        exporter: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--hosts" => a.hosts = value()?.parse()?,
            "--files" => a.files = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--exporter" => a.exporter = value()?.into(),
            "--ansible" => a.ansible = true,
            other => bail!("unknown flag {other}; usage: --hosts N --files N --rounds N --exporter PATH [--ansible]"),
        }
    }
    if a.exporter.as_os_str().is_empty() {
        bail!("--exporter PATH is required (scripts/bench passes the release build)");
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `ssh md5sum` on every host at once; fails unless every run succeeds.
fn parallel_md5sum(fleet: &TestFleet, extra: &[&str], paths: &str) -> Result<()> {
    let children: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|h| {
            fleet
                .ssh_command()
                .args(extra)
                .arg(&h.name)
                .arg(format!("md5sum {paths}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ssh md5sum failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let a = args()?;
    eprintln!(
        "starting {} hosts with {} files each (one of 5 MiB)…",
        a.hosts, a.files
    );
    let fleet = TestFleet::start(a.hosts)?;
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let content = |i: usize| {
        if i == 1 {
            big.clone()
        } else {
            format!("file {i}\n").repeat(64).into_bytes()
        }
    };
    for h in fleet.hosts() {
        for i in 1..=a.files {
            fleet.write_file(&h.name, &format!("bench/f{i:02}"), &content(i))?;
        }
    }
    let work = tempfile::tempdir()?;
    let authority = work.path().join("authority.yaml");
    let mut text = format!(
        "defaults:\n  ssh: {{ known_hosts: {}, identity_file: {} }}\nhosts:\n",
        fleet.known_hosts_file().display(),
        fleet.identity_file().display()
    );
    for h in fleet.hosts() {
        writeln!(text, "  - {{ name: {}, address: {} }}", h.name, h.address)?;
    }
    text.push_str("groups:\n  all: [");
    text.push_str(
        &fleet
            .hosts()
            .iter()
            .map(|h| h.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\nentities:\n");
    for i in 1..=a.files {
        use md5::Digest as _;
        let md5 = format!("{:x}", md5::Md5::digest(content(i)));
        writeln!(text, "  - {{ name: f{i:02}, type: file, path: /srv/bench/f{i:02}, md5: {md5}, entity_set: [all] }}")?;
    }
    std::fs::write(&authority, text)?;
    let paths: String = (1..=a.files)
        .map(|i| format!("/srv/bench/f{i:02} "))
        .collect();

    // fleetcheck, cold: one `once` run, fresh connections (default key exchange).
    let mut cold = Vec::new();
    let mut once_rss = 0;
    for _ in 0..a.rounds {
        let t = Instant::now();
        let child = Command::new(&a.exporter)
            .args([
                "once",
                "--config.file",
                authority.to_str().unwrap(),
                "--format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        // Sample the peak while it runs (VmHWM is gone once it exits).
        let mut peak = 0;
        let out = {
            let handle = std::thread::spawn(move || child.wait_with_output());
            while !handle.is_finished() {
                peak = peak.max(peak_rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            handle.join().expect("wait thread")?
        };
        cold.push(t.elapsed().as_secs_f64());
        once_rss = once_rss.max(peak);
        if !out.status.success() {
            bail!(
                "fleetcheck once found inconsistencies or failed:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    // fleetcheck, warm: the exporter's own cycle duration with reused sessions.
    let addr = free_addr();
    let mut exporter = Daemon::start(
        &a.exporter,
        &[
            "--config.file",
            authority.to_str().unwrap(),
            "--web.listen-address",
            &addr.to_string(),
            "--collect.interval",
            "1s",
        ],
        &work.path().join("exporter.log"),
    )?;
    exporter.wait_ready(&format!("http://{addr}/-/ready"), Duration::from_secs(120))?;
    let mut warm = Vec::new();
    let mut last = 0.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while warm.len() < a.rounds + 1 && Instant::now() < deadline {
        let s = prom::parse(&http::get(&format!("http://{addr}/metrics"))?.body);
        let started =
            prom::value(&s, "fleetcheck_last_cycle_timestamp_seconds", &[]).unwrap_or(0.0);
        if started > last {
            last = started;
            warm.push(
                prom::value(&s, "fleetcheck_cycle_duration_seconds", &[]).unwrap_or(f64::NAN),
            );
            let consistent = prom::family(&s, "fleetcheck_entity_consistent")
                .iter()
                .filter(|x| x.value == 1.0)
                .count();
            if consistent != a.hosts * a.files {
                bail!(
                    "exporter saw {consistent} consistent pairs, expected {}",
                    a.hosts * a.files
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    warm.remove(0); // the first published cycle may be the cold one
    let serve_rss = peak_rss_kib(exporter.pid());
    drop(exporter);

    // Peers: parallel ssh md5sum, fresh connections and over ControlMasters.
    let mut fresh = Vec::new();
    for _ in 0..a.rounds {
        fresh.push(timed(|| {
            parallel_md5sum(
                &fleet,
                &["-o", "ControlMaster=no", "-o", "ControlPath=none"],
                &paths,
            )
        })?);
    }
    let cm_dir = work.path().join("cm");
    std::fs::create_dir(&cm_dir)?;
    let control = format!("ControlPath={}/%h", cm_dir.display());
    parallel_md5sum(
        &fleet,
        &[
            "-o",
            "ControlMaster=auto",
            "-o",
            &control,
            "-o",
            "ControlPersist=120",
        ],
        &paths,
    )?;
    let mut muxed = Vec::new();
    for _ in 0..a.rounds {
        muxed.push(timed(|| {
            parallel_md5sum(&fleet, &["-o", "ControlMaster=no", "-o", &control], &paths)
        })?);
    }
    for h in fleet.hosts() {
        let _ = fleet
            .ssh_command()
            .args(["-o", &control, "-O", "exit", &h.name])
            .stderr(Stdio::null())
            .status();
    }

    let ansible = if a.ansible {
        Some(ansible_run(&fleet, work.path(), &paths)?)
    } else {
        None
    };

    let (cold, warm, fresh, muxed) = (median(cold), median(warm), median(fresh), median(muxed));
    println!(
        "fleetcheck benchmark: {} hosts x {} files (one of 5 MiB), median of {} rounds",
        a.hosts, a.files, a.rounds
    );
    println!(
        "{:<58} {:>9} {:>12}",
        "way to check every file of every host", "seconds", "vs fleetcheck"
    );
    let row = |name: &str, secs: f64, base: f64| {
        println!("{name:<58} {secs:>9.3} {:>11.2}x", secs / base)
    };
    row(
        "fleetcheck once (fresh connections, process start)",
        cold,
        cold,
    );
    row(
        "parallel ssh md5sum, fresh connections (same kex)",
        fresh,
        cold,
    );
    row("fleetcheck exporter cycle (sessions reused)", warm, warm);
    row("parallel ssh md5sum over open ControlMasters", muxed, warm);
    if let Some(t) = ansible {
        row(
            "ansible command md5sum (pipelining, ControlPersist)",
            t,
            warm,
        );
    }
    println!(
        "peak RSS: fleetcheck once {:.1} MiB; exporter serving {:.1} MiB",
        once_rss as f64 / 1024.0,
        serve_rss as f64 / 1024.0
    );
    Ok(())
}

/// One Ansible ad-hoc `command: md5sum …` over the fleet (second run: warm ControlPersist).
fn ansible_run(fleet: &TestFleet, dir: &Path, paths: &str) -> Result<f64> {
    let ansible = require_tool("ansible", "install it with `apt-get install ansible-core`");
    let mut inv = String::from("all:\n  hosts:\n");
    for h in fleet.hosts() {
        writeln!(
            inv,
            "    {}: {{ ansible_host: {}, ansible_user: root }}",
            h.name, h.address
        )?;
    }
    let inv_path = dir.join("inventory.yml");
    std::fs::write(&inv_path, inv)?;
    let cp = dir.join("ansible-cp");
    std::fs::create_dir_all(&cp)?;
    let run = || -> Result<f64> {
        timed(|| {
            let out = Command::new(&ansible)
                .args([
                    "all",
                    "-i",
                    inv_path.to_str().unwrap(),
                    "-f",
                    &fleet.hosts().len().to_string(),
                    "-m",
                    "command",
                    "-a",
                ])
                .arg(format!("md5sum {paths}"))
                .env("ANSIBLE_PIPELINING", "True")
                .env(
                    "ANSIBLE_SSH_ARGS",
                    format!(
                        "-F {} -o ControlMaster=auto -o ControlPersist=120",
                        fleet.ssh_config_file().display()
                    ),
                )
                .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &cp)
                .env("ANSIBLE_PRIVATE_KEY_FILE", fleet.identity_file())
                .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
                .env("HOME", dir)
                .output()?;
            if !out.status.success() {
                bail!(
                    "ansible failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        })
    };
    run()?;
    run()
}
