//! Raw authority to checked [`Authority`]: every problem is collected, none
//! stops the others from being found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::raw::{RawAuthority, RawEntity, RawRepair, Unknown};
use super::spans::Spans;
use super::*;
use crate::duration;

struct Checker<'a> {
    file: &'a Path,
    base: PathBuf,
    spans: Spans,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at_value(&mut self, field: &str, message: impl Into<String>) {
        let pos = self.spans.value(field);
        self.push(pos, field, message.into());
    }

    fn at_key(&mut self, field: &str, message: impl Into<String>) {
        let pos = self.spans.key(field);
        self.push(pos, field, message.into());
    }

    fn push(&mut self, pos: spans::Pos, field: &str, message: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message,
        });
    }

    fn unknown(&mut self, prefix: &str, unknown: &Unknown, known: &[&str]) {
        for key in unknown.keys() {
            let field = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let mut msg = format!("unknown field {key:?}");
            if let Some(near) = known.iter().find(|k| similar(k, key)) {
                msg.push_str(&format!(", did you mean {near:?}?"));
            } else {
                msg.push_str(&format!(" (expected one of: {})", known.join(", ")));
            }
            self.at_key(&field, msg);
        }
    }

    fn duration(&mut self, field: &str, text: &Option<String>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match duration::parse(t) {
                Ok(d) if d > Duration::ZERO => d,
                Ok(_) => {
                    self.at_value(field, "must be greater than zero");
                    default
                }
                Err(e) => {
                    self.at_value(field, e);
                    default
                }
            },
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

/// Loose "did you mean": same letters but one edit, or a case/underscore change.
fn similar(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    if norm(a) == norm(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Levenshtein distance of at most 2, computed in full: the keys are short.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b':'))
}

fn valid_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with("__")
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

const TOP_KEYS: &[&str] = &["defaults", "inventory", "hosts", "groups", "entities"];
const DEFAULT_KEYS: &[&str] = &["ssh", "check_timeout", "max_output", "url_ca_file"];
const SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "connect_timeout",
    "known_hosts",
    "identity_file",
    "config_file",
];
const HOST_KEYS: &[&str] = &["name", "address", "port", "user", "transport"];
const ENTITY_KEYS: &[&str] = &[
    "name",
    "type",
    "path",
    "md5",
    "version",
    "version_script",
    "collect_script",
    "repair_script",
    "entity_set",
    "labels",
    "check_timeout",
    "max_output",
];
const REPAIR_KEYS: &[&str] = &["ansible", "deploy", "script", "command", "timeout"];
const RESERVED_LABELS: &[&str] = &[
    "entity", "host", "kind", "version", "state", "reason", "job", "instance",
];

