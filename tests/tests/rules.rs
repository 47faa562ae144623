//! The Prometheus rules, their promtool unit tests and the example Prometheus
//! and Alertmanager configurations, checked with the real `promtool` and
//! `amtool` (Debian packages `prometheus` and `prometheus-alertmanager`).
//!
//! A missing tool fails the test: nothing here is skipped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

const PROMTOOL_MISSING: &str =
    "promtool not found: install it with `apt-get install prometheus` (scripts/test does this)";
const AMTOOL_MISSING: &str = "amtool not found: install it with `apt-get install prometheus-alertmanager` (scripts/test does this)";

/// The alert the remediator acts on; Alertmanager must route it there.
const REMEDIATOR_ALERT: &str = "FleetcheckEntityInconsistent";
const REMEDIATOR_RECEIVER: &str = "fleetcheck-remediator";
const DEFAULT_RECEIVER: &str = "default";
const SEVERITIES: &[&str] = &["page", "ticket", "info"];

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("repository root {}: {e}", root.display()))
}

/// `*.yml` files directly in `dir`, sorted, as paths relative to the
/// repository root.
fn yml_files(root: &Path, dir: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let full = root.join(dir);
    for entry in fs::read_dir(&full).with_context(|| format!("reading {}", full.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yml") {
            files.push(Path::new(dir).join(path.file_name().expect("file name")));
        }
    }
    files.sort();
    ensure!(!files.is_empty(), "no *.yml files in {}", full.display());
    Ok(files)
}

fn rule_files(root: &Path) -> Result<Vec<PathBuf>> {
    yml_files(root, "rules")
}

fn rule_test_files(root: &Path) -> Result<Vec<PathBuf>> {
    yml_files(root, "rules/tests")
}

/// Runs `tool args…` in the repository root. Panics with `missing` when the
/// tool is not installed; fails with the command line, exit status, stdout
/// and stderr when it exits non-zero. Returns stdout.
fn run<I, S>(tool: &str, missing: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let root = repo_root();
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmdline = std::iter::once(tool.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let output = match Command::new(tool).args(&args).current_dir(&root).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{missing}"),
        Err(e) => return Err(e).with_context(|| format!("running {cmdline}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "command failed: {cmdline}\n(in {})\nexit: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            root.display(),
            output.status
        );
    }
    println!("$ {cmdline}\n{stdout}{stderr}");
    Ok(stdout)
}

fn promtool<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    run("promtool", PROMTOOL_MISSING, args)
}

fn amtool<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    run("amtool", AMTOOL_MISSING, args)
}

fn read(root: &Path, rel: &Path) -> Result<String> {
    fs::read_to_string(root.join(rel)).with_context(|| format!("reading {}", rel.display()))
}

/// One `- alert:` or `- record:` rule, found by scanning lines (the rule
/// files are written one key per line; no YAML parser needed).
#[derive(Debug)]
struct Rule {
    file: PathBuf,
    line: usize,
    name: String,
    alert: bool,
    /// The rule's lines, up to the next rule.
    body: Vec<String>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

fn parse_rules(root: &Path) -> Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = Vec::new();
    for file in rule_files(root)? {
        let text = read(root, &file)?;
        let mut current: Option<Rule> = None;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            let start = trimmed
                .strip_prefix("- alert:")
                .map(|n| (n, true))
                .or_else(|| trimmed.strip_prefix("- record:").map(|n| (n, false)));
            if let Some((name, alert)) = start {
                rules.extend(current.take());
                current = Some(Rule {
                    file: file.clone(),
                    line: i + 1,
                    name: unquote(name).to_string(),
                    alert,
                    body: Vec::new(),
                });
            } else if trimmed.starts_with("- name:") {
                rules.extend(current.take());
            } else if let Some(rule) = current.as_mut() {
                rule.body.push(line.to_string());
            }
        }
        rules.extend(current);
    }
    let mut seen = BTreeSet::new();
    for rule in &rules {
        ensure!(
            !rule.name.is_empty(),
            "{}:{}: rule without a name",
            rule.file.display(),
            rule.line
        );
        if rule.alert {
            ensure!(
                seen.insert(rule.name.clone()),
                "{}:{}: alert {} defined twice",
                rule.file.display(),
                rule.line,
                rule.name
            );
        }
    }
    ensure!(
        rules.iter().any(|r| r.alert),
        "no alerts found in rules/*.yml"
    );
    ensure!(
        rules.iter().any(|r| !r.alert),
        "no recording rules found in rules/*.yml"
    );
    Ok(rules)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Whether `name` occurs in `hay` as a whole metric name.
