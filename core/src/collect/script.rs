//! The batched POSIX sh script that checks all of one host's entities in one
//! session, and the parser for its framed output.
//!
//! Every check runs in the background with its own timeout, its stdout and
//! stderr going to private files. Once all are done the script prints, per
//! item, a header line `BOUNDARY ID STATUS RC OUT_LEN ERR_LEN` followed by
//! exactly that many bytes. The boundary is random per run and the payload is
//! length-delimited, so nothing a collect script prints can forge or shift
//! another item's result.

use std::fmt::Write as _;
use std::time::Duration;

/// Cap on captured stderr and on a version script's stdout.
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

/// A probe with its identity and limits.
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
    /// The item ran; `rc` is its exit status (137 when killed by the timeout).
    Ran {
        rc: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
}

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

/// A fresh random boundary: 32 hex digits.
pub fn new_boundary() -> String {
    format!("fleetcheck-{:032x}", rand::random::<u128>())
}

const PRELUDE: &str = r#"umask 077
fc_t=$(mktemp -d 2>/dev/null) || { fc_t=/tmp/fleetcheck.$$; mkdir "$fc_t" || exit 70; }
trap 'rm -rf "$fc_t"' EXIT
trap 'exit 143' HUP INT TERM
if command -v timeout >/dev/null 2>&1; then fc_to=1; else fc_to=; fi
fc_run() { # fc_run SECONDS SCRIPT: run SCRIPT with sh, killed with its children after SECONDS
  if [ -n "$fc_to" ]; then timeout -s KILL "$1" sh -c "$2"; else sh -c "$2"; fi
}
fc_hash='if command -v md5sum >/dev/null 2>&1; then md5sum <"$FLEETCHECK_PATH"
elif command -v md5 >/dev/null 2>&1; then md5 -q <"$FLEETCHECK_PATH"
elif command -v openssl >/dev/null 2>&1; then openssl md5 -r <"$FLEETCHECK_PATH"
else echo "no md5sum, md5 or openssl on the host" >&2; exit 127; fi'
fc_emit() { # fc_emit ID STATUS
  head -c 4096 "$fc_t/$1.e" >"$fc_t/$1.E" 2>/dev/null || : >"$fc_t/$1.E"
  [ -f "$fc_t/$1.o" ] || : >"$fc_t/$1.o"
  printf '%s %s %s %s %s %s\n' "$fc_b" "$1" "$2" "$(cat "$fc_t/$1.rc" 2>/dev/null || echo 255)" \
    $(wc -c <"$fc_t/$1.o") $(wc -c <"$fc_t/$1.E")
  cat "$fc_t/$1.o" "$fc_t/$1.E"
}
"#;

/// Builds the script for `items`. It reads nothing from stdin after itself:
/// every check gets `/dev/null` as stdin, so none can swallow the script.
pub fn build(boundary: &str, items: &[Item]) -> String {
    let mut s = String::with_capacity(2048 + items.len() * 256);
    let _ = writeln!(s, "fc_b={}", sh_quote(boundary));
    s.push_str(PRELUDE);
    for item in items {
        let id = &item.id;
        let secs = item.timeout.as_secs().max(1);
        let (path, script) = match &item.probe {
            Probe::HashFile { path } => (Some(path.as_str()), None),
            Probe::Output { script, path } => (path.as_deref(), Some(script.as_str())),
        };
        let _ = writeln!(
            s,
            "FLEETCHECK_ENTITY={} FLEETCHECK_PATH={}; export FLEETCHECK_ENTITY FLEETCHECK_PATH",
            sh_quote(&item.entity),
            sh_quote(path.unwrap_or(""))
        );
        if path.is_some() {
            let _ = writeln!(
                s,
                "if [ ! -e \"$FLEETCHECK_PATH\" ]; then echo missing >\"$fc_t/{id}.st\"; else"
            );
        }
        let body = match script {
            None => "\"$fc_hash\"".to_string(),
            Some(script) => sh_quote(script),
        };
        // The subshell records the check's own exit status; `head` caps what
        // is kept (one byte over the cap tells the parser it was exceeded).
        let _ = writeln!(
            s,
            "{{ {{ fc_run {secs} {body} </dev/null 2>\"$fc_t/{id}.e\"; echo $? >\"$fc_t/{id}.rc\"; }} | head -c {cap} >\"$fc_t/{id}.o\"; }} &",
            cap = item.cap + 1
        );
        if path.is_some() {
            s.push_str("fi\n");
        }
    }
    s.push_str("wait\n");
    for item in items {
        let id = &item.id;
        let _ = writeln!(
            s,
            "if [ -f \"$fc_t/{id}.st\" ]; then echo 0 >\"$fc_t/{id}.rc\"; fc_emit {id} missing; else fc_emit {id} ran; fi"
        );
    }
    s.push_str("printf '%s end\\n' \"$fc_b\"\n");
    s
}

/// Why the framed output could not be read completely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the host script's output is malformed at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("the host script ended before reporting every check")]
    Truncated,
}