pub fn validate(text: &str, file: &Path) -> Result<Authority, Vec<Problem>> {
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let raw: RawAuthority = if text.trim().is_empty() {
        RawAuthority::default()
    } else {
        match serde_yaml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                return Err(vec![serde_problem(file, &e)]);
            }
        }
    };
    let mut c = Checker {
        file,
        base,
        spans: Spans::index(text),
        problems: Vec::new(),
    };
    c.unknown("", &raw.unknown, TOP_KEYS);

    // Defaults.
    let mut ssh = SshSettings::default();
    let mut check_timeout = DEFAULT_CHECK_TIMEOUT;
    let mut max_output = DEFAULT_MAX_OUTPUT;
    let mut url_ca_file = None;
    if let Some(d) = &raw.defaults {
        c.unknown("defaults", &d.unknown, DEFAULT_KEYS);
        check_timeout = c.duration("defaults.check_timeout", &d.check_timeout, check_timeout);
        if let Some(m) = d.max_output {
            if m == 0 {
                c.at_value("defaults.max_output", "must be greater than zero");
            } else {
                max_output = m;
            }
        }
        if let Some(ca) = &d.url_ca_file {
            let path = c.path(ca);
            match pem_certificates(&path) {
                Ok(0) => c.at_value(
                    "defaults.url_ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ),
                Ok(_) => url_ca_file = Some(path),
                Err(e) => c.at_value(
                    "defaults.url_ca_file",
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        if let Some(s) = &d.ssh {
            c.unknown("defaults.ssh", &s.unknown, SSH_KEYS);
            if let Some(u) = &s.user {
                ssh.user.clone_from(u);
            }
            if let Some(p) = s.port {
                ssh.port = p;
            }
            ssh.connect_timeout = c.duration(
                "defaults.ssh.connect_timeout",
                &s.connect_timeout,
                ssh.connect_timeout,
            );
            ssh.known_hosts = s.known_hosts.as_deref().map(|p| c.path(p));
            ssh.identity_file = s.identity_file.as_deref().map(|p| c.path(p));
            ssh.config_file = s.config_file.as_deref().map(|p| c.path(p));
        }
    }

    // Hosts: inventory first, inline hosts override it.
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inventory_path = None;
    if let Some(inv) = &raw.inventory {
        let path = c.path(inv);
        match std::fs::read_to_string(&path) {
            Err(e) => c.at_value(
                "inventory",
                format!("cannot read inventory {}: {e}", path.display()),
            ),
            Ok(text) => match inventory::parse(&text, &path) {
                Err(problems) => c.problems.extend(problems),
                Ok(inv) => {
                    for (name, vars) in inv.hosts {
                        let host = Host {
                            address: vars.address.unwrap_or_else(|| name.clone()),
                            port: vars.port.unwrap_or(ssh.port),
                            user: vars.user.unwrap_or_else(|| ssh.user.clone()),
                            transport: if vars.local {
                                Transport::Local
                            } else {
                                Transport::Ssh
                            },
                            name: name.clone(),
                        };
                        hosts.insert(name, host);
                    }
                    groups = inv.groups;
                }
            },
        }
        inventory_path = Some(path);
    }
    let mut inline_hosts = BTreeSet::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        let at = format!("hosts[{i}]");
        c.unknown(&at, &h.unknown, HOST_KEYS);
        let Some(name) = h.name.as_deref() else {
            c.at_value(&at, "a host needs a `name`");
            continue;
        };
        if range::is_pattern(name) {
            c.at_value(
                &format!("{at}.name"),
                "a host entry names one host; put ranges in `groups`",
            );
            continue;
        }
        if !valid_name(name) {
            c.at_value(
                &format!("{at}.name"),
                format!("{name:?} is not a valid host name"),
            );
            continue;
        }
        if !inline_hosts.insert(name.to_string()) {
            c.at_value(&format!("{at}.name"), format!("duplicate host {name:?}"));
            continue;
        }
        let transport = match h.transport.as_deref() {
            None | Some("ssh") => Transport::Ssh,
            Some("local") => Transport::Local,
            Some(other) => {
                c.at_value(
                    &format!("{at}.transport"),
                    format!("unknown transport {other:?} (expected ssh or local)"),
                );
                Transport::Ssh
            }
        };
        let from_inventory = hosts.get(name).cloned();
        let host = Host {
            name: name.to_string(),
            address: h
                .address
                .clone()
                .or_else(|| from_inventory.as_ref().map(|x| x.address.clone()))
                .unwrap_or_else(|| name.to_string()),
            port: h
                .port
                .or(from_inventory.as_ref().map(|x| x.port))
                .unwrap_or(ssh.port),
            user: h
                .user
                .clone()
                .or_else(|| from_inventory.as_ref().map(|x| x.user.clone()))
                .unwrap_or_else(|| ssh.user.clone()),
            transport,
        };
        if host.port == 0 {
            c.at_value(&format!("{at}.port"), "port must be between 1 and 65535");
        }
        hosts.insert(name.to_string(), host);
    }

    // Groups: members are host names, ranges or other groups. Names that are
    // not groups declare hosts (address = name), as in an Ansible inventory.
    let inline_groups: BTreeSet<&String> = raw.groups.keys().collect();
    for name in raw.groups.keys() {
        if hosts.contains_key(name) && !groups.contains_key(name) {
            c.at_key(
                &format!("groups.{name}"),
                format!("{name:?} is both a host and a group"),
            );
        }
    }
    let mut resolved: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in raw.groups.keys() {
        let mut stack = Vec::new();
        resolve_group(
            &mut c,
            &raw.groups,
            &groups,
            name,
            &mut stack,
            &mut resolved,
        );
    }
    for (name, members) in &resolved {
        for h in members {
            if !inline_groups.contains(h) && !hosts.contains_key(h) {
                hosts.insert(h.clone(), implicit_host(h, &ssh));
            }
        }
        groups
            .entry(name.clone())
            .or_default()
            .extend(members.iter().cloned());
    }

    // Entities.
    let mut entities = Vec::new();
    let mut names = BTreeSet::new();
    for (i, e) in raw.entities.iter().enumerate() {
        let at = format!("entities[{i}]");
        let defaults = EntityDefaults {
            ssh: &ssh,
            check_timeout,
            max_output,
        };
        if let Some(entity) = entity(&mut c, &at, e, &mut names, &mut hosts, &groups, &defaults) {
            entities.push(entity);
        }
    }

    if c.problems.is_empty() {
        Ok(Authority {
            source: file.to_path_buf(),
            hosts,
            groups,
            entities,
            ssh,
            inventory: inventory_path,
            url_ca_file,
        })
    } else {
        c.problems
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(c.problems)
    }
}

/// How many PEM certificates `path` holds.
fn pem_certificates(path: &Path) -> Result<usize, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map(|certs| certs.len())
        .map_err(|e| e.to_string())
}

/// A serde error as a problem: its message is `path: reason at line L column C`;
/// the path becomes the field and the position moves to the problem's own.
pub(super) fn serde_problem(file: &Path, e: &serde_yaml::Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = e.to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let mut field = String::new();
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty() && !head.contains(' ') {
            field = head.to_string();
            message = rest.to_string();
        }
    }
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

/// Expands inline group `name` into host names, following group references
/// and reporting cycles and bad ranges.
fn resolve_group(
    c: &mut Checker<'_>,
    raw: &BTreeMap<String, Vec<String>>,
    from_inventory: &BTreeMap<String, BTreeSet<String>>,
    name: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    if let Some(d) = done.get(name) {
        return d.clone();
    }
    if stack.iter().any(|s| s == name) {
        c.at_key(
            &format!("groups.{name}"),
            format!(
                "group {name:?} includes itself ({} -> {name})",
                stack.join(" -> ")
            ),
        );
        return BTreeSet::new();
    }
    stack.push(name.to_string());
    let mut out = BTreeSet::new();
    if let Some(inv) = from_inventory.get(name) {
        out.extend(inv.iter().cloned());
    }
    for (j, member) in raw[name].iter().enumerate() {
        let field = format!("groups.{name}[{j}]");
        if raw.contains_key(member) {
            let sub = resolve_group(c, raw, from_inventory, member, stack, done);
            out.extend(sub);
        } else if let Some(inv) = from_inventory.get(member) {
            out.extend(inv.iter().cloned());
        } else {
            match range::expand(member) {
                Ok(names) => {
                    for n in names {
                        if valid_name(&n) {
                            out.insert(n);
                        } else {
                            c.at_value(&field, format!("{n:?} is not a valid host name"));
                        }
                    }
                }
                Err(e) => c.at_value(&field, e),
            }
        }
    }
    stack.pop();
    done.insert(name.to_string(), out.clone());
    out
}

/// What entities inherit from `defaults`.
struct EntityDefaults<'a> {
    ssh: &'a SshSettings,
    check_timeout: Duration,
    max_output: u64,
}

