//! The landing page: a short, plain-HTML summary for a person.

use std::fmt::Write as _;

use fleetcheck_core::{Authority, Snapshot, State};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Shows at most this many inconsistent pairs; `/api/v1/status` has them all.
const MAX_ROWS: usize = 200;

pub fn render(authority: &Authority, snapshot: Option<&Snapshot>, telemetry_path: &str) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>fleetcheck exporter</title></head><body>\n");
    h.push_str("<h1>fleetcheck exporter</h1>\n");
    let _ = writeln!(
        h,
        "<p><a href=\"{0}\">Metrics</a> · <a href=\"/api/v1/status\">Status (JSON)</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>",
        esc(telemetry_path)
    );
    let _ = writeln!(
        h,
        "<p>Authority <code>{}</code>: {} entities, {} hosts, {} pairs.</p>",
        esc(&authority.source.display().to_string()),
        authority.entities.len(),
        authority.checked_hosts().len(),
        authority.pair_count()
    );
    let Some(snapshot) = snapshot else {
        h.push_str("<p>The first collection cycle has not finished yet.</p>\n</body></html>\n");
        return h;
    };
    let pairs: Vec<_> = snapshot.current_pairs(authority).collect();
    let consistent = pairs
        .iter()
        .filter(|p| p.state == State::Consistent)
        .count();
    let ratio = if pairs.is_empty() {
        1.0
    } else {
        consistent as f64 / pairs.len() as f64
    };
    let _ = writeln!(
        h,
        "<p>Fleet consistency: <strong>{:.3} %</strong> ({consistent} of {} pairs). Last cycle took {:.2} s; {} of {} hosts answered.</p>",
        ratio * 100.0,
        pairs.len(),
        snapshot.duration.as_secs_f64(),
        snapshot.hosts.iter().filter(|x| x.up).count(),
        snapshot.hosts.len()
    );
    let bad: Vec<_> = pairs
        .iter()
        .filter(|p| p.state != State::Consistent)
        .collect();
    if bad.is_empty() {
        h.push_str("<p>No inconsistent pairs.</p>\n");
    } else {
        let _ = writeln!(h, "<h2>Inconsistent pairs ({})</h2>", bad.len());
        h.push_str("<table border=\"1\" cellpadding=\"4\"><tr><th>Entity</th><th>Host</th><th>State</th><th>Observed MD5</th><th>Error</th></tr>\n");
        for p in bad.iter().take(MAX_ROWS) {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&p.entity),
                esc(&p.host),
                p.state,
                esc(p.observed_md5.as_deref().unwrap_or("")),
                esc(p.error.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>\n");
        if bad.len() > MAX_ROWS {
            let _ = writeln!(h, "<p>… and {} more: see <a href=\"/api/v1/status?state=drifted\">/api/v1/status</a>.</p>", bad.len() - MAX_ROWS);
        }
    }
    h.push_str("</body></html>\n");
    h
}
