//! A shutdown signal many tasks can wait on.

use tokio::sync::watch;

/// The sending half: `trigger` tells every [`Shutdown`] to stop.
pub struct Trigger(watch::Sender<bool>);

/// The receiving half, cloned into each task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (immediately if it already was).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
