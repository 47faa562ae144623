//! The SSH test fleet: N real `sshd` hosts on loopback, each with its own files.
//!
//! [`TestFleet::start`] starts one `/usr/sbin/sshd` per host. Each runs in its own mount and UTS
//! namespace (made with `unshare`), where
//!
//! - a per-host directory of the fleet's temporary directory ([`FleetHost::root`]) is
//!   bind-mounted over a common mount point (`/srv` unless [`FleetBuilder::mount_point`] says
//!   otherwise), so the same path holds different bytes on each host;
//! - an empty tmpfs hides root's home (`/root`), so the remote shell sources no `~/.bashrc`
//!   (on these machines it runs `pyenv init`, which serialises parallel sessions);
//! - the hostname is the host's name (`host-01`, `host-02`, ...).
//!
//! Nothing is ever mounted in the real mount namespace: the mounts live and die with each
//! host's namespace.
//!
//! Each host listens on its own address `127.0.X.Y`, port 22, in a block `127.0.X.0/24` that the
//! fleet reserves for its lifetime by holding a listener on `127.0.X.1:22`, so fleets of
//! concurrently running tests (threads or processes) never collide. Hosts are `127.0.X.2`,
//! `127.0.X.3`, ... (at most [`MAX_HOSTS`]).
//!
//! Keys are generated for the fleet: an ed25519 host key per host, pinned in a `known_hosts`
//! file under both the host's name and its address, and one client key for `root`. Clients
//! connect with `StrictHostKeyChecking yes`; [`TestFleet::ssh_config_file`] holds all the
//! client settings (usable as `ssh -F FILE host-01`).
//!
//! Dropping the fleet (also while a test panics) kills every sshd and every session process in
//! the hosts' namespaces, waits for them, and removes the temporary directory. The sshd
//! listeners also get `SIGKILL` if the test process dies without unwinding (parent-death
//! signal), so an interrupted test run leaves no listeners behind.
//!
//! A missing `sshd`, `ssh`, `ssh-keygen`, `unshare`, `setpriv` or `mount` is a panic that says
//! how to install it: the fleet never skips silently.
//!
//! ```no_run
//! use fleetcheck_tests::fleet::TestFleet;
//!
//! let fleet = TestFleet::start(3).unwrap();
//! fleet.write_file("host-01", "app/config.yaml", b"a: 1\n").unwrap();
//! let out = fleet.ssh("host-01", "cat /srv/app/config.yaml").unwrap();
//! assert_eq!(out.stdout, b"a: 1\n");
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::tools::require_tool;

/// The most hosts one fleet can have: its block `127.0.X.0/24` offers `127.0.X.2..=254`.
pub const MAX_HOSTS: usize = 253;

/// The sshd every host runs; sshd must be started by absolute path.
const SSHD: &str = "/usr/sbin/sshd";
/// Root's home, hidden by an empty tmpfs on every host.
const ROOT_HOME: &str = "/root";
/// Where sshd wants its privilege-separation directory.
const PRIVSEP_DIR: &str = "/run/sshd";
/// The port every host listens on.
const SSH_PORT: u16 = 22;

const OPENSSH_SERVER_HINT: &str = "install it with `apt-get install openssh-server` \
     (the README's test command, scripts/test, does this)";
const OPENSSH_CLIENT_HINT: &str = "install it with `apt-get install openssh-client` \
     (the README's test command, scripts/test, does this)";
const UTIL_LINUX_HINT: &str = "install it with `apt-get install util-linux` \
     (the README's test command, scripts/test, does this)";
const MOUNT_HINT: &str = "install it with `apt-get install mount` \
     (the README's test command, scripts/test, does this)";

/// How many blocks to try before giving up on finding a free one.
const BLOCK_TRIES: usize = 60;
/// How many times to restart the whole fleet in a new block when an sshd cannot bind.
const START_ATTEMPTS: usize = 5;

/// One host of a [`TestFleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// The host's name: its hostname, its `Host` in the fleet's ssh config, and a name its key is
    /// pinned under in `known_hosts`.
    pub name: String,
    /// The loopback address its sshd listens on.
    pub address: Ipv4Addr,
    /// The port its sshd listens on (22).
    pub port: u16,
    /// The directory (on the real filesystem) mounted at the fleet's mount point on this host.
    pub root: PathBuf,
}

