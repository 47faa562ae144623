//! Background collection: one cycle per `--collect.interval`, and one right
//! after a successful reload. Scrapes never trigger collection.

use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use fleetcheck_core::{Collector, State};

use crate::state::Shared;

/// Runs cycles until `shutdown` fires. A cycle in progress is abandoned on
/// shutdown; its sessions are closed by the caller.
pub async fn run(
    shared: Arc<Shared>,
    collector: Arc<Collector>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        let authority = shared.authority();
        let cycle = collector.collect(&authority);
        let snapshot = tokio::select! {
            s = cycle => s,
            _ = shutdown.wait() => return,
        };
        let inconsistent = snapshot
            .pairs
            .iter()
            .filter(|p| p.state != State::Consistent)
            .count();
        let hosts_down = snapshot.hosts.iter().filter(|h| !h.up).count();
        tracing::info!(
            duration_seconds = snapshot.duration.as_secs_f64(),
            pairs = snapshot.pairs.len(),
            inconsistent,
            hosts = snapshot.hosts.len(),
            hosts_down,
            "collection cycle done"
        );
        for h in snapshot.hosts.iter().filter(|h| !h.up) {
            tracing::warn!(host = %h.name, error = h.error.as_deref().unwrap_or("no answer"), "host did not answer");
        }
        if snapshot.duration > interval {
            tracing::warn!(
                duration_seconds = snapshot.duration.as_secs_f64(),
                interval_seconds = interval.as_secs_f64(),
                "collection cycle took longer than the interval; raise --collect.concurrency or --collect.interval"
            );
        }
        let wait = interval.saturating_sub(snapshot.duration);
        shared.publish(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake.notified() => {}
            _ = shutdown.wait() => return,
        }
    }
}
