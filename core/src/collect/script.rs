//! The batched POSIX sh script that checks all of one host's entities in one
//! session, and the parser for its framed output.
//!
//! Files are hashed by one `md5sum` run over all of the host's files; every
//! script (collect or version) runs in the background with its own timeout and
//! its own capped output files. Once all are done the script prints, behind a
//! random per-run boundary, an index of results, the byte sizes of the output
//! files (one `wc -c`) and then the files themselves (one `cat`). Only
//! builtins and those two programs write outside the payload, and the payload
//! is length-delimited, so nothing a collect script prints can forge or shift
//! another item's result. The whole framing costs two process starts per host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Cap on a version script's stdout and on captured stderr.
pub const SMALL_CAP: u64 = 4096;

/// One thing to run on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Hash the file at `path` on the host; report `missing` if absent.
    HashFile { path: String },
    /// Run `script` and capture its stdout (hashed by the caller). When `path`
    /// is set, report `missing` if it does not exist instead of running.
    Output {
        script: String,
        path: Option<String>,
    },
}

/// A probe with its identity and limits. Ids are short tokens of
/// `[0-9a-z]` chosen by the caller, unique within one run.
#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub entity: String,
    pub probe: Probe,
    pub timeout: Duration,
    pub cap: u64,
}

/// What the host reported for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemResult {
    Missing,
    /// A file's MD5 as printed by the hashing tool, lowercase hex.
    Hashed(String),
    /// A script ran; `rc` is its exit status (137 when killed by the timeout,
    /// 153 when it wrote past its output cap).
    Ran {
        rc: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// A file could not be hashed.
    Failed(String),
}

/// Exit status of a check killed by `timeout -s KILL`.
pub const RC_TIMEOUT: i32 = 137;
/// Exit status of a check killed for writing past its file size limit.
pub const RC_TOO_LARGE: i32 = 153;

/// Quotes `s` for POSIX sh: the result is one word with no expansion.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// A fresh random boundary.
pub fn new_boundary() -> String {
    format!("fleetcheck-{:032x}", rand::random::<u128>())
}

/// What every script defines: whether `timeout` exists, and the hashing function.
const PRELUDE: &str = r#"if command -v timeout >/dev/null 2>&1; then fc_to=1; else fc_to=; fi
fc_hash() { # fc_hash SECONDS FILE...: "MD5  FILE" lines
  fc_s=$1; shift
  if command -v md5sum >/dev/null 2>&1; then
    if [ -n "$fc_to" ]; then timeout -s KILL "$fc_s" md5sum -- "$@"; else md5sum -- "$@"; fi
  else
    fc_rc=0
    for fc_f in "$@"; do
      if command -v md5 >/dev/null 2>&1; then fc_h=$(md5 -q <"$fc_f") || { fc_rc=1; continue; }
      elif command -v openssl >/dev/null 2>&1; then fc_h=$(openssl md5 -r <"$fc_f") || { fc_rc=1; continue; }
      else echo "no md5sum, md5 or openssl on the host" >&2; return 127; fi
      printf '%s  %s\n' "${fc_h%% *}" "$fc_f"
    done
    return $fc_rc
  fi
}
"#;

/// What scripts that run checks in the background add: a private directory
/// for their outputs, removed on exit.
const WORKSPACE: &str = r#"umask 077
fc_t=$(mktemp -d 2>/dev/null) || { fc_t=/tmp/fleetcheck.$$; mkdir "$fc_t" || exit 70; }
trap 'rm -rf "$fc_t"' EXIT
trap 'exit 143' HUP INT TERM
fc_run() { # fc_run SECONDS SCRIPT: SCRIPT in sh, killed with its children after SECONDS
  if [ -n "$fc_to" ]; then timeout -s KILL "$1" sh -c "$2"; else sh -c "$2"; fi
}
fc_rc() { if [ -f "$fc_t/$1.rc" ]; then read fc_r <"$fc_t/$1.rc"; else fc_r=255; fi; }
"#;

/// True when `md5sum` prints `path` verbatim (it escapes backslashes and
/// line breaks); other paths are hashed one by one through stdin.
fn plain_path(path: &str) -> bool {
    !path.contains(['\\', '\n', '\r'])
}

