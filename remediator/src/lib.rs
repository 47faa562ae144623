//! fleetcheck-remediator: repairs drift that Alertmanager reports, safely.
//!
//! Alertmanager posts `FleetcheckEntityInconsistent` alerts to
//! [`server`]; [`engine`] validates them against the authority and writes
//! each to the durable [`journal`] before answering; its scheduler then takes
//! every job through the gates, runs the entity's [`executor`] and verifies
//! the pair with the core collector. [`config`] is `remediator.yaml`.

pub mod auth;
pub mod config;
pub mod deploy;
pub mod engine;
pub mod executor;
pub mod journal;
pub mod metrics;
pub mod server;
pub mod webhook;