/// A host named only by a group or range: reached at its name with the SSH defaults.
fn implicit_host(name: &str, ssh: &SshSettings) -> Host {
    Host {
        name: name.to_string(),
        address: name.to_string(),
        port: ssh.port,
        user: ssh.user.clone(),
        transport: Transport::Ssh,
    }
}

fn entity(
    c: &mut Checker<'_>,
    at: &str,
    e: &RawEntity,
    names: &mut BTreeSet<String>,
    hosts: &mut BTreeMap<String, Host>,
    groups: &BTreeMap<String, BTreeSet<String>>,
    defaults: &EntityDefaults<'_>,
) -> Option<Entity> {
    let ssh = defaults.ssh;
    let (default_timeout, default_max_output) = (defaults.check_timeout, defaults.max_output);
    let problems_before = c.problems.len();
    c.unknown(at, &e.unknown, ENTITY_KEYS);
    let name = match e.name.as_deref() {
        None => {
            c.at_value(at, "an entity needs a `name`");
            String::new()
        }
        Some(n) if !valid_name(n) => {
            c.at_value(
                &format!("{at}.name"),
                format!("{n:?} is not a valid entity name (letters, digits, . - _)"),
            );
            n.to_string()
        }
        Some(n) => {
            if !names.insert(n.to_string()) {
                c.at_value(
                    &format!("{at}.name"),
                    format!("duplicate entity name {n:?}"),
                );
            }
            n.to_string()
        }
    };
    let kind = match e.kind.as_deref() {
        Some("file") => Some(Kind::File),
        Some("url") => Some(Kind::Url),
        Some("command") => Some(Kind::Command),
        Some(other) => {
            c.at_value(
                &format!("{at}.type"),
                format!("unknown type {other:?} (expected file, url or command)"),
            );
            None
        }
        None => {
            c.at_value(at, "an entity needs a `type` (file, url or command)");
            None
        }
    };
    match kind {
        Some(Kind::File) => match e.path.as_deref() {
            None => c.at_value(at, "a `file` entity needs a `path`"),
            Some(p) if !p.starts_with('/') => c.at_value(
                &format!("{at}.path"),
                format!("{p:?} must be an absolute path"),
            ),
            Some(_) => {}
        },
        Some(Kind::Url) => match e.path.as_deref() {
            None => c.at_value(at, "a `url` entity needs a `path` (the URL)"),
            Some(p) if !(p.starts_with("http://") || p.starts_with("https://")) => c.at_value(
                &format!("{at}.path"),
                format!("{p:?} must be an http:// or https:// URL"),
            ),
            Some(_) => {}
        },
        Some(Kind::Command)
            if e.collect_script
                .as_deref()
                .is_none_or(|s| s.trim().is_empty()) =>
        {
            c.at_value(at, "a `command` entity needs a `collect_script`");
        }
        Some(Kind::Command) | None => {}
    }
    if kind == Some(Kind::Url) && e.collect_script.is_some() {
        c.at_key(
            &format!("{at}.collect_script"),
            "a `url` entity is fetched by fleetcheck; it takes no collect_script",
        );
    }
    let md5 = match &e.md5 {
        None => {
            c.at_value(at, "an entity needs an `md5`");
            String::new()
        }
        Some(Value::String(s)) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            s.to_ascii_lowercase()
        }
        Some(v) => {
            let shown = scalar_string(v).unwrap_or_else(|| "a non-scalar".to_string());
            c.at_value(
                &format!("{at}.md5"),
                format!("{shown:?} is not an MD5 (32 hexadecimal digits)"),
            );
            String::new()
        }
    };
    let version = match &e.version {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            c.at_value(
                &format!("{at}.version"),
                format!(
                    "version must be a quoted string (YAML reads {} as a {}); write version: \"...\"",
                    scalar_string(v).unwrap_or_default(),
                    if v.is_number() { "number" } else { "non-string" }
                ),
            );
            None
        }
    };
    if e.version_script.is_some() && version.is_none() {
        c.at_key(
            &format!("{at}.version_script"),
            "version_script needs a `version` to compare with",
        );
    }
    let mut labels = BTreeMap::new();
    for (k, v) in &e.labels {
        let field = format!("{at}.labels.{k}");
        if !valid_label_name(k) {
            c.at_key(
                &field,
                format!("{k:?} is not a valid Prometheus label name"),
            );
        } else if RESERVED_LABELS.contains(&k.as_str()) {
            c.at_key(
                &field,
                format!("label {k:?} is reserved by fleetcheck's metrics"),
            );
        }
        match scalar_string(v) {
            Some(s) => {
                labels.insert(k.clone(), s);
            }
            None => c.at_value(&field, "label values must be strings"),
        }
    }
    let check_timeout = c.duration(
        &format!("{at}.check_timeout"),
        &e.check_timeout,
        default_timeout,
    );
    let max_output = match e.max_output {
        Some(0) => {
            c.at_value(&format!("{at}.max_output"), "must be greater than zero");
            default_max_output
        }
        Some(m) => m,
        None => default_max_output,
    };
    let repair = e
        .repair_script
        .as_ref()
        .and_then(|r| repair(c, &format!("{at}.repair_script"), r));

    let mut set = BTreeSet::new();
    match &e.entity_set {
        None => c.at_value(
            at,
            "an entity needs an `entity_set` (hosts, ranges or groups)",
        ),
        Some(items) if items.is_empty() => {
            c.at_value(&format!("{at}.entity_set"), "entity_set is empty")
        }
        Some(items) => {
            for (j, item) in items.iter().enumerate() {
                let field = format!("{at}.entity_set[{j}]");
                if let Some(members) = groups.get(item) {
                    if members.is_empty() {
                        c.at_value(&field, format!("group {item:?} has no hosts"));
                    }
                    set.extend(members.iter().cloned());
                } else if hosts.contains_key(item) {
                    set.insert(item.clone());
                } else if range::is_pattern(item) {
                    match range::expand(item) {
                        Ok(names) => {
                            for n in names {
                                if !valid_name(&n) {
                                    c.at_value(&field, format!("{n:?} is not a valid host name"));
                                    continue;
                                }
                                hosts
                                    .entry(n.clone())
                                    .or_insert_with(|| implicit_host(&n, ssh));
                                set.insert(n);
                            }
                        }
                        Err(err) => c.at_value(&field, err),
                    }
                } else {
                    c.at_value(&field, format!("unknown group or host {item:?}"));
                }
            }
        }
    }
    if c.problems.len() > problems_before {
        return None;
    }
    Some(Entity {
        name,
        kind: kind?,
        path: e.path.clone(),
        md5,
        version,
        version_script: e.version_script.clone(),
        collect_script: e.collect_script.clone(),
        repair,
        hosts: set,
        labels,
        check_timeout,
        max_output,
    })
}