/// Settings for a [`TestFleet`]; made by [`TestFleet::builder`].
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    hosts: usize,
    name_prefix: String,
    mount_point: PathBuf,
}

impl Default for FleetBuilder {
    fn default() -> Self {
        FleetBuilder {
            hosts: 3,
            name_prefix: "host-".to_string(),
            mount_point: PathBuf::from("/srv"),
        }
    }
}

impl FleetBuilder {
    /// The number of hosts, 1 to [`MAX_HOSTS`] (default 3).
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n;
        self
    }

    /// The start of every host name (default `host-`): hosts are `{prefix}01`, `{prefix}02`, ...
    /// (three digits from 100 hosts on). At most 60 ASCII letters, digits, `-`, `_` or `.`.
    pub fn name_prefix(mut self, prefix: &str) -> Self {
        self.name_prefix = prefix.to_string();
        self
    }

    /// The absolute path where each host sees its own [`FleetHost::root`] (default `/srv`). It must
    /// be an existing directory on the real filesystem; it is never modified there.
    pub fn mount_point(mut self, path: impl Into<PathBuf>) -> Self {
        self.mount_point = path.into();
        self
    }

    /// Generates the keys, starts every host and waits until all of them accept connections.
    pub fn start(self) -> Result<TestFleet> {
        TestFleet::start_with(self)
    }
}

/// The programs the fleet runs, found once.
#[derive(Debug, Clone)]
struct Tools {
    sshd: PathBuf,
    ssh: PathBuf,
    keygen: PathBuf,
    unshare: PathBuf,
    setpriv: PathBuf,
    mount: PathBuf,
}

impl Tools {
    /// Finds every program, panicking with an install hint for the first one missing.
    fn require() -> Tools {
        Tools {
            sshd: require_tool(SSHD, OPENSSH_SERVER_HINT),
            ssh: require_tool("ssh", OPENSSH_CLIENT_HINT),
            keygen: require_tool("ssh-keygen", OPENSSH_CLIENT_HINT),
            unshare: require_tool("unshare", UTIL_LINUX_HINT),
            setpriv: require_tool("setpriv", UTIL_LINUX_HINT),
            mount: require_tool("mount", MOUNT_HINT),
        }
    }
}

/// What the fleet keeps of one host's sshd.
struct HostProcess {
    dir: PathBuf,
    child: Option<Child>,
    /// An open handle on the host's mount namespace: it identifies the host's processes and
    /// keeps the namespace (and so its inode number) from being reused while we look for them.
    namespace: Option<File>,
}

/// A running fleet of sshd hosts; see the [module documentation](self).
pub struct TestFleet {
    processes: Vec<HostProcess>,
    hosts: Vec<FleetHost>,
    mount_point: PathBuf,
    known_hosts: PathBuf,
    identity: PathBuf,
    ssh_config: PathBuf,
    tools: Tools,
    sshd_log_lines: usize,
    /// Held for the fleet's lifetime: owning `127.0.X.1:22` reserves the block `127.0.X.0/24`.
    _reservation: TcpListener,
    /// Removed on drop, after every process is gone.
    dir: tempfile::TempDir,
}

impl TestFleet {
    /// Settings for a fleet other than [`TestFleet::start`]'s.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// Starts `n` hosts with the default settings: `builder().hosts(n).start()`.
    pub fn start(n: usize) -> Result<TestFleet> {
        Self::builder().hosts(n).start()
    }

    /// Every host, in name order.
    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    /// The host called `name`; panics when there is none.
    pub fn host(&self, name: &str) -> &FleetHost {
        &self.hosts[self.index(name)]
    }