fn contains_name(hay: &str, name: &str) -> bool {
    hay.match_indices(name).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// For every alertname in the promtool test files: whether it has a case
/// that expects it firing and one that expects it quiet (`exp_alerts: []`).
fn alert_test_cases(root: &Path) -> Result<BTreeMap<String, (usize, usize)>> {
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in rule_test_files(root)? {
        let text = read(root, &file)?;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some(name) = trimmed.strip_prefix("alertname:") else {
                continue;
            };
            let name = unquote(name).to_string();
            let exp = lines[i + 1..]
                .iter()
                .map(|l| l.trim_start().trim_start_matches("- "))
                .find_map(|l| l.strip_prefix("exp_alerts:"))
                .with_context(|| {
                    format!(
                        "{}:{}: alert test of {name} without exp_alerts",
                        file.display(),
                        i + 1
                    )
                })?;
            let entry = cases.entry(name).or_default();
            if exp.trim() == "[]" {
                entry.1 += 1;
            } else {
                ensure!(
                    exp.trim().is_empty(),
                    "{}:{}: write exp_alerts as `[]` or as a list",
                    file.display(),
                    i + 1
                );
                entry.0 += 1;
            }
        }
    }
    Ok(cases)
}

#[test]
fn promtool_check_rules() -> Result<()> {
    let root = repo_root();
    let files = rule_files(&root)?;
    let out = promtool(
        ["check", "rules"]
            .map(OsString::from)
            .into_iter()
            .chain(files.iter().map(|f| f.as_os_str().to_owned())),
    )?;
    let successes = out.matches("SUCCESS").count();
    ensure!(
        successes == files.len(),
        "expected SUCCESS for each of {} rule files:\n{out}",
        files.len()
    );
    Ok(())
}

#[test]
fn promtool_test_rules() -> Result<()> {
    let root = repo_root();
    let files = rule_test_files(&root)?;
    promtool(
        ["test", "rules"]
            .map(OsString::from)
            .into_iter()
            .chain(files.iter().map(|f| f.as_os_str().to_owned())),
    )?;
    Ok(())
}

#[test]
fn promtool_check_example_prometheus_config() -> Result<()> {
    let root = repo_root();
    let out = promtool(["check", "config", "examples/prometheus.yml"])?;
    // The rule_files glob must find every rule file (and nothing else).
    let n = rule_files(&root)?.len();
    let expected = format!("SUCCESS: {n} rule files found");
    ensure!(out.contains(&expected), "expected {expected:?} in:\n{out}");
    let config = read(&root, Path::new("examples/prometheus.yml"))?;
    for needle in [
        "job_name: fleetcheck\n",
        "job_name: fleetcheck-remediator\n",
        "127.0.0.1:8397",
        "127.0.0.1:8398",
        "127.0.0.1:9093",
    ] {
        ensure!(
            config.contains(needle),
            "examples/prometheus.yml lacks {needle:?}"
        );
    }
    Ok(())
}

#[test]
fn amtool_check_example_alertmanager_config() -> Result<()> {
    let root = repo_root();
    amtool(["check-config", "examples/alertmanager.yml"])?;
    let config = read(&root, Path::new("examples/alertmanager.yml"))?;
    for needle in [
        "url: http://127.0.0.1:8398/api/v1/alerts",
        "send_resolved: true",
        "credentials_file: /etc/fleetcheck/remediator.token",
        "group_by: [entity]",
    ] {
        ensure!(
            config.contains(needle),
            "examples/alertmanager.yml lacks {needle:?}"
        );
    }
    Ok(())
}

/// Alertmanager routes the remediator's alert to the remediator, and every
/// other alert of the rule files elsewhere.
#[test]
fn amtool_routes_alerts() -> Result<()> {
    let root = repo_root();
    let alerts: BTreeSet<String> = parse_rules(&root)?
        .into_iter()
        .filter(|r| r.alert)
        .map(|r| r.name)
        .collect();
    ensure!(
        alerts.contains(REMEDIATOR_ALERT),
        "no alert {REMEDIATOR_ALERT} in rules/"
    );
    for alert in &alerts {
        let receiver = if alert == REMEDIATOR_ALERT {
            REMEDIATOR_RECEIVER
        } else {
            DEFAULT_RECEIVER
        };
        amtool([
            "config".to_string(),
            "routes".to_string(),
            "test".to_string(),
            "--config.file=examples/alertmanager.yml".to_string(),
            format!("--verify.receivers={receiver}"),
            format!("alertname={alert}"),
            "entity=paas-agent".to_string(),
            "host=web-01".to_string(),
            "severity=ticket".to_string(),
        ])
        .with_context(|| format!("{alert} must be routed to {receiver}"))?;
    }
    Ok(())
}