fn repair(c: &mut Checker<'_>, at: &str, r: &RawRepair) -> Option<Repair> {
    let m = match r {
        RawRepair::Script(s) if s.trim().is_empty() => {
            c.at_value(at, "repair_script is empty");
            return None;
        }
        RawRepair::Script(s) => {
            return Some(Repair {
                method: RepairMethod::Script { script: s.clone() },
                timeout: None,
            })
        }
        RawRepair::Method(m) => m,
    };
    c.unknown(at, &m.unknown, REPAIR_KEYS);
    let timeout = m.timeout.as_ref().map(|_| {
        c.duration(
            &format!("{at}.timeout"),
            &m.timeout,
            Duration::from_secs(600),
        )
    });
    let chosen = [
        m.ansible.is_some(),
        m.deploy.is_some(),
        m.script.is_some(),
        m.command.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if chosen != 1 {
        c.at_value(
            at,
            "repair_script must name exactly one of ansible, deploy, script, command",
        );
        return None;
    }
    let method = if let Some(a) = &m.ansible {
        c.unknown(
            &format!("{at}.ansible"),
            &a.unknown,
            &["playbook", "extra_vars"],
        );
        let Some(playbook) = a.playbook.as_deref() else {
            c.at_value(
                &format!("{at}.ansible"),
                "ansible repair needs a `playbook`",
            );
            return None;
        };
        let path = c.path(playbook);
        if !path.is_file() {
            c.at_value(
                &format!("{at}.ansible.playbook"),
                format!("playbook {} does not exist", path.display()),
            );
        }
        let mut extra_vars = BTreeMap::new();
        for (k, v) in &a.extra_vars {
            match serde_json::to_value(v) {
                Ok(j) => {
                    extra_vars.insert(k.clone(), j);
                }
                Err(e) => c.at_value(
                    &format!("{at}.ansible.extra_vars.{k}"),
                    format!("not representable as JSON: {e}"),
                ),
            }
        }
        RepairMethod::Ansible {
            playbook: path,
            extra_vars,
        }
    } else if let Some(d) = &m.deploy {
        c.unknown(&format!("{at}.deploy"), &d.unknown, &["service"]);
        match d.service.as_deref() {
            Some(s) if valid_name(s) => RepairMethod::Deploy {
                service: s.to_string(),
            },
            Some(s) => {
                c.at_value(
                    &format!("{at}.deploy.service"),
                    format!("{s:?} is not a valid service name"),
                );
                return None;
            }
            None => {
                c.at_value(&format!("{at}.deploy"), "deploy repair needs a `service`");
                return None;
            }
        }
    } else if let Some(s) = &m.script {
        if s.trim().is_empty() {
            c.at_value(&format!("{at}.script"), "script is empty");
            return None;
        }
        RepairMethod::Script { script: s.clone() }
    } else {
        let argv = m.command.clone().unwrap_or_default();
        if argv.is_empty() || argv[0].is_empty() {
            c.at_value(
                &format!("{at}.command"),
                "command needs a program: [\"/path/to/program\", \"arg\", ...]",
            );
            return None;
        }
        RepairMethod::Command { argv }
    };
    Some(Repair { method, timeout })
}