    /// The path where every host sees its own [`FleetHost::root`], such as `/srv`.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The `known_hosts` file pinning every host's key as `name,address ssh-ed25519 ...`.
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }

    /// The client's private key (mode 0600), authorised for `root` on every host.
    pub fn identity_file(&self) -> &Path {
        &self.identity
    }

    /// An ssh client config (for `ssh -F`) with a `Host` entry per host name and every client
    /// setting: user root, the identity, the known hosts, `StrictHostKeyChecking yes`,
    /// `BatchMode yes`.
    pub fn ssh_config_file(&self) -> &Path {
        &self.ssh_config
    }

    /// The fleet's temporary directory, removed on drop; tests may put their own files in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the host's sshd listener, or `None` once it is stopped.
    pub fn sshd_pid(&self, name: &str) -> Option<u32> {
        self.processes[self.index(name)]
            .child
            .as_ref()
            .map(Child::id)
    }

    /// How many SSH logins the host's sshd has accepted so far (from its log), so tests can
    /// assert that sessions are reused instead of reopened.
    pub fn accepted_logins(&self, name: &str) -> usize {
        let log = self.processes[self.index(name)].dir.join("sshd.log");
        fs::read_to_string(log)
            .map(|text| text.matches("Accepted publickey").count())
            .unwrap_or(0)
    }

    /// Writes `bytes` to `rel` (a relative path) on the host, creating directories, and returns
    /// the path the host sees it at (`mount_point/rel`).
    pub fn write_file(&self, host: &str, rel: &str, bytes: &[u8]) -> Result<PathBuf> {
        let rel = checked_relative(rel)?;
        let outer = self.host(host).root.join(rel);
        if let Some(parent) = outer.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&outer, bytes).with_context(|| format!("writing {}", outer.display()))?;
        Ok(self.mount_point.join(rel))
    }

    /// Removes the file `rel` (a relative path) from the host.
    pub fn remove_file(&self, host: &str, rel: &str) -> Result<()> {
        let outer = self.host(host).root.join(checked_relative(rel)?);
        fs::remove_file(&outer).with_context(|| format!("removing {}", outer.display()))
    }

    /// Takes the host down: kills its sshd and every session on it, so that it refuses new
    /// connections and existing ones (multiplexed masters too) break. Does nothing if it is
    /// already down.
    pub fn stop_host(&mut self, name: &str) {
        let index = self.index(name);
        stop_processes(&mut self.processes[index..=index]);
    }

    /// Brings a stopped host back, with the same address, key and files, and waits until it
    /// accepts connections. Does nothing if it is running.
    pub fn start_host(&mut self, name: &str) -> Result<()> {
        let index = self.index(name);
        if self.processes[index].child.is_some() {
            return Ok(());
        }
        let mut process = spawn_host(
            &self.tools,
            &self.processes[index].dir,
            &self.hosts[index],
            &self.mount_point,
        )?;
        let mut waiting = [(index, &mut process)];
        let outcome = wait_ready(&mut waiting, ready_timeout(1), self.sshd_log_lines);
        self.processes[index] = process;
        if let Err(failure) = outcome {
            stop_processes(&mut self.processes[index..=index]);
            return Err(failure.into_error(&self.hosts));
        }
        Ok(())
    }

    /// An `ssh` command set up with the fleet's client config (`-F`): add any options, then a
    /// host name, then the remote command.
    pub fn ssh_command(&self) -> Command {
        let mut command = Command::new(&self.tools.ssh);
        command.arg("-F").arg(&self.ssh_config).stdin(Stdio::null());
        command
    }

    /// Runs `remote_cmd` as root on the host over a fresh connection (the fleet's key and
    /// known hosts, `StrictHostKeyChecking yes`, `BatchMode yes`) and returns its output,
    /// whatever its exit status; `Err` only when `ssh` cannot be run.
    pub fn ssh(&self, host: &str, remote_cmd: &str) -> Result<Output> {
        let name = &self.host(host).name;
        self.ssh_command()
            .arg(name)
            .arg(remote_cmd)
            .output()
            .with_context(|| format!("running ssh {name} {remote_cmd:?}"))
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|host| host.name == name)
            .unwrap_or_else(|| panic!("the fleet has no host called {name:?}"))
    }

    fn start_with(settings: FleetBuilder) -> Result<TestFleet> {
        let tools = Tools::require();

        let FleetBuilder {
            hosts: count,
            name_prefix,
            mount_point,
        } = settings;
        ensure!(
            (1..=MAX_HOSTS).contains(&count),
            "a fleet has 1 to {MAX_HOSTS} hosts, not {count}"
        );
        ensure!(
            name_prefix.len() <= 60
                && name_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "the host name prefix {name_prefix:?} must be at most 60 ASCII letters, digits, \
             '-', '_' or '.' (it becomes hostnames and ssh config Host names)"
        );
        ensure!(
            mount_point.is_absolute() && mount_point.is_dir(),
            "the mount point {} must be an existing directory (given by absolute path)",
            mount_point.display()
        );
        ensure!(
            Path::new(ROOT_HOME).is_dir(),
            "{ROOT_HOME} (root's home, hidden on every host) does not exist"
        );
        fs::create_dir_all(PRIVSEP_DIR).with_context(|| format!("creating {PRIVSEP_DIR}"))?;

        let dir = tempfile::Builder::new()
            .prefix("fleetcheck-fleet-")
            .tempdir()
            .context("creating the fleet's temporary directory")?;
        let width = if count >= 100 { 3 } else { 2 };
        let names: Vec<String> = (1..=count)
            .map(|i| format!("{name_prefix}{i:0width$}"))
            .collect();

        // Keys: the client's and every host's, all generated at once.
        let client_dir = dir.path().join("client");
        fs::create_dir(&client_dir)?;
        let identity = client_dir.join("id_ed25519");
        let mut keygens = vec![spawn_keygen(
            &tools.keygen,
            &identity,
            "fleetcheck-test-client",
        )?];
        let mut host_dirs = Vec::with_capacity(count);
        let mut roots = Vec::with_capacity(count);
        for name in &names {
            let host_dir = dir.path().join("hosts").join(name);
            let root = dir.path().join("roots").join(name);
            fs::create_dir_all(&host_dir)?;
            fs::create_dir_all(&root)?;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
            keygens.push(spawn_keygen(
                &tools.keygen,
                &host_dir.join("ssh_host_ed25519_key"),
                name,
            )?);
            host_dirs.push(host_dir);
            roots.push(root);
        }
        for (child, key) in keygens {
            let output = child.wait_with_output().context("waiting for ssh-keygen")?;
            ensure!(
                output.status.success(),
                "ssh-keygen for {} failed ({}): {}",
                key.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        fs::set_permissions(&identity, fs::Permissions::from_mode(0o600))?;
        let authorized_keys = client_dir.join("authorized_keys");
        fs::copy(identity.with_extension("pub"), &authorized_keys)
            .context("writing authorized_keys")?;
        let mut host_keys = Vec::with_capacity(count);
        for (host_dir, name) in host_dirs.iter().zip(&names) {
            let public = fs::read_to_string(host_dir.join("ssh_host_ed25519_key.pub"))?;
            let mut fields = public.split_whitespace();
            let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
                bail!("unreadable public host key for {name}: {public:?}");
            };
            host_keys.push(format!("{kind} {key}"));
        }

        let known_hosts = client_dir.join("known_hosts");
        let ssh_config = client_dir.join("ssh_config");
        let sshd_log_lines = 40;
        let mut last_failure = None;
        for _ in 0..START_ATTEMPTS {
            let (reservation, block) = reserve_block()?;
            let hosts: Vec<FleetHost> = names
                .iter()
                .zip(&roots)
                .enumerate()
                .map(|(i, (name, root))| FleetHost {
                    name: name.clone(),
                    address: Ipv4Addr::new(127, 0, block, (i + 2) as u8),
                    port: SSH_PORT,
                    root: root.clone(),
                })
                .collect();

            let mut known = String::new();
            for (host, key) in hosts.iter().zip(&host_keys) {
                writeln!(known, "{},{} {key}", host.name, host.address)?;
            }
            fs::write(&known_hosts, known).context("writing known_hosts")?;
            fs::write(&ssh_config, client_config(&hosts, &identity, &known_hosts))
                .context("writing the ssh client config")?;
            for (host, host_dir) in hosts.iter().zip(&host_dirs) {
                fs::write(
                    host_dir.join("sshd_config"),
                    sshd_config(host, host_dir, &authorized_keys),
                )?;
            }
            validate_configs(&tools.sshd, &host_dirs)?;

            let mut started = Started(Vec::with_capacity(count));
            let mut outcome = Ok(());
            for (host, host_dir) in hosts.iter().zip(&host_dirs) {
                match spawn_host(&tools, host_dir, host, &mount_point) {
                    Ok(process) => started.0.push(process),
                    Err(error) => {
                        outcome = Err(StartFailure::Other(error));
                        break;
                    }
                }
            }
            if outcome.is_ok() {
                let mut waiting: Vec<(usize, &mut HostProcess)> =
                    started.0.iter_mut().enumerate().collect();
                outcome = wait_ready(&mut waiting, ready_timeout(count), sshd_log_lines);
            }
            match outcome {
                Ok(()) => {
                    return Ok(TestFleet {
                        processes: std::mem::take(&mut started.0),
                        hosts,
                        mount_point,
                        known_hosts,
                        identity,
                        ssh_config,
                        tools,
                        sshd_log_lines,
                        _reservation: reservation,
                        dir,
                    })
                }
                Err(failure) => {
                    let error = failure.into_error(&hosts);
                    drop(started); // stops what did start
                    if !is_address_in_use(&error) {
                        return Err(error);
                    }
                    last_failure = Some(error);
                }
            }
        }
        Err(last_failure
            .unwrap_or_else(|| anyhow!("no attempt was made"))
            .context(format!(
                "{START_ATTEMPTS} attempts to start the fleet in a free address block failed"
            )))
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        stop_processes(&mut self.processes);
    }
}

