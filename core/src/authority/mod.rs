//! The authority: what the right state of each entity is and where it must hold.
//!
//! Only this module knows YAML. [`Authority::load`] reads the file (and the
//! Ansible inventory it names), validates everything, and either returns the
//! checked model or every problem found, each with file, line and column.

mod inventory;
mod range;
mod raw;
mod spans;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use range::expand as expand_host_pattern;

/// Default time allowed for all checks of one host in one cycle.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a command's captured output.
pub const DEFAULT_MAX_OUTPUT: u64 = 1024 * 1024;
/// Default SSH connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The validated authority.
#[derive(Clone, Debug)]
pub struct Authority {
    /// The file this was loaded from.
    pub source: PathBuf,
    /// Every host, by name.
    pub hosts: BTreeMap<String, Host>,
    /// Group name to the host names it expands to (sorted).
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Entities in file order.
    pub entities: Vec<Entity>,
    /// SSH settings shared by all hosts.
    pub ssh: SshSettings,
    /// The Ansible inventory the hosts were read from, if any.
    pub inventory: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for `url` entities over https.
    pub url_ca_file: Option<PathBuf>,
}

/// One machine of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The name metrics and alerts carry.
    pub name: String,
    /// Where to connect (defaults to the name).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub transport: Transport,
}

/// How a host is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ssh,
    /// Checks run on the machine running fleetcheck (examples, single machines).
    Local,
}

/// SSH client settings from `defaults.ssh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub known_hosts: Option<PathBuf>,
    pub identity_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: "root".to_string(),
            port: 22,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            known_hosts: None,
            identity_file: None,
            config_file: None,
        }
    }
}

/// What kind of thing an entity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A file on the host, hashed there.
    File,
    /// A URL fetched by fleetcheck, its body hashed.
    Url,
    /// A command run on the host, its stdout hashed.
    Command,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Url => "url",
            Kind::Command => "command",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entity of the authority with its checked invariants: a known kind with
/// what that kind needs, a lowercase 32-hex MD5 and a non-empty host set.
#[derive(Clone, Debug)]
pub struct Entity {
    pub name: String,
    pub kind: Kind,
    /// The file path (`file`) or URL template (`url`).
    pub path: Option<String>,
    /// The expected MD5, lowercase hex.
    pub md5: String,
    pub version: Option<String>,
    /// A command whose trimmed stdout is the version installed on the host.
    pub version_script: Option<String>,
    /// How to collect: required for `command`, optional override for `file`.
    pub collect_script: Option<String>,
    pub repair: Option<Repair>,
    /// Host names where this entity must hold.
    pub hosts: BTreeSet<String>,
    pub labels: BTreeMap<String, String>,
    pub check_timeout: Duration,
    pub max_output: u64,
}

impl Entity {
    /// True when the authority says this entity must hold on `host`.
    pub fn applies_to(&self, host: &str) -> bool {
        self.hosts.contains(host)
    }
}

/// How to repair an entity on a host.
#[derive(Clone, Debug, PartialEq)]
pub struct Repair {
    pub method: RepairMethod,
    pub timeout: Option<Duration>,
}

/// The executor a repair uses.
#[derive(Clone, Debug, PartialEq)]
pub enum RepairMethod {
    /// `ansible-playbook PLAYBOOK --limit HOST --extra-vars JSON`.
    Ansible {
        playbook: PathBuf,
        extra_vars: BTreeMap<String, serde_json::Value>,
    },
    /// The deployment system's HTTP API, by service name.
    Deploy { service: String },
    /// A script run on the host over the same transport as collection.
    Script { script: String },
    /// A local program, argv only; the pair is passed in the environment.
    Command { argv: Vec<String> },
}

impl RepairMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            RepairMethod::Ansible { .. } => "ansible",
            RepairMethod::Deploy { .. } => "deploy",
            RepairMethod::Script { .. } => "script",
            RepairMethod::Command { .. } => "command",
        }
    }
}

/// One problem in an authority or inventory file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The offending field as a path, e.g. `entities[2].md5`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why an authority could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read authority {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// Every problem found (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            LoadError::Invalid(p) => p,
            LoadError::Read { .. } => &[],
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the authority",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl Authority {
    /// Reads and validates the authority at `path`.
    pub fn load(path: &Path) -> Result<Authority, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Authority::parse(&text, path)
    }

    /// Validates `text` as if read from `path` (relative paths inside resolve
    /// against `path`'s directory).
    pub fn parse(text: &str, path: &Path) -> Result<Authority, LoadError> {
        validate::validate(text, path).map_err(LoadError::Invalid)
    }

    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Every (entity, host) pair the authority asks to hold.
    pub fn pairs(&self) -> impl Iterator<Item = (&Entity, &Host)> {
        self.entities.iter().flat_map(move |e| {
            e.hosts
                .iter()
                .filter_map(move |h| self.hosts.get(h).map(|h| (e, h)))
        })
    }

    /// Number of (entity, host) pairs.
    pub fn pair_count(&self) -> usize {
        self.entities.iter().map(|e| e.hosts.len()).sum()
    }

    /// Hosts that at least one entity applies to, in name order.
    pub fn checked_hosts(&self) -> Vec<&Host> {
        let used: BTreeSet<&str> = self
            .entities
            .iter()
            .flat_map(|e| e.hosts.iter().map(String::as_str))
            .collect();
        self.hosts
            .values()
            .filter(|h| used.contains(h.name.as_str()))
            .collect()
    }
}
