//! fleetcheck-core: the authority model, inventory, collectors and comparison.
//!
//! The exporter and the remediator both build on this crate so that a pair
//! (entity, host) is collected and judged the same way everywhere. There is no
//! HTTP server here; only the collectors talk to hosts.

pub mod authority;
pub mod collect;
pub mod compare;
pub mod duration;

pub use authority::{Authority, Entity, Host, Kind, LoadError, Problem, Repair, Transport};
pub use collect::{Collector, CollectorOptions, Observation, Observed, Snapshot};
pub use compare::{PairStatus, State};
