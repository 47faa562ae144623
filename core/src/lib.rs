//! fleetcheck-core (being written).
