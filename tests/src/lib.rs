//! Test support for fleetcheck: the SSH test fleet and helpers that run the real binaries.
//!
//! Nothing here is shipped; the integration tests under `tests/tests/` use it.

pub mod bins;
pub mod daemon;
pub mod dashboards;
pub mod deploy_double;
pub mod fleet;
pub mod http;
pub mod prom;
pub mod stack;
pub mod tools;

pub use tools::require_tool;