/// Builds the script for `items`. Nothing reads the script's stdin but the
/// shell: every check gets `/dev/null`, so none can swallow the script.
pub fn build(boundary: &str, items: &[Item]) -> String {
    let mut s = String::with_capacity(2048 + items.len() * 256);
    let _ = writeln!(s, "fc_b={}", sh_quote(boundary));
    s.push_str(PRELUDE);
    if items
        .iter()
        .all(|i| matches!(&i.probe, Probe::HashFile { path } if plain_path(path)))
    {
        build_files_only(&mut s, items);
        return s;
    }
    s.push_str(WORKSPACE);
    let mut files: Vec<String> = Vec::new();
    for item in items {
        let id = &item.id;
        let _ = writeln!(s, ": >\"$fc_t/{id}.o\"; : >\"$fc_t/{id}.e\"");
        files.push(format!("{id}.o"));
        files.push(format!("{id}.e"));
    }
    s.push_str(": >\"$fc_t/h.o\"; : >\"$fc_t/h.e\"\nset --\n");
    files.push("h.o".into());
    files.push("h.e".into());

    // Files: existence is tested with a builtin, then one hashing run.
    let mut hash_timeout = Duration::ZERO;
    for item in items {
        if let Probe::HashFile { path } = &item.probe {
            let (id, q) = (&item.id, sh_quote(path));
            if plain_path(path) {
                let _ = writeln!(
                    s,
                    "if [ -e {q} ]; then set -- \"$@\" {q}; else : >\"$fc_t/{id}.m\"; fi"
                );
                hash_timeout = hash_timeout.max(item.timeout);
            } else {
                // Hashed alone through stdin so its name never has to be parsed.
                let script = format!("md5sum <{q} || openssl md5 -r <{q} || md5 -q <{q}");
                let _ = writeln!(
                    s,
                    "if [ -e {q} ]; then ( fc_run {secs} {script} </dev/null >\"$fc_t/{id}.o\" 2>\"$fc_t/{id}.e\"; echo $? >\"$fc_t/{id}.rc\" ) & else : >\"$fc_t/{id}.m\"; fi",
                    secs = item.timeout.as_secs().max(1),
                    script = sh_quote(&script),
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "if [ $# -gt 0 ]; then ( fc_hash {} \"$@\" </dev/null >\"$fc_t/h.o\" 2>\"$fc_t/h.e\"; echo $? >\"$fc_t/h.rc\" ) & fi",
        hash_timeout.as_secs().max(1)
    );

    // Scripts: each in the background, output capped by the file size limit
    // (512-byte blocks), so a runaway script is stopped instead of filling a disk.
    for item in items {
        let Probe::Output { script, path } = &item.probe else {
            continue;
        };
        let id = &item.id;
        let _ = writeln!(
            s,
            "FLEETCHECK_ENTITY={} FLEETCHECK_PATH={}; export FLEETCHECK_ENTITY FLEETCHECK_PATH",
            sh_quote(&item.entity),
            sh_quote(path.as_deref().unwrap_or(""))
        );
        let job = format!(
            "( ulimit -f {blocks} 2>/dev/null; fc_run {secs} {script} </dev/null >\"$fc_t/{id}.o\" 2>\"$fc_t/{id}.e\"; echo $? >\"$fc_t/{id}.rc\" ) &",
            blocks = item.cap / 512 + 2,
            secs = item.timeout.as_secs().max(1),
            script = sh_quote(script),
        );
        match path {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "if [ -e {} ]; then {job} else : >\"$fc_t/{id}.m\"; fi",
                    sh_quote(p)
                );
            }
            None => {
                let _ = writeln!(s, "{job}");
            }
        }
    }
    s.push_str("wait\nprintf '%s index\\n' \"$fc_b\"\n");
    for item in items {
        let id = &item.id;
        let batched = matches!(&item.probe, Probe::HashFile { path } if plain_path(path));
        let present = if batched {
            format!("printf '%s {id} hashed\\n' \"$fc_b\"")
        } else {
            format!("fc_rc {id}; printf '%s {id} ran %s\\n' \"$fc_b\" \"$fc_r\"")
        };
        let _ = writeln!(
            s,
            "if [ -f \"$fc_t/{id}.m\" ]; then printf '%s {id} missing\\n' \"$fc_b\"; else {present}; fi"
        );
    }
    let list = files.join(" ");
    let _ = writeln!(s, "fc_rc h; printf '%s h %s\\n' \"$fc_b\" \"$fc_r\"");
    let _ = writeln!(
        s,
        "printf '%s sizes\\n' \"$fc_b\"\ncd \"$fc_t\" && wc -c -- {list}"
    );
    let _ = writeln!(
        s,
        "printf '%s data\\n' \"$fc_b\"\ncat -- {list}\nprintf '%s end\\n' \"$fc_b\""
    );
    s
}

/// The common case, a host with only files to hash: no temporary files, no
/// background jobs, one `md5sum` (under `timeout`) and builtins. Its output and
/// errors come back in one `hash` section: md5sum prints only digests and the
/// authority's own paths, never file contents, so the section needs no lengths.
fn build_files_only(s: &mut String, items: &[Item]) {
    s.push_str("printf '%s index\\n' \"$fc_b\"\nset --\n");
    let mut timeout = Duration::ZERO;
    for item in items {
        if let Probe::HashFile { path } = &item.probe {
            let (id, q) = (&item.id, sh_quote(path));
            let _ = writeln!(
                s,
                "if [ -e {q} ]; then set -- \"$@\" {q}; printf '%s {id} hashed\\n' \"$fc_b\"; else printf '%s {id} missing\\n' \"$fc_b\"; fi"
            );
            timeout = timeout.max(item.timeout);
        }
    }
    let _ = writeln!(
        s,
        "printf '%s hash\\n' \"$fc_b\"\nif [ $# -gt 0 ]; then fc_hash {} \"$@\" </dev/null 2>&1; fc_r=$?; else fc_r=0; fi",
        timeout.as_secs().max(1)
    );
    s.push_str("printf '%s h %s\\n%s end\\n' \"$fc_b\" \"$fc_r\" \"$fc_b\"\n");
}

/// Why the framed output could not be read completely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the host script's output is malformed at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("the host script ended before reporting every check")]
    Truncated,
}

