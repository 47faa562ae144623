//! fleetcheck-exporter (being written).
fn main() {}
