//! Running a local program for a repair: argv only (no shell), its own
//! process group, a deadline after which the whole group is killed, and the
//! tail of its combined output kept within a cap.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How a local program ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal,
    TimedOut,
}

/// A finished local program.
#[derive(Clone, Debug)]
pub struct Finished {
    pub exit: Exit,
    /// The last `cap` bytes of stdout and stderr, interleaved as they came.
    pub tail: Vec<u8>,
}

/// Why a program could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {program}")]
pub struct SpawnError {
    pub program: String,
    #[source]
    pub source: std::io::Error,
}

/// The last bytes of a stream, bounded.
struct Tail {
    cap: usize,
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.cap.saturating_mul(2) {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    fn into_tail(mut self) -> Vec<u8> {
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
        self.buf
    }
}

async fn pump<R: AsyncRead + Unpin>(mut reader: R, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&buf[..n]);
    }
}

/// Kills the process group `pgid` with SIGKILL (via kill(1): no unsafe code).
pub fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), which with
/// the pid identifies one process across pid reuse.
pub fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command come the fields from the 3rd on; the start time is the 22nd.
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Runs `argv` with `env` added to the environment in `cwd`. `started` gets
/// the process (group) id once it runs.
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    timeout: Duration,
    cap: usize,
    started: impl FnOnce(u32),
) -> Result<Finished, SpawnError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError {
        program: program.clone(),
        source,
    })?;
    let pgid = child.id().unwrap_or_default();
    started(pgid);
    let tail = Arc::new(Mutex::new(Tail {
        cap,
        buf: Vec::new(),
    }));
    let out = tokio::spawn(pump(
        child.stdout.take().expect("piped stdout"),
        tail.clone(),
    ));
    let err = tokio::spawn(pump(
        child.stderr.take().expect("piped stderr"),
        tail.clone(),
    ));
    let exit = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(code) => Exit::Code(code),
            None => Exit::Signal,
        },
        Ok(Err(_)) => Exit::Signal,
        Err(_) => {
            kill_group(pgid);
            let _ = child.wait().await;
            Exit::TimedOut
        }
    };
    // Children that outlive the leader may hold the pipes open: give the
    // readers a moment, then stop the group so they end.
    let drain = async {
        let _ = out.await;
        let _ = err.await;
    };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        kill_group(pgid);
    }
    let tail = Arc::try_unwrap(tail)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .map(Tail::into_tail)
        .unwrap_or_default();
    Ok(Finished { exit, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn output_tail_is_bounded_and_exit_code_kept() {
        let f = run(
            &argv(&["sh", "-c", "seq 1 10000; echo err >&2; exit 3"]),
            &BTreeMap::new(),
            None,
            Duration::from_secs(10),
            100,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(f.exit, Exit::Code(3));
        assert!(f.tail.len() <= 100);
        assert!(String::from_utf8_lossy(&f.tail).contains("err"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let t0 = std::time::Instant::now();
        let f = run(
            &argv(&["sh", "-c", &script]),
            &BTreeMap::new(),
            None,
            Duration::from_millis(300),
            100,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(f.exit, Exit::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "the background child was killed with its group"
        );
    }
}