/// Every alert has a promtool test case where it fires and one where it
/// does not.
#[test]
fn every_alert_has_firing_and_quiet_tests() -> Result<()> {
    let root = repo_root();
    let cases = alert_test_cases(&root)?;
    let mut problems = Vec::new();
    let rules = parse_rules(&root)?;
    for rule in rules.iter().filter(|r| r.alert) {
        match cases.get(&rule.name) {
            None => problems.push(format!("{}: no promtool test case", rule.name)),
            Some((0, _)) => problems.push(format!("{}: no test case where it fires", rule.name)),
            Some((_, 0)) => problems.push(format!(
                "{}: no test case where it does not fire (exp_alerts: [])",
                rule.name
            )),
            Some(_) => {}
        }
    }
    for name in cases.keys() {
        if !rules.iter().any(|r| r.alert && &r.name == name) {
            problems.push(format!("tests name an alert that does not exist: {name}"));
        }
    }
    ensure!(
        problems.is_empty(),
        "alert tests incomplete:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// Every recording rule appears in a promtool test's `expr` or expected
/// sample labels.
#[test]
fn every_recording_rule_is_tested() -> Result<()> {
    let root = repo_root();
    let mut tested = String::new();
    for file in rule_test_files(&root)? {
        for line in read(&root, &file)?.lines() {
            let key = line.trim_start().trim_start_matches("- ");
            if key.starts_with("expr:") || key.starts_with("labels:") {
                tested.push_str(key);
                tested.push('\n');
            }
        }
    }
    let missing: Vec<String> = parse_rules(&root)?
        .into_iter()
        .filter(|r| !r.alert && !contains_name(&tested, &r.name))
        .map(|r| format!("{} ({}:{})", r.name, r.file.display(), r.line))
        .collect();
    ensure!(
        missing.is_empty(),
        "recording rules without a promtool test:\n  {}",
        missing.join("\n  ")
    );
    Ok(())
}

/// Every alert carries a known severity and summary/description
/// annotations; `for:` durations are one-line `for: 2m` values, so tests can
/// shorten them with a textual substitution.
#[test]
fn alerts_follow_conventions() -> Result<()> {
    let root = repo_root();
    let mut problems = Vec::new();
    for rule in parse_rules(&root)? {
        let at = format!("{}:{} {}", rule.file.display(), rule.line, rule.name);
        let key = |k: &str| {
            rule.body.iter().find_map(|l| {
                l.trim_start()
                    .strip_prefix(k)
                    .map(|v| unquote(v).to_string())
            })
        };
        if let Some(duration) = key("for:") {
            let digits = duration.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &duration[digits.len()..];
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || !["s", "m", "h", "d"].contains(&unit)
            {
                problems.push(format!(
                    "{at}: `for: {duration}` is not of the form `for: 2m`"
                ));
            }
        }
        if !rule.alert {
            ensure!(
                rule.name.contains(':'),
                "{at}: recording rule names are level:metric:operations"
            );
            continue;
        }
        if !rule.name.starts_with("Fleetcheck")
            || !rule.name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            problems.push(format!(
                "{at}: alert names are CamelCase, starting with Fleetcheck"
            ));
        }
        match key("severity:") {
            Some(s) if SEVERITIES.contains(&s.as_str()) => {}
            other => problems.push(format!(
                "{at}: severity {other:?} not one of {SEVERITIES:?}"
            )),
        }
        for annotation in ["summary:", "description:"] {
            if key(annotation).is_none() {
                problems.push(format!("{at}: no {annotation} annotation"));
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "rule conventions:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// The rule's `expr`, single-line or block scalar.
fn rule_expr(rule: &Rule) -> String {
    let mut lines = rule
        .body
        .iter()
        .skip_while(|l| !l.trim_start().starts_with("expr:"));
    let Some(first) = lines.next() else {
        return String::new();
    };
    let indent = first.len() - first.trim_start().len();
    let mut expr = first.trim_start()["expr:".len()..].trim().to_string();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() <= indent {
            break;
        }
        expr.push('\n');
        expr.push_str(line.trim());
    }
    expr
}

/// The remediator's alert keeps the labels it acts on: no aggregation or
/// label rewriting in its expression.
#[test]
fn remediator_alert_keeps_entity_and_host() -> Result<()> {
    let root = repo_root();
    let rules = parse_rules(&root)?;
    let rule = rules
        .iter()
        .find(|r| r.alert && r.name == REMEDIATOR_ALERT)
        .with_context(|| format!("no alert {REMEDIATOR_ALERT}"))?;
    let expr = rule_expr(rule);
    ensure!(
        expr.contains("fleetcheck_entity_consistent"),
        "unexpected expression: {expr}"
    );
    for forbidden in [
        "sum",
        "max",
        "min",
        "count",
        "avg",
        "topk",
        "bottomk",
        "group",
        "without",
        "label_replace",
    ] {
        ensure!(
            !contains_name(&expr, forbidden),
            "{REMEDIATOR_ALERT} must not use {forbidden}: the remediator needs each pair's \
             entity and host labels\n{expr}"
        );
    }
    Ok(())
}

#[test]
fn rule_scanning_finds_expressions() -> Result<()> {
    let rules = parse_rules(&repo_root())?;
    for rule in &rules {
        ensure!(!rule_expr(rule).is_empty(), "{}: no expr found", rule.name);
    }
    Ok(())
}

#[test]
fn name_matching_is_whole_word() {
    assert!(contains_name("expr: a:b:c + 1", "a:b:c"));
    assert!(contains_name("labels: 'a:b:c{x=\"1\"}'", "a:b:c"));
    assert!(!contains_name("expr: a:b:count", "a:b:c"));
    assert!(!contains_name("expr: xa:b:c", "a:b:c"));
}
