//! The `ansible` executor: `ansible-playbook PLAYBOOK -i INVENTORY --limit HOST
//! --extra-vars JSON`, where the inventory is the authority's (when it names
//! one) plus a generated one that connects to the host exactly as the
//! collector does (address, port, user, known hosts, key).

use std::collections::BTreeMap;
use std::path::Path;

use fleetcheck_core::authority::Transport;
use fleetcheck_core::collect::script::sh_quote;
use serde_json::{json, Value};

use super::{Attempt, ExecOutcome, ExecResult};

/// Characters with a meaning in Ansible host patterns (`--limit`).
const PATTERN_CHARS: &[char] = &[
    '*', '?', '[', ']', '!', '&', ':', ',', '~', '@', '\\', '/', '{', '}', '$', '\'', '"',
];

/// Whether `host` can be passed to `--limit` as a plain host name.
pub fn plain_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".to_string());
    }
    if host.starts_with('-') {
        return Err(format!("host name {host:?} starts with '-'"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| PATTERN_CHARS.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "host name {host:?} contains {c:?}, which Ansible reads as a pattern"
        ));
    }
    Ok(())
}

/// The generated inventory: one host, its connection settings.
pub fn inventory(a: &Attempt) -> Value {
    let h = &a.host;
    let mut vars = serde_json::Map::new();
    match h.transport {
        Transport::Local => {
            vars.insert("ansible_connection".into(), json!("local"));
        }
        Transport::Ssh => {
            vars.insert("ansible_host".into(), json!(h.address));
            vars.insert("ansible_port".into(), json!(h.port));
            vars.insert("ansible_user".into(), json!(h.user));
            let ssh = &a.authority.ssh;
            if let Some(key) = &ssh.identity_file {
                vars.insert(
                    "ansible_ssh_private_key_file".into(),
                    json!(key.display().to_string()),
                );
            }
            let mut args = vec!["-o StrictHostKeyChecking=yes".to_string()];
            if let Some(k) = &ssh.known_hosts {
                args.push(format!(
                    "-o UserKnownHostsFile={}",
                    sh_quote(&k.display().to_string())
                ));
            }
            if let Some(c) = &ssh.config_file {
                args.push(format!("-F {}", sh_quote(&c.display().to_string())));
            }
            args.push(format!(
                "-o ConnectTimeout={}",
                ssh.connect_timeout.as_secs().max(1)
            ));
            vars.insert("ansible_ssh_common_args".into(), json!(args.join(" ")));
        }
    }
    json!({ "all": { "hosts": { h.name.clone(): Value::Object(vars) } } })
}

/// The extra vars: the authority's, then the pair (which they cannot override).
pub fn extra_vars(a: &Attempt, configured: &BTreeMap<String, Value>) -> Value {
    let mut vars: serde_json::Map<String, Value> = configured.clone().into_iter().collect();
    let e = &a.entity;
    vars.insert("fleetcheck_entity".into(), json!(e.name));
    vars.insert("fleetcheck_host".into(), json!(a.host.name));
    vars.insert("fleetcheck_path".into(), json!(e.path));
    vars.insert("fleetcheck_md5".into(), json!(e.md5));
    vars.insert("fleetcheck_version".into(), json!(e.version));
    Value::Object(vars)
}

pub async fn run(
    a: &Attempt,
    playbook: &Path,
    configured: &BTreeMap<String, Value>,
    on_process: impl FnOnce(u32),
) -> ExecOutcome {
    let fail = |m: String| ExecOutcome {
        result: ExecResult::Failure(m),
        output: String::new(),
    };
    if let Err(e) = plain_host_name(&a.host.name) {
        return fail(format!("refusing to run ansible: {e}"));
    }
    if let Err(e) = std::fs::create_dir_all(&a.work_dir) {
        return fail(format!("cannot create {}: {e}", a.work_dir.display()));
    }
    let generated = a.work_dir.join("inventory.json");
    if let Err(e) = std::fs::write(
        &generated,
        serde_json::to_vec_pretty(&inventory(a)).expect("serialisable"),
    ) {
        return fail(format!("cannot write {}: {e}", generated.display()));
    }
    let mut argv = vec![
        a.ansible.playbook_binary.clone(),
        playbook.display().to_string(),
    ];
    if let Some(inv) = &a.authority.inventory {
        argv.push("-i".into());
        argv.push(inv.display().to_string());
    }
    argv.extend(["-i".into(), generated.display().to_string()]);
    argv.extend(["--limit".into(), a.host.name.clone()]);
    argv.extend(["--extra-vars".into(), extra_vars(a, configured).to_string()]);
    argv.extend(a.ansible.extra_args.iter().cloned());

    let mut env = super::pair_env(a.job_id, &a.entity, &a.host);
    // Host keys stay checked whatever the environment says; output stays plain.
    env.insert("ANSIBLE_HOST_KEY_CHECKING".into(), "True".into());
    env.insert("ANSIBLE_NOCOLOR".into(), "1".into());
    env.insert("ANSIBLE_RETRY_FILES_ENABLED".into(), "False".into());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    let cwd = playbook.parent().map(Path::to_path_buf);
    let outcome = super::local(&argv, &env, cwd, a.timeout, a.output_cap, on_process).await;
    let _ = std::fs::remove_dir_all(&a.work_dir);
    outcome
}

#[cfg(test)]
mod tests {
    use super::plain_host_name;

    #[test]
    fn limit_accepts_only_plain_names() {
        assert!(plain_host_name("web-01.example.org").is_ok());
        for bad in [
            "-i",
            "web*",
            "a,b",
            "all:!x",
            "~re",
            "a b",
            "x;rm -rf /",
            "$(id)",
            "",
        ] {
            assert!(plain_host_name(bad).is_err(), "{bad}");
        }
    }
}
