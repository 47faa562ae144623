//! The `script` executor: the authority's repair script runs on the host with
//! `sh`, over the collector's transport (the pooled SSH session, or locally).
//!
//! The pair is exported as sh-quoted variables ahead of the script; the
//! script's combined output is kept in a file on the host and only its tail
//! comes back, followed by a marker line with its exit status, so a failing
//! script still reports what it printed.

use fleetcheck_core::collect::script::sh_quote;

use super::{pair_env, Attempt, ExecOutcome, ExecResult};

const EXIT_MARKER: &str = "fleetcheck-repair-exit";

/// The wrapper script sent to the host.
pub fn wrap(a: &Attempt, script: &str) -> String {
    let mut s = String::from("umask 077\n");
    for (k, v) in pair_env(a.job_id, &a.entity, &a.host) {
        s.push_str(&format!("{k}={}; export {k}\n", sh_quote(&v)));
    }
    let secs = a.timeout.as_secs().max(1);
    let body = sh_quote(script);
    s.push_str(&format!(
        r#"fc_o=$(mktemp 2>/dev/null) || fc_o=/tmp/fleetcheck-repair.$$
trap 'rm -f "$fc_o"' EXIT
if command -v timeout >/dev/null 2>&1; then
  timeout -s KILL {secs} sh -c {body} </dev/null >"$fc_o" 2>&1
else
  sh -c {body} </dev/null >"$fc_o" 2>&1
fi
fc_rc=$?
tail -c {cap} "$fc_o"
printf '\n{EXIT_MARKER} %s\n' "$fc_rc"
"#,
        cap = a.output_cap
    ));
    s
}

pub async fn run(a: &Attempt, script: &str) -> ExecOutcome {
    let text = wrap(a, script);
    let cap = a.output_cap + 256;
    // The remote `timeout` kills the script; this deadline also covers a
    // connection that hangs.
    let deadline = a.timeout + a.authority.ssh.connect_timeout + std::time::Duration::from_secs(5);
    let run = a.collector.run_on_host(&a.authority, &a.host, &text, cap);
    let out = match tokio::time::timeout(deadline, run).await {
        Err(_) => {
            return ExecOutcome {
                result: ExecResult::Timeout,
                output: String::new(),
            }
        }
        Ok(Err(e)) => {
            return ExecOutcome {
                result: ExecResult::Failure(e),
                output: String::new(),
            }
        }
        Ok(Ok(out)) => String::from_utf8_lossy(&out).into_owned(),
    };
    let (output, rc) = match out.trim_end().rsplit_once('\n') {
        Some((body, last)) => (
            body.to_string(),
            last.strip_prefix(EXIT_MARKER)
                .map(str::trim)
                .map(str::to_string),
        ),
        None => (
            String::new(),
            out.trim()
                .strip_prefix(EXIT_MARKER)
                .map(str::trim)
                .map(str::to_string),
        ),
    };
    let result = match rc.as_deref() {
        Some("0") => ExecResult::Success,
        Some("137") => ExecResult::Timeout,
        Some(code) => ExecResult::Failure(format!("the script exited with status {code}")),
        None => ExecResult::Failure("the script's exit status never arrived".to_string()),
    };
    ExecOutcome { result, output }
}