impl std::fmt::Debug for TestFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFleet")
            .field("dir", &self.dir.path())
            .field("mount_point", &self.mount_point)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// A relative path with no `..`, as the fleet's file helpers take.
fn checked_relative(rel: &str) -> Result<&Path> {
    let path = Path::new(rel);
    ensure!(
        !rel.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "{rel:?} is not a relative path inside the host's root (no leading /, no ..)"
    );
    Ok(path)
}

fn spawn_keygen(keygen: &Path, key: &Path, comment: &str) -> Result<(Child, PathBuf)> {
    let child = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", keygen.display()))?;
    Ok((child, key.to_path_buf()))
}

fn sshd_config(host: &FleetHost, host_dir: &Path, authorized_keys: &Path) -> String {
    format!(
        "# sshd for the test fleet host {name}\n\
         ListenAddress {address}:{port}\n\
         HostKey {key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UseDNS no\n\
         StrictModes no\n\
         MaxStartups 200\n\
         MaxSessions 100\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         LogLevel VERBOSE\n",
        name = host.name,
        address = host.address,
        port = host.port,
        key = host_dir.join("ssh_host_ed25519_key").display(),
        pid = host_dir.join("sshd.pid").display(),
        authorized_keys = authorized_keys.display(),
    )
}

fn client_config(hosts: &[FleetHost], identity: &Path, known_hosts: &Path) -> String {
    let mut config = String::from("# ssh client config for a fleetcheck test fleet\n");
    for host in hosts {
        let _ = write!(
            config,
            "Host {}\n  HostName {}\n  Port {}\n",
            host.name, host.address, host.port
        );
    }
    let _ = write!(
        config,
        "Host *\n  User root\n  IdentityFile {identity}\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n  \
         StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
        identity = identity.display(),
        known_hosts = known_hosts.display(),
    );
    config
}

