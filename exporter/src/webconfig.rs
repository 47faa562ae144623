//! `--web.config.file`: the exporter-toolkit web configuration format, as the
//! official exporters read it. `basic_auth_users` (bcrypt hashes) is
//! supported; `tls_server_config` is refused with a clear error rather than
//! silently serving plain HTTP.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<serde_yaml::Value>,
    #[serde(default)]
    http_server_config: Option<serde_yaml::Value>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

/// Checked web configuration.
#[derive(Debug, Default)]
pub struct WebConfig {
    users: BTreeMap<String, String>,
    /// (user, digest of the password) pairs already verified: bcrypt is slow
    /// on purpose, and Prometheus scrapes with the same credentials each time.
    verified: Mutex<HashSet<(String, [u8; 16])>>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read web config {}: {e}", path.display()))?;
        let raw: RawWebConfig =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if raw.tls_server_config.is_some() {
            return Err(format!(
                "{}: tls_server_config is not supported by this build; terminate TLS in front of the exporter",
                path.display()
            ));
        }
        if raw.http_server_config.is_some() {
            return Err(format!(
                "{}: http_server_config is not supported by this build",
                path.display()
            ));
        }
        for (user, hash) in &raw.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(format!(
                    "{}: basic_auth_users.{user} must be a bcrypt hash",
                    path.display()
                ));
            }
        }
        Ok(WebConfig {
            users: raw.basic_auth_users,
            verified: Mutex::default(),
        })
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header value against `basic_auth_users`.
    pub async fn authorize(&self, header: Option<&str>) -> bool {
        if !self.requires_auth() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            // Spend the same time as a real check so user names cannot be probed.
            let _ = tokio::task::spawn_blocking(move || bcrypt::verify(password, DUMMY_HASH)).await;
            return false;
        };
        let key = (user, Md5::digest(password.as_bytes()).into());
        if self.verified.lock().expect("cache lock").contains(&key) {
            return true;
        }
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            self.verified.lock().expect("cache lock").insert(key);
        }
        ok
    }
}

/// bcrypt("x", cost 10): only used to spend time on unknown users.
const DUMMY_HASH: &str = "$2b$10$2dWQQmcHTWiDeO0NJl/wKOP1k1Aw9cwzdEJ3OBJUAB1Y6/hgAB1O2";

fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