struct Reader<'a> {
    out: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn line(&mut self) -> Result<(usize, &'a str), FrameError> {
        let start = self.pos;
        let nl = self.out[start..]
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(FrameError::Truncated)?;
        self.pos = start + nl + 1;
        let line = std::str::from_utf8(&self.out[start..start + nl]).map_err(|_| {
            FrameError::Malformed {
                offset: start,
                reason: "line is not UTF-8".into(),
            }
        })?;
        Ok((start, line))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.out.len() < self.pos + n {
            return Err(FrameError::Truncated);
        }
        let s = &self.out[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

fn malformed(offset: usize, reason: &str) -> FrameError {
    FrameError::Malformed {
        offset,
        reason: reason.to_string(),
    }
}

/// Parses the framed output of [`build`] for `items`; results come in the
/// order of `items`.
pub fn parse(boundary: &str, items: &[Item], out: &[u8]) -> Result<Vec<ItemResult>, FrameError> {
    let mut r = Reader { out, pos: 0 };
    let marker = |r: &mut Reader<'_>, word: &str| -> Result<(), FrameError> {
        let (at, line) = r.line()?;
        if line
            .strip_prefix(boundary)
            .and_then(|l| l.strip_prefix(' '))
            == Some(word)
        {
            Ok(())
        } else {
            Err(malformed(at, &format!("expected the {word} marker")))
        }
    };
    // Anything before the index (a noisy login banner, say) is skipped, but
    // only up to the first line that carries the boundary.
    loop {
        let (at, line) = r.line()?;
        if line == format!("{boundary} index") {
            break;
        }
        if line.contains(boundary) {
            return Err(malformed(at, "expected the index marker"));
        }
    }
    let mut status: BTreeMap<&str, (&str, i32)> = BTreeMap::new();
    let mut hash_rc = 255;
    loop {
        let (at, line) = r.line()?;
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.first() != Some(&boundary) {
            return Err(malformed(at, "expected an index line"));
        }
        match fields.as_slice() {
            [_, "sizes"] => break,
            [_, "hash"] => {
                let (text, rc) = hash_section(&mut r, boundary)?;
                marker(&mut r, "end")?;
                let hashes = hash_lines(text.as_bytes());
                return results(items, &status, &hashes, rc, &text, &BTreeMap::new());
            }
            [_, "h", rc] => hash_rc = rc.parse().map_err(|_| malformed(at, "bad exit status"))?,
            [_, id, "missing"] => {
                status.insert(id, ("missing", 0));
            }
            [_, id, "hashed"] => {
                status.insert(id, ("hashed", 0));
            }
            [_, id, "ran", rc] => {
                let rc = rc.parse().map_err(|_| malformed(at, "bad exit status"))?;
                status.insert(id, ("ran", rc));
            }
            _ => return Err(malformed(at, "unknown index line")),
        }
    }
    let mut sizes: Vec<(&str, usize)> = Vec::new();
    loop {
        let (at, line) = r.line()?;
        if line == format!("{boundary} data") {
            break;
        }
        let mut words = line.split_whitespace();
        let (Some(n), Some(name), None) = (words.next(), words.next(), words.next()) else {
            return Err(malformed(at, "expected a size line"));
        };
        if name == "total" {
            continue;
        }
        sizes.push((name, n.parse().map_err(|_| malformed(at, "bad size"))?));
    }
    let mut files: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (name, n) in &sizes {
        files.insert(name, r.take(*n)?);
    }
    marker(&mut r, "end")?;

    let file = |name: &str| files.get(name).copied().unwrap_or_default();
    let hashes = hash_lines(file("h.o"));
    let hash_errors = String::from_utf8_lossy(file("h.e")).into_owned();
    results(items, &status, &hashes, hash_rc, &hash_errors, &files)
}

/// Reads the lines of a `hash` section up to its `BOUNDARY h RC` line.
fn hash_section(r: &mut Reader<'_>, boundary: &str) -> Result<(String, i32), FrameError> {
    let mut text = String::new();
    loop {
        let (at, line) = r.line()?;
        if let Some(rc) = line
            .strip_prefix(boundary)
            .and_then(|l| l.strip_prefix(" h "))
        {
            let rc = rc.parse().map_err(|_| malformed(at, "bad exit status"))?;
            return Ok((text, rc));
        }
        text.push_str(line);
        text.push('\n');
    }
}

/// Assembles each item's result from the index, the hashing run and the
/// per-item output files.
fn results(
    items: &[Item],
    status: &BTreeMap<&str, (&str, i32)>,
    hashes: &BTreeMap<String, String>,
    hash_rc: i32,
    hash_errors: &str,
    files: &BTreeMap<&str, &[u8]>,
) -> Result<Vec<ItemResult>, FrameError> {
    let file = |name: String| files.get(name.as_str()).copied().unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let id = item.id.as_str();
            let Some((kind, rc)) = status.get(id) else {
                return Err(FrameError::Truncated);
            };
            Ok(match (*kind, &item.probe) {
                ("missing", _) => ItemResult::Missing,
                ("hashed", Probe::HashFile { path }) => match hashes.get(path.as_str()) {
                    Some(md5) => ItemResult::Hashed(md5.clone()),
                    None => {
                        ItemResult::Failed(hash_failure(path, hash_rc, hash_errors, item.timeout))
                    }
                },
                ("ran", Probe::HashFile { path }) => {
                    match md5_from_tool_output(file(format!("{id}.o"))) {
                        Some(md5) if *rc == 0 => ItemResult::Hashed(md5),
                        _ => ItemResult::Failed(hash_failure(
                            path,
                            *rc,
                            &String::from_utf8_lossy(file(format!("{id}.e"))),
                            item.timeout,
                        )),
                    }
                }
                ("ran", Probe::Output { .. }) => ItemResult::Ran {
                    rc: *rc,
                    stdout: file(format!("{id}.o")).to_vec(),
                    stderr: file(format!("{id}.e"))
                        .iter()
                        .copied()
                        .take(SMALL_CAP as usize)
                        .collect(),
                },
                _ => {
                    return Err(malformed(
                        0,
                        &format!("item {id} has a result of the wrong kind"),
                    ))
                }
            })
        })
        .collect()
}

