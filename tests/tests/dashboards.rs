//! The Grafana dashboards under `grafana/dashboards/`: portable (a
//! `datasource` variable, no `${DS_*}` inputs), stable uids, every panel
//! with queries, and every query naming only fleetcheck metrics or recording
//! rules defined in `rules/`.
//!
//! Reading the dashboards (`panel_queries`, `expand_variables`) lives in
//! `fleetcheck_tests::dashboards`, which the end-to-end test also uses to run
//! every panel's query against a real Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use fleetcheck_tests::dashboards::{
    all_panels, expand_variables, load_dashboards, panel_queries, BUILTIN_VARIABLES,
};
use serde_json::Value;

/// The uids other things link to; they must not change.
const STABLE_UIDS: &[&str] = &[
    "fleetcheck-overview",
    "fleetcheck-hosts",
    "fleetcheck-remediation",
];

/// Metric families of the exporter and the remediator (the metrics
/// contract). Histograms also expose `_bucket`, `_sum` and `_count`.
const EXPORTER_METRICS: &[&str] = &[
    "fleetcheck_entity_consistent",
    "fleetcheck_entity_check_success",
    "fleetcheck_entity_last_check_timestamp_seconds",
    "fleetcheck_entity_inconsistency_info",
    "fleetcheck_entity_hosts",
    "fleetcheck_authority_entity_info",
    "fleetcheck_host_up",
    "fleetcheck_host_check_duration_seconds",
    "fleetcheck_cycle_duration_seconds",
    "fleetcheck_last_cycle_timestamp_seconds",
    "fleetcheck_config_last_reload_successful",
    "fleetcheck_config_last_reload_success_timestamp_seconds",
    "fleetcheck_build_info",
];
const REMEDIATOR_METRICS: &[&str] = &[
    "fleetcheck_remediator_alerts_received_total",
    "fleetcheck_remediator_alerts_rejected_total",
    "fleetcheck_remediator_jobs_total",
    "fleetcheck_remediator_repairs_total",
    "fleetcheck_remediator_skips_total",
    "fleetcheck_remediator_in_progress",
    "fleetcheck_remediator_queue_depth",
    "fleetcheck_remediator_suppressed",
    "fleetcheck_remediator_build_info",
];
const REMEDIATOR_HISTOGRAMS: &[&str] = &[
    "fleetcheck_remediator_repair_duration_seconds",
    "fleetcheck_remediator_time_to_repair_seconds",
];

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("repository root {}: {e}", root.display()))
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// Names of the recording rules defined in `rules/*.yml`.
fn recording_rules(root: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(root.join("rules"))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        for line in fs::read_to_string(&path)?.lines() {
            if let Some(name) = line.trim_start().strip_prefix("- record:") {
                names.insert(
                    name.trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_string(),
                );
            }
        }
    }
    ensure!(!names.is_empty(), "no recording rules found in rules/*.yml");
    Ok(names)
}

fn known_metrics() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = EXPORTER_METRICS
        .iter()
        .chain(REMEDIATOR_METRICS)
        .map(|m| m.to_string())
        .collect();
    for histogram in REMEDIATOR_HISTOGRAMS {
        for suffix in ["_bucket", "_sum", "_count"] {
            known.insert(format!("{histogram}{suffix}"));
        }
    }
    known
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
/// Keywords followed by a parenthesised label list.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index just past the string literal starting at `start` (a quote).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Index just past the bracketed group starting at `start` (`{`, `[` or
/// `(`), skipping string literals inside.
fn skip_group(chars: &[char], start: usize) -> usize {
    let (open, close) = match chars[start] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// The metric names a PromQL expression selects (roughly: identifiers that
/// are not functions, aggregations, keywords, label names or inside label
/// matchers, strings or ranges).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' || c == '[' {
            i = skip_group(&chars, i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = skip_group(&chars, next);
                }
            } else if chars.get(next) == Some(&'(')
                || AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
            {
                // A function call, an aggregation or an operator.
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Collects problems instead of stopping at the first one.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    fn finish(self, what: &str) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            bail!("{what}:\n  {}", self.0.join("\n  "))
        }
    }
}

fn expected_datasource() -> Value {
    serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
}