/// Parses the framed output of [`build`]. Results are returned in the order
/// of `ids`; an item the host never reported is an error for the whole run.
pub fn parse(boundary: &str, ids: &[String], out: &[u8]) -> Result<Vec<ItemResult>, FrameError> {
    let mut results: Vec<Option<ItemResult>> = vec![None; ids.len()];
    let mut pos = 0;
    let malformed = |offset: usize, reason: &str| FrameError::Malformed {
        offset,
        reason: reason.to_string(),
    };
    loop {
        let Some(nl) = out[pos..].iter().position(|b| *b == b'\n') else {
            return Err(FrameError::Truncated);
        };
        let line = std::str::from_utf8(&out[pos..pos + nl])
            .map_err(|_| malformed(pos, "header is not UTF-8"))?;
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.first() != Some(&boundary) {
            return Err(malformed(pos, "expected a header line"));
        }
        let header_start = pos;
        pos += nl + 1;
        if fields.len() == 2 && fields[1] == "end" {
            break;
        }
        let [_, id, status, rc, olen, elen] = fields.as_slice() else {
            return Err(malformed(
                header_start,
                "header has the wrong number of fields",
            ));
        };
        let index = ids
            .iter()
            .position(|i| i == id)
            .ok_or_else(|| malformed(header_start, "unknown item id"))?;
        if results[index].is_some() {
            return Err(malformed(header_start, "item reported twice"));
        }
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| malformed(header_start, "bad length"))
        };
        let (olen, elen) = (num(olen)?, num(elen)?);
        let rc: i32 = rc
            .parse()
            .map_err(|_| malformed(header_start, "bad exit status"))?;
        if out.len() < pos + olen + elen {
            return Err(FrameError::Truncated);
        }
        let stdout = out[pos..pos + olen].to_vec();
        let stderr = out[pos + olen..pos + olen + elen].to_vec();
        pos += olen + elen;
        results[index] = Some(match *status {
            "missing" => ItemResult::Missing,
            "ran" => ItemResult::Ran { rc, stdout, stderr },
            _ => return Err(malformed(header_start, "unknown status")),
        });
    }
    results
        .into_iter()
        .map(|r| r.ok_or(FrameError::Truncated))
        .collect()
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

    #[test]
    fn quoting_survives_metacharacters() {
        let nasty = "a'b\"c$(touch /tmp/x)`d`;e\\f\ng";
        let out = run_sh(&format!("printf %s {}", sh_quote(nasty)));
        assert_eq!(out, nasty.as_bytes());
    }

    #[test]
    fn forged_headers_in_output_cannot_shift_results() {
        let boundary = new_boundary();
        // The first check prints something shaped like a header for item 1,
        // even with the real boundary (as if it had guessed it).
        let forged = format!("printf '%s 1 ran 0 3 0\\nabc\\n' {}", sh_quote(&boundary));
        let items = vec![item("0", output(&forged)), item("1", output("printf real"))];
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let out = run_sh(&build(&boundary, &items));
        let results = parse(&boundary, &ids, &out).unwrap();
        match &results[1] {
            ItemResult::Ran { stdout, rc: 0, .. } => assert_eq!(stdout, b"real"),
            other => panic!("item 1 was forged: {other:?}"),
        }
        match &results[0] {
            ItemResult::Ran { stdout, .. } => assert!(stdout.starts_with(boundary.as_bytes())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_check_reading_stdin_cannot_swallow_the_script() {
        let items = vec![item("0", output("cat")), item("1", output("printf after"))];
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let b = new_boundary();
        let results = parse(&b, &ids, &run_sh(&build(&b, &items))).unwrap();
        assert_eq!(
            results[0],
            ItemResult::Ran {
                rc: 0,
                stdout: vec![],
                stderr: vec![]
            }
        );
        assert!(matches!(&results[1], ItemResult::Ran { stdout, .. } if stdout == b"after"));
    }

    #[test]
    fn missing_files_exit_codes_caps_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello\n").unwrap();
        let mut slow = item("3", output("sleep 30; echo late"));
        slow.timeout = Duration::from_secs(1);
        let items = vec![
            item(
                "0",
                Probe::HashFile {
                    path: file.display().to_string(),
                },
            ),
            item(
                "1",
                Probe::HashFile {
                    path: dir.path().join("nope").display().to_string(),
                },
            ),
            item("2", output("echo oops >&2; exit 3")),
            slow,
            item("4", output("yes | head -c 1000")),
        ];
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let b = new_boundary();
        let started = std::time::Instant::now();
        let results = parse(&b, &ids, &run_sh(&build(&b, &items))).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the timeout did not fire"
        );
        match &results[0] {
            ItemResult::Ran { rc: 0, stdout, .. } => {
                assert_eq!(
                    md5_from_tool_output(stdout).unwrap(),
                    "b1946ac92492d2347c6235b4d2611184"
                )
            }
            other => panic!("{other:?}"),
        }
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
            matches!(&results[3], ItemResult::Ran { rc: 137, .. }),
            "{:?}",
            results[3]
        );
        // Capped at 64 bytes plus the one that shows the cap was exceeded.
        assert!(matches!(&results[4], ItemResult::Ran { stdout, .. } if stdout.len() == 65));
    }

    #[test]
    fn parser_rejects_truncated_and_foreign_output() {
        let ids = vec!["0".to_string()];
        let b = "B";
        assert_eq!(
            parse(b, &ids, b"B 0 ran 0 5 0\nab"),
            Err(FrameError::Truncated)
        );
        assert!(matches!(
            parse(b, &ids, b"hello\n"),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b, &ids, b"B 9 ran 0 0 0\nB end\n"),
            Err(FrameError::Malformed { .. })
        ));
        assert_eq!(parse(b, &ids, b"B end\n"), Err(FrameError::Truncated));
        assert_eq!(
            parse(b, &ids, b"B 0 ran 0 2 1\nhiX B end\nB end\n").unwrap_err(),
            FrameError::Malformed {
                offset: 17,
                reason: "expected a header line".into()
            }
        );
        let ok = parse(b, &ids, b"B 0 ran 2 2 1\nhiXB end\n").unwrap();
        assert_eq!(
            ok,
            vec![ItemResult::Ran {
                rc: 2,
                stdout: b"hi".to_vec(),
                stderr: b"X".to_vec()
            }]
        );
    }
}
