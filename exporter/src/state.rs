//! What the exporter knows right now: the authority in force, the latest
//! snapshot and the outcome of the last reload. Scrapes read it; only the
//! scheduler writes snapshots and only `reload` swaps the authority.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use fleetcheck_core::{Authority, Snapshot};
use tokio::sync::Notify;

/// Outcome of the last (re)load of the authority.
#[derive(Clone, Copy, Debug)]
pub struct ReloadStatus {
    pub successful: bool,
    pub success_time: SystemTime,
}

pub struct Shared {
    pub config_file: PathBuf,
    authority: RwLock<Arc<Authority>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    reload: Mutex<ReloadStatus>,
    ready: AtomicBool,
    /// Wakes the scheduler for an immediate cycle (after a reload).
    pub wake: Notify,
    /// Serialises reloads from SIGHUP and HTTP.
    reload_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    pub fn new(config_file: PathBuf, authority: Authority) -> Arc<Shared> {
        Arc::new(Shared {
            config_file,
            authority: RwLock::new(Arc::new(authority)),
            snapshot: RwLock::new(None),
            reload: Mutex::new(ReloadStatus {
                successful: true,
                success_time: SystemTime::now(),
            }),
            ready: AtomicBool::new(false),
            wake: Notify::new(),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn authority(&self) -> Arc<Authority> {
        self.authority.read().expect("authority lock").clone()
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.write().expect("snapshot lock") = Some(Arc::new(snapshot));
        self.ready.store(true, Ordering::Release);
    }

    /// True once the first cycle has completed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn reload_status(&self) -> ReloadStatus {
        *self.reload.lock().expect("reload lock")
    }

    /// Re-reads the authority. A bad file never replaces the good one: the
    /// error is returned, logged and exposed by the reload metric.
    pub async fn reload(&self) -> Result<(), String> {
        let _serial = self.reload_lock.lock().await;
        let path = self.config_file.clone();
        let loaded = tokio::task::spawn_blocking(move || Authority::load(&path))
            .await
            .map_err(|e| format!("reload task failed: {e}"))?;
        match loaded {
            Ok(authority) => {
                tracing::info!(
                    file = %self.config_file.display(),
                    entities = authority.entities.len(),
                    hosts = authority.hosts.len(),
                    pairs = authority.pair_count(),
                    "authority reloaded"
                );
                *self.authority.write().expect("authority lock") = Arc::new(authority);
                *self.reload.lock().expect("reload lock") = ReloadStatus {
                    successful: true,
                    success_time: SystemTime::now(),
                };
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(file = %self.config_file.display(), error = %message, "reload failed, keeping the last good authority");
                self.reload.lock().expect("reload lock").successful = false;
                Err(message)
            }
        }
    }
}