#[test]
fn dashboards_have_stable_unique_uids() -> Result<()> {
    let dashboards = load_dashboards(&repo_root())?;
    let mut problems = Problems::default();
    let mut uids = BTreeMap::new();
    let mut titles = BTreeSet::new();
    for d in &dashboards {
        let uid = d.uid();
        let name = d.name();
        problems.check(
            uid.starts_with("fleetcheck-")
                && uid.len() <= 40
                && uid
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            || format!("{name}: uid {uid:?} is not a stable fleetcheck-… slug (≤ 40 chars)"),
        );
        problems.check(name == format!("{uid}.json"), || {
            format!("{name}: file name should be {uid}.json")
        });
        if let Some(other) = uids.insert(uid.to_string(), name.clone()) {
            problems
                .0
                .push(format!("uid {uid} used by both {other} and {name}"));
        }
        let title = d.json["title"].as_str().unwrap_or("");
        problems.check(!title.is_empty(), || format!("{name}: no title"));
        problems.check(titles.insert(title.to_string()), || {
            format!("{name}: title {title:?} used twice")
        });
        problems.check(d.json["id"].is_null(), || {
            format!("{name}: \"id\" must be null for provisioning")
        });
        problems.check(
            d.json["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            || format!("{name}: schemaVersion {} < 36", d.json["schemaVersion"]),
        );
    }
    for uid in STABLE_UIDS {
        problems.check(uids.contains_key(*uid), || {
            format!("no dashboard with uid {uid}")
        });
    }
    problems.finish("dashboard uids")
}

#[test]
fn dashboards_are_portable() -> Result<()> {
    fn find_key(v: &Value, key: &str, path: &mut Vec<String>) -> Option<String> {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == key {
                        return Some(format!("{}/{k}", path.join("/")));
                    }
                    path.push(k.clone());
                    let found = find_key(child, key, path);
                    path.pop();
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                path.push(i.to_string());
                let found = find_key(item, key, path);
                path.pop();
                found
            }),
            _ => None,
        }
    }
    let mut problems = Problems::default();
    for d in load_dashboards(&repo_root())? {
        let name = d.name();
        problems.check(!d.text.contains("${DS_"), || {
            format!("{name}: contains a ${{DS_…}} input")
        });
        if let Some(at) = find_key(&d.json, "__inputs", &mut Vec::new()) {
            problems.0.push(format!("{name}: has __inputs at {at}"));
        }
        if let Some(at) = find_key(&d.json, "__requires", &mut Vec::new()) {
            problems.0.push(format!(
                "{name}: has __requires at {at} (an export for sharing)"
            ));
        }
        let vars = d.variables();
        let ds = vars.iter().find(|v| v["name"] == "datasource");
        problems.check(
            ds.is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            || format!("{name}: no variable `datasource` of type datasource, query prometheus"),
        );
        for var in vars.iter().filter(|v| v["type"] == "query") {
            problems.check(var["datasource"] == expected_datasource(), || {
                format!(
                    "{name}: variable {} does not use ${{datasource}}",
                    var["name"]
                )
            });
        }
    }
    problems.finish("dashboards not portable")
}

#[test]
fn every_panel_queries_prometheus_through_the_variable() -> Result<()> {
    let mut problems = Problems::default();
    for d in load_dashboards(&repo_root())? {
        let name = d.name();
        let mut ids = BTreeSet::new();
        let panels = all_panels(&d.json);
        problems.check(panels.iter().filter(|p| !is_row(p)).count() >= 3, || {
            format!("{name}: fewer than 3 panels")
        });
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("");
            let at = format!("{name}: panel {:?} (id {})", title, panel["id"]);
            match panel["id"].as_u64() {
                Some(id) => problems.check(ids.insert(id), || format!("{at}: duplicate panel id")),
                None => problems.0.push(format!("{at}: no numeric id")),
            }
            problems.check(panel["gridPos"].is_object(), || format!("{at}: no gridPos"));
            if is_row(panel) {
                continue;
            }
            problems.check(!title.is_empty(), || format!("{at}: no title"));
            problems.check(panel["datasource"] == expected_datasource(), || {
                format!(
                    "{at}: datasource {} is not ${{datasource}}",
                    panel["datasource"]
                )
            });
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            problems.check(!targets.is_empty(), || format!("{at}: no targets"));
            let mut ref_ids = BTreeSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                problems.check(!expr.trim().is_empty(), || {
                    format!("{at}: a target has no expr")
                });
                problems.check(
                    target.get("datasource").is_none()
                        || target["datasource"] == expected_datasource(),
                    || {
                        format!(
                            "{at}: target datasource {} is not ${{datasource}}",
                            target["datasource"]
                        )
                    },
                );
                let ref_id = target["refId"].as_str().unwrap_or("");
                problems.check(
                    !ref_id.is_empty() && ref_ids.insert(ref_id.to_string()),
                    || format!("{at}: refId {ref_id:?} missing or duplicate"),
                );
            }
        }
    }
    problems.finish("panels")
}

