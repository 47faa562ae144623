//! Running the batched script on a host: locally with `sh -s`, or over a
//! reused OpenSSH multiplexed session. Only this module opens SSH sessions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::authority::{Host, SshSettings};

/// Reads `reader` to the end, keeping at most `cap` bytes (the rest is drained
/// so the writer never blocks).
pub async fn read_capped<R: AsyncRead + Unpin>(
    mut reader: R,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut exceeded = false;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, exceeded));
        }
        let room = cap.saturating_sub(out.len());
        if n > room {
            exceeded = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Runs `script` with a local `sh -s`, in its own process group so that a
/// timeout can kill everything it started.
pub async fn run_local(script: &str, cap: usize) -> Result<Vec<u8>, String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    let guard = GroupKill(child.id());
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let script = script.to_owned();
    let writer = async move {
        let r = stdin.write_all(script.as_bytes()).await;
        drop(stdin);
        r
    };
    let (w, out, err) = tokio::join!(writer, read_capped(stdout, cap), read_capped(stderr, 4096));
    w.map_err(|e| format!("cannot send the script to sh: {e}"))?;
    let (out, exceeded) = out.map_err(|e| format!("reading sh output: {e}"))?;
    let (err, _) = err.unwrap_or_default();
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for sh: {e}"))?;
    std::mem::forget(guard);
    if exceeded {
        return Err(format!("the host script printed more than {cap} bytes"));
    }
    if !status.success() {
        return Err(format!(
            "sh exited with {status}: {}",
            String::from_utf8_lossy(&err).trim()
        ));
    }
    Ok(out)
}

/// Kills a process group when dropped (a timed-out local run).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // The group id equals the leader's pid (process_group(0)). The
            // leader may already be gone; `kill` then fails harmlessly.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Reused SSH sessions, one per host, bounded in number.
pub struct SessionPool {
    control_dir: PathBuf,
    max_sessions: usize,
    idle_persist: Duration,
    sessions: Mutex<HashMap<String, Pooled>>,
}

struct Pooled {
    key: String,
    session: Arc<Session>,
    last_used: Instant,
}

impl SessionPool {
    pub fn new(control_dir: PathBuf, max_sessions: usize, idle_persist: Duration) -> SessionPool {
        SessionPool {
            control_dir,
            max_sessions: max_sessions.max(1),
            idle_persist,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `script` on `host` through its session, connecting if needed.
    /// A broken cached session is replaced once.
    pub async fn run(
        &self,
        host: &Host,
        ssh: &SshSettings,
        script: &str,
        cap: usize,
    ) -> Result<Vec<u8>, String> {
        let key = format!("{}@{}:{}", host.user, host.address, host.port);
        let cached = {
            let map = self.sessions.lock().await;
            map.get(&host.name)
                .filter(|p| p.key == key)
                .map(|p| p.session.clone())
        };
        if let Some(session) = cached {
            match run_on(&session, script, cap).await {
                Ok(out) => {
                    self.touch(&host.name).await;
                    return Ok(out);
                }
                Err(RunError::Session(e)) => {
                    tracing::debug!(host = %host.name, error = %e, "cached SSH session failed, reconnecting");
                    self.sessions.lock().await.remove(&host.name);
                }
                Err(RunError::Script(e)) => return Err(e),
            }
        }
        let session = Arc::new(self.connect(host, ssh).await?);
        let result = run_on(&session, script, cap)
            .await
            .map_err(RunError::into_message);
        if result.is_ok() {
            let mut map = self.sessions.lock().await;
            map.insert(
                host.name.clone(),
                Pooled {
                    key,
                    session,
                    last_used: Instant::now(),
                },
            );
            if map.len() > self.max_sessions {
                // Close the least recently used session beyond the bound.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, p)| p.last_used)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        result
    }

    async fn touch(&self, name: &str) {
        if let Some(p) = self.sessions.lock().await.get_mut(name) {
            p.last_used = Instant::now();
        }
    }

    /// Drops sessions of hosts no longer in `keep`.
    pub async fn retain(&self, keep: &(dyn Fn(&str) -> bool + Sync)) {
        self.sessions.lock().await.retain(|name, _| keep(name));
    }

    /// Closes every session (clean shutdown).
    pub async fn close_all(&self) {
        let drained: Vec<Pooled> = self.sessions.lock().await.drain().map(|(_, p)| p).collect();
        for p in drained {
            if let Ok(session) = Arc::try_unwrap(p.session) {
                let _ = session.close().await;
            }
        }
    }

    pub async fn open(&self) -> usize {
        self.sessions.lock().await.len()
    }

    async fn connect(&self, host: &Host, ssh: &SshSettings) -> Result<Session, String> {
        let mut b = SessionBuilder::default();
        b.user(host.user.clone())
            .port(host.port)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(ssh.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(&self.control_dir)
            .control_persist(openssh::ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(self.idle_persist.as_secs().max(1) as usize)
                    .expect("non-zero"),
            ));
        if let Some(k) = &ssh.known_hosts {
            b.user_known_hosts_file(k);
        }
        if let Some(k) = &ssh.identity_file {
            b.keyfile(k);
        }
        if let Some(c) = &ssh.config_file {
            b.config_file(c);
        }
        b.connect(&host.address)
            .await
            .map_err(|e| format!("ssh connection failed: {}", error_chain(&e)))
    }
}

enum RunError {
    /// The session itself failed (disconnected): worth reconnecting.
    Session(String),
    /// The script ran but failed.
    Script(String),
}

impl RunError {
    fn into_message(self) -> String {
        match self {
            RunError::Session(e) | RunError::Script(e) => e,
        }
    }
}

async fn run_on(session: &Session, script: &str, cap: usize) -> Result<Vec<u8>, RunError> {
    let mut child = session
        .raw_command("sh")
        .raw_arg("-s")
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await
        .map_err(|e| {
            RunError::Session(format!(
                "cannot start the remote shell: {}",
                error_chain(&e)
            ))
        })?;
    let mut stdin = child.stdin().take().expect("piped stdin");
    let stdout = child.stdout().take().expect("piped stdout");
    let stderr = child.stderr().take().expect("piped stderr");
    let script = script.to_owned();
    let writer = async move {
        let r = stdin.write_all(script.as_bytes()).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
        r
    };
    let (w, out, err) = tokio::join!(writer, read_capped(stdout, cap), read_capped(stderr, 4096));
    let status = child.wait().await;
    let (err, _) = err.unwrap_or_default();
    let err = String::from_utf8_lossy(&err).trim().to_string();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return Err(RunError::Session(format!(
                "remote shell failed: {} {err}",
                error_chain(&e)
            )))
        }
    };
    if let Err(e) = w {
        return Err(RunError::Script(format!(
            "cannot send the script: {e} {err}"
        )));
    }
    let (out, exceeded) =
        out.map_err(|e| RunError::Script(format!("reading remote output: {e}")))?;
    if exceeded {
        return Err(RunError::Script(format!(
            "the host script printed more than {cap} bytes"
        )));
    }
    match status.code() {
        Some(0) => Ok(out),
        // 255 is ssh's own failure (connection lost): the session is bad.
        Some(255) => Err(RunError::Session(format!("ssh failed: {err}"))),
        _ => Err(RunError::Script(format!(
            "remote sh exited with {status}: {err}"
        ))),
    }
}

/// The error and its sources on one line, e.g. `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s.trim().to_string()
}
