//! The remediator's own metrics, in a private registry (`fleetcheck_remediator_*`).
//!
//! Label values are bounded: statuses, reasons, outcomes and methods are fixed
//! sets; `entity` appears only on the suppression gauge and comes from the
//! authority, never from alert data.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub const SKIP_REASONS: [&str; 10] = [
    "already_consistent",
    "duplicate",
    "cooldown",
    "deployment_running",
    "version_conflict",
    "concurrency",
    "budget_exhausted",
    "circuit_open",
    "wave_hold",
    "dry_run",
];
pub const OUTCOMES: [&str; 5] = ["verified", "failed", "cancelled", "rejected", "skipped"];
pub const REJECT_REASONS: [&str; 3] = ["unknown_entity", "host_not_in_entity_set", "bad_labels"];
pub const METHODS: [&str; 4] = ["ansible", "deploy", "script", "command"];
pub const RESULTS: [&str; 3] = ["success", "failure", "timeout"];

pub struct Metrics {
    registry: Registry,
    pub alerts_received: IntCounterVec,
    pub alerts_rejected: IntCounterVec,
    pub jobs: IntCounterVec,
    pub repairs: IntCounterVec,
    pub skips: IntCounterVec,
    pub in_progress: IntGauge,
    pub queue_depth: IntGauge,
    pub repair_duration: HistogramVec,
    pub time_to_repair: Histogram,
    pub suppressed: IntGaugeVec,
    pub config_reload_ok: IntGauge,
    pub config_reload_time: Gauge,
}

impl Metrics {
    pub fn new(revision: &str) -> Metrics {
        let registry = Registry::new();
        let p = |name: &str| format!("fleetcheck_remediator_{name}");
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(p(name), help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let alerts_received = counter(
            "alerts_received_total",
            "Alerts received from Alertmanager, by status.",
            "status",
        );
        let alerts_rejected = counter(
            "alerts_rejected_total",
            "Alerts rejected at intake (never executed), by reason.",
            "reason",
        );
        let jobs = counter("jobs_total", "Jobs ended, by outcome.", "outcome");
        let skips = counter(
            "skips_total",
            "Times a gate stopped or held a job, by reason.",
            "reason",
        );
        let repairs = IntCounterVec::new(
            Opts::new(
                p("repairs_total"),
                "Repair attempts run, by method and executor result.",
            ),
            &["method", "result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(repairs.clone()))
            .expect("unique metric");
        let in_progress =
            IntGauge::new(p("in_progress"), "Repairs running now.").expect("valid metric");
        let queue_depth =
            IntGauge::new(p("queue_depth"), "Jobs waiting (queued, deferred or held).")
                .expect("valid metric");
        let repair_duration = HistogramVec::new(
            HistogramOpts::new(
                p("repair_duration_seconds"),
                "Time an executor ran, by method.",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            &["method"],
        )
        .expect("valid metric");
        let time_to_repair = Histogram::with_opts(
            HistogramOpts::new(
                p("time_to_repair_seconds"),
                "Time from the alert's startsAt to the verified repair.",
            )
            .buckets(vec![
                10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
            ]),
        )
        .expect("valid metric");
        let suppressed = IntGaugeVec::new(
            Opts::new(
                p("suppressed"),
                "1 while an entity's repairs are held (circuit_open, budget_exhausted).",
            ),
            &["entity", "reason"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(p("build_info"), "Build information; always 1."),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), revision])
            .set(1);
        let config_reload_ok = IntGauge::new(
            p("config_last_reload_successful"),
            "1 when the last config reload succeeded.",
        )
        .expect("valid metric");
        let config_reload_time = Gauge::new(
            p("config_last_reload_success_timestamp_seconds"),
            "When the config was last loaded successfully.",
        )
        .expect("valid metric");
        for m in [
            in_progress.clone(),
            queue_depth.clone(),
            config_reload_ok.clone(),
        ] {
            registry.register(Box::new(m)).expect("unique metric");
        }
        registry
            .register(Box::new(repair_duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(time_to_repair.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(suppressed.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        registry
            .register(Box::new(config_reload_time.clone()))
            .expect("unique metric");

        // Every fixed label value starts at zero so that rate() and absent()
        // behave from the first scrape on.
        for s in ["firing", "resolved"] {
            alerts_received.with_label_values(&[s]);
        }
        for r in REJECT_REASONS {
            alerts_rejected.with_label_values(&[r]);
        }
        for o in OUTCOMES {
            jobs.with_label_values(&[o]);
        }
        for r in SKIP_REASONS {
            skips.with_label_values(&[r]);
        }
        for m in METHODS {
            repair_duration.with_label_values(&[m]);
            for r in RESULTS {
                repairs.with_label_values(&[m, r]);
            }
        }
        Metrics {
            registry,
            alerts_received,
            alerts_rejected,
            jobs,
            repairs,
            skips,
            in_progress,
            queue_depth,
            repair_duration,
            time_to_repair,
            suppressed,
            config_reload_ok,
            config_reload_time,
        }
    }

    pub fn skip(&self, reason: &str) {
        self.skips.with_label_values(&[reason]).inc();
    }

    pub fn job(&self, outcome: &str) {
        self.jobs.with_label_values(&[outcome]).inc();
    }

    pub fn set_suppressed(&self, entity: &str, reason: &str, on: bool) {
        if on {
            self.suppressed.with_label_values(&[entity, reason]).set(1);
        } else {
            let _ = self.suppressed.remove_label_values(&[entity, reason]);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
