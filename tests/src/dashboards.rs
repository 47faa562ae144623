//! The Grafana dashboards under `grafana/dashboards/`, read for tests: every panel's queries
//! ([`panel_queries`]) and Grafana's variables replaced so a query can be sent to Prometheus as
//! is ([`expand_variables`]).
//!
//! `tests/tests/dashboards.rs` checks the dashboards' shape with these; the end-to-end test
//! (`tests/tests/end_to_end.rs`) runs every panel query against a real Prometheus.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

/// Grafana's built-in variables and what the end-to-end test substitutes
/// for them.
pub const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__range", "1h"),
];

/// One dashboard file, read and parsed.
pub struct Dashboard {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file as written.
    pub text: String,
    /// The file parsed.
    pub json: Value,
}

impl Dashboard {
    /// The dashboard's `uid` (empty when it has none).
    pub fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }

    /// The file name, such as `fleetcheck-overview.json`.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The template variables (`templating.list`).
    pub fn variables(&self) -> &[Value] {
        self.json["templating"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Every `*.json` under `ROOT/grafana/dashboards/`, in file name order; fails when there is
/// none or one does not parse.
pub fn load_dashboards(root: &Path) -> Result<Vec<Dashboard>> {
    let dir = root.join("grafana/dashboards");
    let mut paths = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    ensure!(!paths.is_empty(), "no dashboards in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            Ok(Dashboard { path, text, json })
        })
        .collect()
}

/// Every panel, the ones inside (collapsed) rows included.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The uid of the dashboard the panel is on.
    pub dashboard_uid: String,
    /// The panel's title.
    pub panel_title: String,
    /// The PromQL expression, with Grafana variables still in it.
    pub expr: String,
}

/// Every (dashboard uid, panel title, expr) under `grafana/dashboards/`, in
/// file and panel order. The expressions still contain Grafana variables;
/// see `expand_variables`.
pub fn panel_queries(root: &Path) -> Result<Vec<PanelQuery>> {
    let mut out = Vec::new();
    for dashboard in load_dashboards(root)? {
        for panel in all_panels(&dashboard.json) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        dashboard_uid: dashboard.uid().to_string(),
                        panel_title: panel["title"].as_str().unwrap_or("").to_string(),
                        expr: expr.to_string(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Replaces Grafana's built-in variables (`$__rate_interval`, `$__interval`,
/// `$__range`) with fixed durations and every other `$var` / `${var}` with
/// `.*` (the dashboards use variables only as `label=~"$var"` regexes whose
/// "All" value is `.*`), so the expression can be sent to Prometheus as is.
pub fn expand_variables(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => (braced, braced.len() + 1),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let name = name.split(':').next().unwrap_or(name);
        match BUILTIN_VARIABLES
            .iter()
            .find(|(builtin, _)| *builtin == name)
        {
            Some((_, value)) => out.push_str(value),
            None if !name.is_empty() => out.push_str(".*"),
            None => out.push('$'),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}
