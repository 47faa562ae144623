//! Reading an Ansible YAML inventory, so the exporter and the repairs share one
//! list of hosts. Honoured variables: `ansible_host`, `ansible_port`,
//! `ansible_user` and `ansible_connection: local`; group `vars` apply to the
//! group's hosts and children, host variables win over group variables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::range;
use super::spans::Spans;
use super::Problem;

/// Hosts and groups found in an inventory.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Host name to its connection variables, in first-seen order of names.
    pub hosts: BTreeMap<String, HostVars>,
    /// Group name to every host below it (children included).
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostVars {
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub local: bool,
}

struct Reader<'a> {
    file: &'a Path,
    spans: Spans,
    problems: Vec<Problem>,
    inv: Inventory,
}

/// Parses the inventory `text` read from `file`. Problems carry positions in
/// the inventory file itself.
pub fn parse(text: &str, file: &Path) -> Result<Inventory, Vec<Problem>> {
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let mut p = super::validate::serde_problem(file, &e);
            p.message = format!("not a YAML inventory: {}", p.message);
            return Err(vec![p]);
        }
    };
    let mut r = Reader {
        file,
        spans: Spans::index(text),
        problems: Vec::new(),
        inv: Inventory::default(),
    };
    match &root {
        Value::Mapping(groups) => {
            for (name, body) in groups {
                let Some(name) = name.as_str() else {
                    r.problem("", "group names must be strings".to_string());
                    continue;
                };
                r.group(name, body, name, &HostVars::default(), &mut Vec::new());
            }
        }
        Value::Null => {}
        _ => r.problem(
            "",
            "an inventory must be a mapping of groups (e.g. `all:`)".to_string(),
        ),
    }
    if r.problems.is_empty() {
        Ok(r.inv)
    } else {
        Err(r.problems)
    }
}

impl Reader<'_> {
    fn problem(&mut self, path: &str, message: String) {
        let pos = self.spans.value(path);
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            field: path.to_string(),
            message,
        });
    }

    /// Reads group `name` at `path`; returns the hosts below it.
    fn group(
        &mut self,
        name: &str,
        body: &Value,
        path: &str,
        inherited: &HostVars,
        ancestry: &mut Vec<String>,
    ) -> BTreeSet<String> {
        if ancestry.iter().any(|a| a == name) {
            self.problem(path, format!("group {name:?} contains itself"));
            return BTreeSet::new();
        }
        let empty = Mapping::new();
        let body = match body {
            Value::Mapping(m) => m,
            Value::Null => &empty,
            _ => {
                self.problem(
                    path,
                    "a group must be a mapping with hosts, vars or children".to_string(),
                );
                return BTreeSet::new();
            }
        };
        let mut vars = inherited.clone();
        if let Some(v) = body.get("vars") {
            let own = self.vars(v, &format!("{path}.vars"));
            overlay(&mut vars, &own);
        }
        let mut members = BTreeSet::new();
        for (key, value) in body {
            let key = key.as_str().unwrap_or_default();
            let key_path = format!("{path}.{key}");
            match key {
                "vars" => {}
                "hosts" => match value {
                    Value::Mapping(hosts) => {
                        for (pattern, host_vars) in hosts {
                            let Some(pattern) = pattern.as_str() else {
                                self.problem(&key_path, "host names must be strings".to_string());
                                continue;
                            };
                            let host_path = format!("{key_path}.{pattern}");
                            let names = match range::expand(pattern) {
                                Ok(n) => n,
                                Err(e) => {
                                    self.problem(&host_path, e);
                                    continue;
                                }
                            };
                            let own = self.vars(host_vars, &host_path);
                            for n in names {
                                let entry = self
                                    .inv
                                    .hosts
                                    .entry(n.clone())
                                    .or_insert_with(|| vars.clone());
                                overlay(entry, &own);
                                members.insert(n);
                            }
                        }
                    }
                    Value::Null => {}
                    _ => self.problem(
                        &key_path,
                        "`hosts` must be a mapping of host names".to_string(),
                    ),
                },
                "children" => match value {
                    Value::Mapping(children) => {
                        ancestry.push(name.to_string());
                        for (child, child_body) in children {
                            let Some(child) = child.as_str() else {
                                self.problem(&key_path, "group names must be strings".to_string());
                                continue;
                            };
                            let child_path = format!("{key_path}.{child}");
                            let below = self.group(child, child_body, &child_path, &vars, ancestry);
                            members.extend(below);
                        }
                        ancestry.pop();
                    }
                    Value::Null => {}
                    _ => self.problem(
                        &key_path,
                        "`children` must be a mapping of groups".to_string(),
                    ),
                },
                other => self.problem(
                    &key_path,
                    format!(
                        "unknown key {other:?} in group {name:?} (expected hosts, vars, children)"
                    ),
                ),
            }
        }
        self.inv
            .groups
            .entry(name.to_string())
            .or_default()
            .extend(members.iter().cloned());
        members
    }

    fn vars(&mut self, value: &Value, path: &str) -> HostVars {
        let mut out = HostVars::default();
        let Value::Mapping(m) = value else {
            if !value.is_null() {
                self.problem(path, "variables must be a mapping".to_string());
            }
            return out;
        };
        for (k, v) in m {
            let k = k.as_str().unwrap_or_default();
            let vpath = format!("{path}.{k}");
            match k {
                "ansible_host" => out.address = self.string(v, &vpath),
                "ansible_user" => out.user = self.string(v, &vpath),
                "ansible_port" => {
                    let port = match v {
                        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    };
                    match port {
                        Some(p) if p > 0 => out.port = Some(p),
                        _ => self.problem(
                            &vpath,
                            format!("ansible_port must be a port number, got {}", show(v)),
                        ),
                    }
                }
                "ansible_connection" => out.local = v.as_str() == Some("local"),
                // Other variables belong to the playbooks, not to us.
                _ => {}
            }
        }
        out
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                self.problem(
                    path,
                    format!("expected a non-empty string, got {}", show(v)),
                );
                None
            }
        }
    }
}

