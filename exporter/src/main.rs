//! fleetcheck-exporter: collects every entity's state from every host of the
//! authority and serves consistency metrics for Prometheus.
//!
//! `fleetcheck-exporter` serves; `fleetcheck-exporter check` validates the
//! authority; `fleetcheck-exporter once` runs one collection and prints it.

mod landing;
mod metrics;
mod scheduler;
mod server;
mod shutdown;
mod state;
mod status;
mod webconfig;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use fleetcheck_core::{Authority, Collector, CollectorOptions, State};
use fleetcheck_daemon::logging;

/// Exit status for a bad authority or bad flags, distinct from runtime failures.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "fleetcheck-exporter",
    version,
    about = "Measures fleet consistency against the fleetcheck authority and exports it to Prometheus."
)]
struct Cli {
    /// The authority YAML file.
    #[arg(long = "config.file", default_value = "authority.yaml", global = true)]
    config_file: PathBuf,

    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", default_value = ":8397")]
    listen_address: String,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    telemetry_path: String,

    /// Web configuration file (exporter-toolkit format) enabling basic auth.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: logging::Level,

    /// Output format of log messages.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: logging::Format,

    /// Time between the starts of two collection cycles (e.g. 30s, 1m).
    #[arg(long = "collect.interval", default_value = "60s", value_parser = parse_duration)]
    interval: Duration,

    /// Hosts checked at the same time.
    #[arg(long = "collect.concurrency", default_value_t = 64, global = true)]
    concurrency: usize,

    /// SSH sessions kept open between cycles at most (least recently used are closed).
    #[arg(long = "collect.max-sessions", default_value_t = 1024, global = true)]
    max_sessions: usize,

    /// Do not export the per-pair families (entity_consistent, check_success,
    /// last_check_timestamp, inconsistency_info); for very large fleets.
    #[arg(long = "no-metrics.pairs")]
    no_pair_series: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the authority and print a summary (exit 0 when valid, 1 when not).
    Check,
    /// Run one collection, print it, and exit non-zero if any pair is not consistent.
    Once {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match fleetcheck_core::duration::parse(s)? {
        d if d.is_zero() => Err("must be greater than zero".to_string()),
        d => Ok(d),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    match cli.command {
        Some(Command::Check) => check(&cli.config_file),
        Some(Command::Once { format }) => runtime().block_on(once(&cli, format)),
        None => runtime().block_on(serve(cli)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn load(path: &Path) -> Result<Authority, ExitCode> {
    Authority::load(path).map_err(|e| {
        eprintln!("{}: {e:#}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(path: &Path) -> ExitCode {
    match Authority::load(path) {
        Ok(a) => {
            let local = a
                .hosts
                .values()
                .filter(|h| h.transport == fleetcheck_core::Transport::Local)
                .count();
            println!(
                "{}: SUCCESS: {} entities, {} hosts ({} local), {} groups, {} pairs",
                path.display(),
                a.entities.len(),
                a.checked_hosts().len(),
                local,
                a.groups.len(),
                a.pair_count()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: FAILED: {e:#}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn collector(cli: &Cli, control_dir: &Path, idle: Duration) -> Collector {
    Collector::new(CollectorOptions {
        concurrency: cli.concurrency,
        max_sessions: cli.max_sessions,
        control_dir: control_dir.to_path_buf(),
        session_idle: idle,
    })
}

/// A private directory for OpenSSH control sockets; removed on exit.
fn control_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("fleetcheck-ssh-")
        .tempdir()
        .context("cannot create a directory for SSH control sockets")
}

async fn once(cli: &Cli, format: OutputFormat) -> ExitCode {
    let authority = match load(&cli.config_file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let dir = match control_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let collector = collector(cli, dir.path(), Duration::from_secs(5));
    let snapshot = collector.collect(&authority).await;
    collector.shutdown().await;
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "duration_seconds": snapshot.duration.as_secs_f64(),
                "pairs": snapshot.pairs,
                "hosts": snapshot.hosts.iter().map(|h| serde_json::json!({
                    "host": h.name, "up": h.up, "duration_seconds": h.duration.as_secs_f64(), "error": h.error,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        }
        OutputFormat::Table => print_table(&snapshot),
    }
    if snapshot.pairs.iter().all(|p| p.state == State::Consistent) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_table(snapshot: &fleetcheck_core::Snapshot) {
    let rows: Vec<[String; 5]> = snapshot
        .pairs
        .iter()
        .map(|p| {
            [
                p.entity.clone(),
                p.host.clone(),
                p.state.to_string(),
                p.observed_md5.clone().unwrap_or_else(|| "-".into()),
                p.error
                    .clone()
                    .or_else(|| p.observed_version.clone().map(|v| format!("version {v}")))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ENTITY", "HOST", "STATE", "OBSERVED MD5", "DETAIL"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    let consistent = snapshot
        .pairs
        .iter()
        .filter(|p| p.state == State::Consistent)
        .count();
    println!(
        "\n{consistent} of {} pairs consistent; {} of {} hosts answered; {:.2}s",
        snapshot.pairs.len(),
        snapshot.hosts.iter().filter(|h| h.up).count(),
        snapshot.hosts.len(),
        snapshot.duration.as_secs_f64()
    );
}

async fn serve(cli: Cli) -> ExitCode {
    // Everything that can be wrong with the configuration is found before any
    // port is bound.
    let authority = match load(&cli.config_file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let addr = match fleetcheck_daemon::listen_address(&cli.listen_address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !cli.telemetry_path.starts_with('/') {
        eprintln!(
            "invalid --web.telemetry-path {:?}: must start with /",
            cli.telemetry_path
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let web = match &cli.web_config_file {
        None => webconfig::WebConfig::default(),
        Some(p) => match webconfig::WebConfig::load(p) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match run(cli, authority, addr, web).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exporter failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: Cli,
    authority: Authority,
    addr: std::net::SocketAddr,
    web: webconfig::WebConfig,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let dir = control_dir()?;
    // Masters of a crashed exporter go away by themselves after a few idle intervals.
    let idle = (cli.interval * 3).max(Duration::from_secs(60));
    let collector = Arc::new(collector(&cli, dir.path(), idle));
    tracing::info!(
        version = metrics::VERSION,
        revision = metrics::REVISION,
        address = %listener.local_addr()?,
        authority = %cli.config_file.display(),
        entities = authority.entities.len(),
        hosts = authority.checked_hosts().len(),
        pairs = authority.pair_count(),
        interval = %fleetcheck_core::duration::format(cli.interval),
        "fleetcheck-exporter started"
    );
    let shared = state::Shared::new(cli.config_file.clone(), authority);
    let (trigger, shutdown) = shutdown::channel();
    let server = Arc::new(server::Server {
        shared: shared.clone(),
        web,
        telemetry_path: cli.telemetry_path.clone(),
        pair_series: !cli.no_pair_series,
    });
    let http = tokio::spawn(server::serve(
        listener,
        server,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    let collection = tokio::spawn(scheduler::run(
        shared.clone(),
        collector.clone(),
        cli.interval,
        shutdown.clone(),
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("received SIGINT, shutting down"); break; }
            _ = hup.recv() => {
                tracing::info!("received SIGHUP, reloading the authority");
                let _ = shared.reload().await;
            }
        }
    }
    trigger.trigger();
    let _ = collection.await;
    let _ = http.await;
    collector.shutdown().await;
    drop(dir);
    tracing::info!("stopped");
    Ok(())
}
