//! Running a real binary as a daemon for a test: its output goes to a log
//! file, it is killed on drop, and a failing test shows its log.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::http;

/// A running program, killed (and its log printed when panicking) on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program args…` with stdout and stderr going to `log`.
    pub fn start(program: &Path, args: &[&str], log: &Path) -> Result<Daemon> {
        Self::start_with(Command::new(program).args(args), log)
    }

    /// Starts a prepared command with stdout and stderr going to `log`.
    pub fn start_with(cmd: &mut Command, log: &Path) -> Result<Daemon> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let name = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Daemon {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET url` answers 200, or fails with the daemon's log.
    pub fn wait_ready(&mut self, url: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http::get(url) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited with {status} before {url} was ready; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{url} not ready within {timeout:?}; {} log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. "TERM", "HUP", "KILL") to the daemon.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("already reaped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- log of {} ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}

/// A loopback address with a free port (bound and released; good enough for tests).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}
