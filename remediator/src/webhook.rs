//! The Alertmanager webhook payload (version 4) as it arrives, and its
//! conversion into [`AlertEvent`]s the remediator acts on.
//!
//! Unknown fields (`truncatedAlerts`, `notification_reason`, `routeLabels`,
//! ...) are accepted and ignored. A payload that is not version 4 or not JSON
//! is refused as a whole (400); an alert whose labels do not name a pair is
//! not: it becomes [`AlertEvent::BadLabels`], so it is journaled and counted
//! while the rest of the group is processed.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The only alert the remediator acts on.
pub const ALERT_NAME: &str = "FleetcheckEntityInconsistent";

/// Longest label value accepted for `entity` and `host`.
const MAX_LABEL_LEN: usize = 253;

#[derive(Debug, Deserialize)]
struct WirePayload {
    version: String,
    alerts: Vec<WireAlert>,
}

#[derive(Debug, Deserialize)]
struct WireAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Whether the alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert of a payload, in domain terms.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertEvent {
    Pair {
        status: AlertStatus,
        entity: String,
        host: String,
        /// `startsAt` as Unix seconds (absent or unparseable: `None`).
        starts_at: Option<f64>,
        fingerprint: Option<String>,
    },
    /// Labels that do not name a pair; `labels` is kept for the journal.
    BadLabels {
        status: AlertStatus,
        reason: String,
        labels: String,
    },
}

/// Why a payload was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("invalid JSON payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported webhook payload version {0:?} (expected \"4\")")]
    Version(String),
    #[error("alert {index}: status {status:?} is neither firing nor resolved")]
    Status { index: usize, status: String },
}

/// Parses a webhook body into its alerts.
pub fn parse(body: &[u8]) -> Result<Vec<AlertEvent>, PayloadError> {
    let payload: WirePayload = serde_json::from_slice(body)?;
    if payload.version != "4" {
        return Err(PayloadError::Version(payload.version));
    }
    payload
        .alerts
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            let status = match a.status.as_str() {
                "firing" => AlertStatus::Firing,
                "resolved" => AlertStatus::Resolved,
                _ => {
                    return Err(PayloadError::Status {
                        index,
                        status: a.status,
                    })
                }
            };
            Ok(convert(status, a))
        })
        .collect()
}

fn convert(status: AlertStatus, a: WireAlert) -> AlertEvent {
    let bad = |reason: String| AlertEvent::BadLabels {
        status,
        reason,
        labels: serde_json::to_string(&a.labels).unwrap_or_default(),
    };
    if let Some(name) = a.labels.get("alertname") {
        if name != ALERT_NAME {
            return bad(format!("alertname is {name:?}, not {ALERT_NAME}"));
        }
    }
    let (entity, host) = match (a.labels.get("entity"), a.labels.get("host")) {
        (Some(e), Some(h)) => (e, h),
        _ => return bad("the alert lacks an entity or host label".to_string()),
    };
    for (label, value) in [("entity", entity), ("host", host)] {
        if let Err(why) = plain_label(value) {
            return bad(format!("label {label} {why}"));
        }
    }
    AlertEvent::Pair {
        status,
        entity: entity.clone(),
        host: host.clone(),
        starts_at: a.starts_at.as_deref().and_then(rfc3339_seconds),
        fingerprint: a.fingerprint,
    }
}

/// A label value usable as a name: not empty, bounded, no control characters.
/// (Whether it names a real entity or host is the authority's to say.)
fn plain_label(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > MAX_LABEL_LEN {
        return Err("is too long");
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.123Z`, `...+02:00`) into
/// Unix seconds. Alertmanager's zero time (`0001-01-01T00:00:00Z`) gives `None`.
pub fn rfc3339_seconds(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds as f64 + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as Alertmanager 0.25 sends it (captured), group firing while
    /// one alert is already resolved.
    const CAPTURED: &str = r#"{
      "receiver": "fleetcheck-remediator", "status": "firing",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "FleetcheckEntityInconsistent", "entity": "motd", "host": "host-01", "severity": "ticket"},
         "annotations": {"summary": "x"}, "startsAt": "2024-05-01T12:00:00.5Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "", "fingerprint": "a1b2c3d4e5f60718"},
        {"status": "resolved", "labels": {"alertname": "FleetcheckEntityInconsistent", "entity": "motd", "host": "host-02"},
         "annotations": {}, "startsAt": "2024-05-01T12:00:00+02:00", "endsAt": "2024-05-01T12:05:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": "0000000000000001"}
      ],
      "groupLabels": {"alertname": "FleetcheckEntityInconsistent"}, "commonLabels": {}, "commonAnnotations": {},
      "externalURL": "http://am:9093", "version": "4", "groupKey": "{}:{alertname=\"FleetcheckEntityInconsistent\"}",
      "truncatedAlerts": 0, "notification_reason": "new", "routeLabels": {"x": "y"}
    }"#;

    #[test]
    fn captured_alertmanager_payload_is_split_into_alerts() {
        let events = parse(CAPTURED.as_bytes()).unwrap();
        assert_eq!(
            events,
            [
                AlertEvent::Pair {
                    status: AlertStatus::Firing,
                    entity: "motd".into(),
                    host: "host-01".into(),
                    starts_at: Some(1_714_564_800.5),
                    fingerprint: Some("a1b2c3d4e5f60718".into()),
                },
                AlertEvent::Pair {
                    status: AlertStatus::Resolved,
                    entity: "motd".into(),
                    host: "host-02".into(),
                    starts_at: Some(1_714_564_800.0 - 7200.0),
                    fingerprint: Some("0000000000000001".into()),
                },
            ]
        );
    }

    #[test]
    fn wrong_version_and_garbage_are_refused() {
        assert!(matches!(
            parse(br#"{"version":"3","alerts":[]}"#),
            Err(PayloadError::Version(_))
        ));
        assert!(matches!(parse(b"{"), Err(PayloadError::Json(_))));
        assert!(matches!(
            parse(br#"{"version":"4","alerts":[{"status":"pending"}]}"#),
            Err(PayloadError::Status { .. })
        ));
    }

    #[test]
    fn alerts_without_a_pair_are_bad_labels() {
        let body = br#"{"version":"4","alerts":[
          {"status":"firing","labels":{"alertname":"Other","entity":"a","host":"b"}},
          {"status":"firing","labels":{"entity":"a"}},
          {"status":"firing","labels":{"entity":"a","host":"b\nc"}}]}"#;
        let events = parse(body).unwrap();
        assert!(
            events
                .iter()
                .all(|e| matches!(e, AlertEvent::BadLabels { .. })),
            "{events:?}"
        );
    }

    #[test]
    fn rfc3339_edge_cases() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_seconds("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(rfc3339_seconds("garbage"), None);
    }
}