/// Runs `sshd -t` on every host's config at once.
fn validate_configs(sshd: &Path, host_dirs: &[PathBuf]) -> Result<()> {
    let mut checks = Vec::with_capacity(host_dirs.len());
    for host_dir in host_dirs {
        let config = host_dir.join("sshd_config");
        let child = Command::new(sshd)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {} -t", sshd.display()))?;
        checks.push((child, config));
    }
    for (child, config) in checks {
        let output = child.wait_with_output()?;
        ensure!(
            output.status.success(),
            "sshd -t -f {} rejected the config ({}): {}",
            config.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Finds a free block `127.0.X.0/24` and reserves it by listening on `127.0.X.1:22`.
fn reserve_block() -> Result<(TcpListener, u8)> {
    let mut last_error = None;
    for _ in 0..BLOCK_TRIES {
        let block = 10 + (random_u64() % 241) as u8; // 10..=250
        match TcpListener::bind((Ipv4Addr::new(127, 0, block, 1), SSH_PORT)) {
            Ok(listener) => return Ok((listener, block)),
            Err(error) => last_error = Some(error),
        }
    }
    let error = last_error.map_or_else(|| "none".to_string(), |e| e.to_string());
    bail!(
        "no free address block 127.0.X.0/24 with port {SSH_PORT} free found in {BLOCK_TRIES} \
         tries (last error: {error}); is something listening on 0.0.0.0:{SSH_PORT}?"
    )
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
}

/// Starts the host's sshd in its own mount and UTS namespace: the host's root bind-mounted over
/// the mount point, a tmpfs over root's home, the hostname set, then `exec sshd`, so the child's
/// pid is sshd's. Its output goes to `sshd.log` in the host's directory.
fn spawn_host(
    tools: &Tools,
    host_dir: &Path,
    host: &FleetHost,
    mount_point: &Path,
) -> Result<HostProcess> {
    const SCRIPT: &str = "set -e\n\
        \"$1\" --bind -- \"$2\" \"$3\"\n\
        \"$1\" -t tmpfs -o mode=0700,size=1m fleet-home \"$4\"\n\
        printf '%s' \"$5\" > /proc/sys/kernel/hostname\n\
        exec \"$6\" -D -e -f \"$7\"\n";
    let pid_file = host_dir.join("sshd.pid");
    match fs::remove_file(&pid_file) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("removing {}", pid_file.display()))
        }
        _ => {}
    }
    let log_path = host_dir.join("sshd.log");
    let log = File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(&tools.setpriv);
    command
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&tools.unshare)
        .args(["--mount", "--propagation", "private", "--uts", "--"])
        .args(["/bin/sh", "-c", SCRIPT, "fleet-host"])
        .arg(&tools.mount)
        .arg(&host.root)
        .arg(mount_point)
        .arg(ROOT_HOME)
        .arg(&host.name)
        .arg(&tools.sshd)
        .arg(host_dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = spawn_from_lasting_thread(command)
        .with_context(|| format!("starting sshd for {}", host.name))?;
    Ok(HostProcess {
        dir: host_dir.to_path_buf(),
        child: Some(child),
        namespace: None,
    })
}