fn overlay(base: &mut HostVars, top: &HostVars) {
    if top.address.is_some() {
        base.address.clone_from(&top.address);
    }
    if top.port.is_some() {
        base.port = top.port;
    }
    if top.user.is_some() {
        base.user.clone_from(&top.user);
    }
    base.local |= top.local;
}

fn show(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_groups_ranges_and_vars() {
        let text = r#"
all:
  vars: { ansible_user: ops }
  hosts:
    bastion: { ansible_host: 10.0.0.1, ansible_port: 2222 }
  children:
    web:
      vars: { ansible_port: 2200 }
      hosts:
        web-[01:03]:
        web-02: { ansible_user: deploy }
    local:
      hosts:
        laptop: { ansible_connection: local }
"#;
        let inv = parse(text, Path::new("inv.yml")).unwrap();
        assert_eq!(inv.hosts.len(), 5);
        let b = &inv.hosts["bastion"];
        assert_eq!(
            (b.address.as_deref(), b.port, b.user.as_deref()),
            (Some("10.0.0.1"), Some(2222), Some("ops"))
        );
        assert_eq!(inv.hosts["web-01"].port, Some(2200));
        assert_eq!(inv.hosts["web-02"].user.as_deref(), Some("deploy"));
        assert!(inv.hosts["laptop"].local);
        assert_eq!(inv.groups["web"].len(), 3);
        assert_eq!(inv.groups["all"].len(), 5);
    }

    #[test]
    fn reports_bad_ports_and_unknown_keys_with_positions() {
        let text = "all:\n  hosts:\n    a: { ansible_port: nope }\n  kids: {}\n";
        let problems = parse(text, Path::new("inv.yml")).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            (problems[0].line, problems[0].field.as_str()),
            (3, "all.hosts.a.ansible_port")
        );
        assert!(problems[1].message.contains("unknown key \"kids\""));
    }
}