/// `MD5  PATH` lines (md5sum's format, `*` marking binary mode) by path.
fn hash_lines(out: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(out);
    text.lines()
        .filter_map(|l| {
            let (md5, rest) = l.split_at_checked(32)?;
            let path = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))?;
            md5.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| (path.to_string(), md5.to_ascii_lowercase()))
        })
        .collect()
}

fn hash_failure(path: &str, rc: i32, stderr: &str, timeout: Duration) -> String {
    if rc == RC_TIMEOUT {
        return format!(
            "hashing timed out after {}",
            crate::duration::format(timeout)
        );
    }
    let relevant: Vec<&str> = stderr.lines().filter(|l| l.contains(path)).collect();
    match (relevant.is_empty(), stderr.trim().is_empty()) {
        (false, _) => relevant.join("; "),
        (true, false) => stderr.trim().to_string(),
        (true, true) => format!("hashing failed with status {rc}"),
    }
}

/// The first 32-hex-digit word of a hashing tool's output, lowercased.
pub fn md5_from_tool_output(stdout: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(stdout).ok()?;
    let word = text.split_whitespace().next()?;
    (word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| word.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().stdout
    }

    fn item(id: &str, probe: Probe) -> Item {
        Item {
            id: id.into(),
            entity: format!("e{id}"),
            probe,
            timeout: Duration::from_secs(5),
            cap: 64,
        }
    }

    fn output(script: &str) -> Probe {
        Probe::Output {
            script: script.into(),
            path: None,
        }
    }

    fn run(items: &[Item]) -> Vec<ItemResult> {
        let b = new_boundary();
        let out = run_sh(&build(&b, items));
        parse(&b, items, &out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn quoting_survives_metacharacters() {
        let nasty = "a'b\"c$(touch /tmp/x)`d`;e\\f\ng";
        let out = run_sh(&format!("printf %s {}", sh_quote(nasty)));
        assert_eq!(out, nasty.as_bytes());
    }

    #[test]
    fn forged_frames_in_output_cannot_shift_results() {
        // A collect script that knows the framing (even the boundary) and prints a
        // whole fake index, sizes and data section.
        let boundary = new_boundary();
        let fake = format!(
            "{b} index\n{b} 1 ran 0\n{b} h 0\n{b} sizes\n3 1.o\n{b} data\nabc{b} end\n",
            b = boundary
        );
        let items = vec![
            item("0", output(&format!("printf %s {}", sh_quote(&fake)))),
            item("1", output("printf real")),
        ];
        let out = run_sh(&build(&boundary, &items));
        let results = parse(&boundary, &items, &out).unwrap();
        assert_eq!(
            results[1],
            ItemResult::Ran {
                rc: 0,
                stdout: b"real".to_vec(),
                stderr: vec![]
            }
        );
        assert_eq!(
            results[0],
            ItemResult::Ran {
                rc: 0,
                stdout: fake.into_bytes(),
                stderr: vec![]
            }
        );
    }

    #[test]
    fn a_check_reading_stdin_cannot_swallow_the_script() {
        let results = run(&[item("0", output("cat")), item("1", output("printf after"))]);
        assert_eq!(
            results[0],
            ItemResult::Ran {
                rc: 0,
                stdout: vec![],
                stderr: vec![]
            }
        );
        assert_eq!(
            results[1],
            ItemResult::Ran {
                rc: 0,
                stdout: b"after".to_vec(),
                stderr: vec![]
            }
        );
    }

    #[test]
    fn files_missing_files_odd_names_exit_codes_caps_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello\n").unwrap();
        let odd = dir.path().join("we\\ird\nname 'q'");
        std::fs::write(&odd, b"hello\n").unwrap();
        let mut slow = item("3", output("sleep 30; echo late"));
        slow.timeout = Duration::from_secs(1);
        let path = |p: &std::path::Path| p.display().to_string();
        let items = vec![
            item("0", Probe::HashFile { path: path(&file) }),
            item(
                "1",
                Probe::HashFile {
                    path: path(&dir.path().join("nope")),
                },
            ),
            item("2", output("echo oops >&2; exit 3")),
            slow,
            item("4", output("yes | head -c 100000")),
            item("5", Probe::HashFile { path: path(&odd) }),
            item(
                "6",
                Probe::Output {
                    script: "cat \"$FLEETCHECK_PATH\"".into(),
                    path: Some(path(&file)),
                },
            ),
            item(
                "7",
                Probe::Output {
                    script: "echo never".into(),
                    path: Some(path(&dir.path().join("nope"))),
                },
            ),
            item(
                "8",
                Probe::HashFile {
                    path: path(dir.path()),
                },
            ),
        ];
        let started = std::time::Instant::now();
        let results = run(&items);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the timeout did not fire"
        );
        let hello = "b1946ac92492d2347c6235b4d2611184".to_string();
        assert_eq!(results[0], ItemResult::Hashed(hello.clone()));
        assert_eq!(results[1], ItemResult::Missing);
        assert_eq!(
            results[2],
            ItemResult::Ran {
                rc: 3,
                stdout: vec![],
                stderr: b"oops\n".to_vec()
            }
        );
        assert!(
            matches!(&results[3], ItemResult::Ran { rc: RC_TIMEOUT, .. }),
            "{:?}",
            results[3]
        );
        // Stopped by the file size limit, past the 64-byte cap.
        assert!(
            matches!(&results[4], ItemResult::Ran { stdout, .. } if stdout.len() > 64 && stdout.len() < 100_000),
            "{:?}",
            results[4]
        );
        assert_eq!(results[5], ItemResult::Hashed(hello.clone()));
        assert_eq!(
            results[6],
            ItemResult::Ran {
                rc: 0,
                stdout: b"hello\n".to_vec(),
                stderr: vec![]
            }
        );
        assert_eq!(results[7], ItemResult::Missing);
        assert!(
            matches!(&results[8], ItemResult::Failed(e) if e.contains("Is a directory")),
            "{:?}",
            results[8]
        );
    }

    #[test]
    fn hosts_with_only_files_take_the_fast_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello\n").unwrap();
        let path = |p: &std::path::Path| p.display().to_string();
        let items = vec![
            item("0", Probe::HashFile { path: path(&file) }),
            item(
                "1",
                Probe::HashFile {
                    path: path(&dir.path().join("nope")),
                },
            ),
            item(
                "2",
                Probe::HashFile {
                    path: path(dir.path()),
                },
            ),
            item("3", Probe::HashFile { path: path(&file) }),
        ];
        let script = build("B", &items);
        assert!(
            !script.contains("mktemp"),
            "the fast path needs no temporary files:\n{script}"
        );
        let results = run(&items);
        let hello = ItemResult::Hashed("b1946ac92492d2347c6235b4d2611184".into());
        assert_eq!(results[0], hello);
        assert_eq!(results[1], ItemResult::Missing);
        assert!(
            matches!(&results[2], ItemResult::Failed(e) if e.contains("Is a directory")),
            "{:?}",
            results[2]
        );
        assert_eq!(results[3], hello);
        // Nothing but files missing: no hashing run at all.
        assert_eq!(run(&items[1..2]), vec![ItemResult::Missing]);
    }

    #[test]
    fn parser_rejects_truncated_and_foreign_output() {
        let items = vec![item("0", output("true"))];
        let b = "B";
        let ok = b"banner\nB index\nB 0 ran 2\nB h 255\nB sizes\n 2 0.o\n 1 0.e\n 3 total\nB data\nhiXB end\n";
        assert_eq!(
            parse(b, &items, ok).unwrap(),
            vec![ItemResult::Ran {
                rc: 2,
                stdout: b"hi".to_vec(),
                stderr: b"X".to_vec()
            }]
        );
        for cut in [10, 20, 40, ok.len() - 3] {
            assert!(parse(b, &items, &ok[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            parse(b, &items, b"B junk\n"),
            Err(FrameError::Malformed { .. })
        ));
        let unreported = b"B index\nB h 0\nB sizes\nB data\nB end\n";
        assert_eq!(parse(b, &items, unreported), Err(FrameError::Truncated));
        let short = b"B index\nB 0 ran 0\nB sizes\n 5 0.o\nB data\nabB end\n";
        assert!(parse(b, &items, short).is_err());
    }
}