/// Spawns `command` from a thread that lives as long as the process.
///
/// The parent-death signal (`setpriv --pdeathsig`) fires when the *thread* that spawned the
/// child ends, not the process; a fleet kept in a `static` outlives the test thread that made
/// it, so the sshds are spawned from this lasting thread instead.
fn spawn_from_lasting_thread(command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("fleet-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the fleet's spawner thread");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| io::Error::other("the fleet's spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the fleet's spawner thread is gone"))?
}

fn ready_timeout(hosts: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_millis(100) * hosts as u32
}

/// Why hosts did not become ready.
enum StartFailure {
    /// The sshd of the host at this index exited or did not write its pid file in time.
    Host {
        index: usize,
        reason: String,
        log: String,
    },
    Other(anyhow::Error),
}

impl StartFailure {
    fn into_error(self, hosts: &[FleetHost]) -> anyhow::Error {
        match self {
            StartFailure::Host { index, reason, log } => {
                let host = &hosts[index];
                anyhow!(
                    "sshd for {} ({}:{}) {reason}; its log:\n{log}",
                    host.name,
                    host.address,
                    host.port
                )
            }
            StartFailure::Other(error) => error,
        }
    }
}

/// Whether an sshd failed because its address was taken (by something outside this fleet).
fn is_address_in_use(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("Address already in use") || text.contains("Cannot bind any address")
}

/// Hosts being started: stopped on drop unless taken over by the fleet.
struct Started(Vec<HostProcess>);

impl Drop for Started {
    fn drop(&mut self) {
        stop_processes(&mut self.0);
    }
}

