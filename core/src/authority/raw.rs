//! The authority file as written: serde structs that mirror the YAML, with no
//! invariants. `validate` turns them into the domain model.
//!
//! Every struct keeps unknown keys in `unknown` so that validation can report
//! all of them with positions, instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

pub type Unknown = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
pub struct RawAuthority {
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub inventory: Option<String>,
    #[serde(default)]
    pub hosts: Vec<RawHost>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub entities: Vec<RawEntity>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDefaults {
    #[serde(default)]
    pub ssh: Option<RawSsh>,
    #[serde(default)]
    pub check_timeout: Option<String>,
    #[serde(default)]
    pub max_output: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSsh {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub known_hosts: Option<String>,
    #[serde(default)]
    pub identity_file: Option<String>,
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHost {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEntity {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub md5: Option<Value>,
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub version_script: Option<String>,
    #[serde(default)]
    pub collect_script: Option<String>,
    #[serde(default)]
    pub repair_script: Option<RawRepair>,
    #[serde(default)]
    pub entity_set: Option<Vec<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
    #[serde(default)]
    pub check_timeout: Option<String>,
    #[serde(default)]
    pub max_output: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `repair_script` is either a plain shell script run on the host (the seed's
/// form) or a mapping naming exactly one executor.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRepair {
    Script(String),
    Method(RawRepairMethod),
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRepairMethod {
    #[serde(default)]
    pub ansible: Option<RawAnsible>,
    #[serde(default)]
    pub deploy: Option<RawDeploy>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAnsible {
    #[serde(default)]
    pub playbook: Option<String>,
    #[serde(default)]
    pub extra_vars: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDeploy {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}
