//! Finding the workspace's own binaries (`fleetcheck-exporter`, `fleetcheck-remediator`) from a
//! test of another crate.
//!
//! Cargo gives `CARGO_BIN_EXE_*` only to the tests of the crate that owns a binary; the
//! end-to-end tests in this crate run both binaries, so they find them next to the test
//! executable instead: a test runs as `target/<profile>/deps/<test>-<hash>`, and the binaries
//! of the same build are in `target/<profile>/`. `cargo test` does not build them for this
//! crate, so `cargo build --workspace --bins` must run first (scripts/test does).

use std::path::{Path, PathBuf};

/// The path of the workspace binary `name` built with the running test's profile, such as
/// `target/debug/fleetcheck-exporter`.
///
/// Panics with how to build it when it is missing.
#[track_caller]
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()));
    let bin = dir.join(name);
    if !bin.is_file() {
        panic!(
            "{name} not built ({} is missing): run `cargo build --workspace --bins` \
             (scripts/test does this)",
            bin.display()
        );
    }
    bin
}

#[cfg(test)]
mod tests {
    use super::path;

    #[test]
    #[should_panic(expected = "no-such-binary not built")]
    fn a_missing_binary_says_how_to_build_it() {
        path("no-such-binary");
    }
}
