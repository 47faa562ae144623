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
#[serde(default)]
pub struct RawAuthority {
    pub defaults: Option<RawDefaults>,
    pub inventory: Option<String>,
    pub hosts: Vec<RawHost>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub entities: Vec<RawEntity>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDefaults {
    pub ssh: Option<RawSsh>,
    pub url_ca_file: Option<String>,
    pub check_timeout: Option<String>,
    pub max_output: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub connect_timeout: Option<String>,
    pub known_hosts: Option<String>,
    pub identity_file: Option<String>,
    pub config_file: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHost {
    pub name: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub transport: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEntity {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub md5: Option<Value>,
    pub version: Option<Value>,
    pub version_script: Option<String>,
    pub collect_script: Option<String>,
    pub repair_script: Option<RawRepair>,
    pub entity_set: Option<Vec<String>>,
    pub labels: BTreeMap<String, Value>,
    pub check_timeout: Option<String>,
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
#[serde(default)]
pub struct RawRepairMethod {
    pub ansible: Option<RawAnsible>,
    pub deploy: Option<RawDeploy>,
    pub script: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAnsible {
    pub playbook: Option<String>,
    pub extra_vars: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDeploy {
    pub service: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}