/// Every metric a panel or variable queries exists: a fleetcheck metric of
/// the contract, or a recording rule defined in `rules/`.
#[test]
fn queries_name_only_known_metrics() -> Result<()> {
    let root = repo_root();
    let recorded = recording_rules(&root)?;
    let known = known_metrics();
    let mut problems = Problems::default();
    let mut check = |at: &str, expr: &str| {
        let names = metric_names(expr);
        problems.check(!names.is_empty(), || {
            format!("{at}: no metric found in {expr:?}")
        });
        for metric in names {
            let ok = known.contains(&metric) || recorded.contains(&metric);
            problems.check(ok, || {
                if metric.starts_with("fleetcheck_") {
                    format!("{at}: {metric} is not in the metrics contract (typo?)")
                } else if metric.contains(':') {
                    format!("{at}: {metric} is not a recording rule defined in rules/")
                } else {
                    format!("{at}: {metric} is not a fleetcheck metric")
                }
            });
        }
    };
    for q in panel_queries(&root)? {
        check(
            &format!("{} / {:?}", q.dashboard_uid, q.panel_title),
            &q.expr,
        );
    }
    for d in load_dashboards(&root)? {
        for var in d.variables().iter().filter(|v| v["type"] == "query") {
            let query = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str())
                .unwrap_or("");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(metric, _)| metric)
                .unwrap_or(query);
            check(&format!("{} / variable {}", d.uid(), var["name"]), inner);
        }
    }
    problems.finish("unknown metrics in dashboards")
}

/// After substituting variables, every query is plain PromQL the end-to-end
/// test can send to Prometheus; and every variable a query uses is defined.
#[test]
fn queries_expand_to_plain_promql() -> Result<()> {
    let root = repo_root();
    let mut defined: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in load_dashboards(&root)? {
        let vars = d
            .variables()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .map(String::from);
        defined.insert(d.uid().to_string(), vars.collect());
    }
    let mut problems = Problems::default();
    let queries = panel_queries(&root)?;
    ensure!(queries.len() >= 20, "only {} panel queries", queries.len());
    for q in &queries {
        let at = format!("{} / {:?}", q.dashboard_uid, q.panel_title);
        let expanded = expand_variables(&q.expr);
        problems.check(!expanded.contains('$'), || {
            format!("{at}: {expanded:?} still has a variable")
        });
        for (i, _) in q.expr.match_indices('$') {
            let name: String = q.expr[i + 1..]
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let ok = BUILTIN_VARIABLES.iter().any(|(b, _)| *b == name)
                || defined[&q.dashboard_uid].contains(&name);
            problems.check(ok, || format!("{at}: uses undefined variable ${name}"));
        }
    }
    problems.finish("queries")
}

#[test]
fn provisioning_points_at_the_dashboards() -> Result<()> {
    let root = repo_root();
    let dashboards =
        fs::read_to_string(root.join("grafana/provisioning/dashboards/fleetcheck.yml"))?;
    for needle in ["apiVersion: 1", "type: file", "path:"] {
        ensure!(
            dashboards.contains(needle),
            "dashboard provisioning lacks {needle:?}"
        );
    }
    let datasources =
        fs::read_to_string(root.join("grafana/provisioning/datasources/prometheus.yml"))?;
    for needle in ["apiVersion: 1", "type: prometheus", "url:"] {
        ensure!(
            datasources.contains(needle),
            "datasource provisioning lacks {needle:?}"
        );
    }
    Ok(())
}

#[test]
fn expand_variables_substitutes() {
    assert_eq!(
        expand_variables(r#"rate(x{entity=~"$entity",host=~"${host}"}[$__rate_interval])"#),
        r#"rate(x{entity=~".*",host=~".*"}[1m])"#
    );
    assert_eq!(
        expand_variables("increase(x[$__range]) > ${__interval}"),
        "increase(x[1h]) > 1m"
    );
    assert_eq!(
        expand_variables("a{x=~\"${entity:regex}\"}"),
        "a{x=~\".*\"}"
    );
}

#[test]
fn metric_names_are_found() {
    let names = |e: &str| metric_names(e);
    assert_eq!(
        names(r#"sum by (entity) (rate(fleetcheck_x_total{a="b",c=~"$d"}[$__rate_interval]))"#),
        ["fleetcheck_x_total"]
    );
    assert_eq!(
        names("a:b:c * on (entity) group_left (kind) max by (entity, kind) (fleetcheck_info) or vector(0)"),
        ["a:b:c", "fleetcheck_info"]
    );
    assert_eq!(
        names("histogram_quantile(0.9, sum by (le) (increase(m_bucket[1h]))) > bool 1e3"),
        ["m_bucket"]
    );
    assert_eq!(
        names("time() - max(fleetcheck_ts offset 5m)"),
        ["fleetcheck_ts"]
    );
    assert!(names("count(x == 0) or vector(0)") == ["x"]);
}

#[test]
fn panel_queries_cover_every_dashboard() -> Result<()> {
    let queries = panel_queries(&repo_root())?;
    for uid in STABLE_UIDS {
        ensure!(
            queries.iter().any(|q| q.dashboard_uid == *uid),
            "no queries collected from {uid}"
        );
    }
    Ok(())
}