/// Waits until every sshd has written its pid file (it does so after binding its address), then
/// takes a handle on its mount namespace.
fn wait_ready(
    waiting: &mut [(usize, &mut HostProcess)],
    timeout: Duration,
    log_lines: usize,
) -> std::result::Result<(), StartFailure> {
    let own_namespace = namespace_id(Path::new("/proc/self/ns/mnt"))
        .map_err(|e| StartFailure::Other(anyhow!("reading our own mount namespace: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..waiting.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::with_capacity(pending.len());
        for slot in pending {
            let (index, process) = &mut waiting[slot];
            let fail = |process: &HostProcess, reason: String| StartFailure::Host {
                index: *index,
                reason,
                log: log_tail(&process.dir.join("sshd.log"), log_lines),
            };
            let child = process
                .child
                .as_mut()
                .expect("a host being started has a child");
            let pid = child.id();
            if let Some(written) = read_pid_file(&process.dir.join("sshd.pid")) {
                if written != pid {
                    return Err(fail(
                        process,
                        format!(
                            "wrote pid {written} to its pid file, but the process started is {pid}"
                        ),
                    ));
                }
                let path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
                let handle = File::open(&path)
                    .and_then(|file| file.metadata().map(|meta| (file, (meta.dev(), meta.ino()))));
                match handle {
                    Ok((file, id)) if id != own_namespace => process.namespace = Some(file),
                    Ok(_) => {
                        return Err(fail(
                            process,
                            "runs in the test's own mount namespace".into(),
                        ))
                    }
                    Err(error) => {
                        return Err(fail(
                            process,
                            format!("has no readable {}: {error}", path.display()),
                        ))
                    }
                }
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) => return Err(fail(process, format!("exited ({status})"))),
                Ok(None) => still.push(slot),
                Err(error) => return Err(fail(process, format!("cannot be waited for: {error}"))),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let (index, process) = &waiting[pending[0]];
            return Err(StartFailure::Host {
                index: *index,
                reason: format!(
                    "wrote no pid file within {timeout:?} ({} hosts not ready)",
                    pending.len()
                ),
                log: log_tail(&process.dir.join("sshd.log"), log_lines),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn read_pid_file(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    // sshd writes "PID\n"; without the newline the file may still be being written.
    text.strip_suffix('\n')?.trim().parse().ok()
}

fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(unreadable {}: {error})", path.display()),
    }
}

fn namespace_id(path: &Path) -> io::Result<(u64, u64)> {
    fs::metadata(path).map(|meta| (meta.dev(), meta.ino()))
}

/// Sends `signal` to `pids` (with the shell's `kill`, which needs no unsafe code).
fn send_signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("kill -{signal} \"$@\" 2>/dev/null"))
        .arg("kill")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .status();
}

/// Stops the hosts: `SIGTERM` to each sshd listener, `SIGKILL` to any still running after two
/// seconds, waits for them, then kills whatever still runs in the hosts' mount namespaces (the
/// sshd session processes and their commands).
fn stop_processes(processes: &mut [HostProcess]) {
    let pids: Vec<u32> = processes
        .iter()
        .filter_map(|p| p.child.as_ref().map(Child::id))
        .collect();
    send_signal("TERM", &pids);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut running = false;
        for process in processes.iter_mut() {
            if let Some(child) = process.child.as_mut() {
                match child.try_wait() {
                    Ok(None) => running = true,
                    _ => process.child = None,
                }
            }
        }
        if !running || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for process in processes.iter_mut() {
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    let namespaces: Vec<File> = processes
        .iter_mut()
        .filter_map(|p| p.namespace.take())
        .collect();
    let ids: HashSet<(u64, u64)> = namespaces
        .iter()
        .filter_map(|file| file.metadata().ok().map(|meta| (meta.dev(), meta.ino())))
        .collect();
    if let Ok(own) = namespace_id(Path::new("/proc/self/ns/mnt")) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_in(&ids, own);
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            send_signal("KILL", &left);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(namespaces);
}

/// The live processes whose mount namespace is one of `namespaces` (never `own`).
fn processes_in(namespaces: &HashSet<(u64, u64)>, own: (u64, u64)) -> Vec<u32> {
    if namespaces.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            namespace_id(Path::new(&format!("/proc/{pid}/ns/mnt")))
                .is_ok_and(|id| id != own && namespaces.contains(&id))
                && !is_zombie(*pid)
        })
        .collect()
}

/// Whether the process has exited and only waits to be reaped (by whoever its parent is now).
fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so look after the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
