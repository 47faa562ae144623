//! Finding the external programs that the tests run.
//!
//! A missing program is a broken test machine, not a reason to skip: every lookup here panics
//! with a message that says how to install it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where to look when `PATH` is unset.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `program` and returns its path, or panics with `"{program} not found: {install_hint}"`.
///
/// A `program` containing a `/` is taken as a path and must be an executable file; any other
/// name is searched for in the directories of `PATH` (or a standard list when `PATH` is unset).
#[track_caller]
pub fn require_tool(program: &str, install_hint: &str) -> PathBuf {
    match find_tool(program) {
        Some(path) => path,
        None => panic!("{program} not found: {install_hint}"),
    }
}

/// Finds `program` like [`require_tool`], returning `None` when it is absent.
pub fn find_tool(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = Path::new(program);
        return is_executable(path).then(|| path.to_path_buf());
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&search)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_by_name_and_by_path() {
        assert!(find_tool("sh").is_some());
        assert_eq!(find_tool("/bin/sh"), Some(PathBuf::from("/bin/sh")));
    }

    #[test]
    #[should_panic(expected = "no-such-tool-xyz not found: install it somehow")]
    fn missing_tool_panics_with_the_hint() {
        require_tool("no-such-tool-xyz", "install it somehow");
    }
}
