//! fleetcheck-remediator: the binary. Flags, logging, config and authority
//! loaded and checked before any port is bound (exit status 2 when they are
//! bad), then the HTTP server and the scheduler until SIGTERM/SIGINT, which
//! stop intake and let running repairs finish within the grace period.
//! SIGHUP reloads the config and the authority.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use fleetcheck_daemon::logging;
use fleetcheck_remediator::engine::{Engine, Loaded};
use fleetcheck_remediator::journal::Journal;
use fleetcheck_remediator::metrics::Metrics;
use fleetcheck_remediator::server;
use tokio::signal::unix::{signal, SignalKind};

/// Repairs fleet drift reported by Alertmanager, behind safety gates, and
/// verifies every repair with the same collector as the exporter.
#[derive(Debug, Parser)]
#[command(name = "fleetcheck-remediator", version)]
struct Cli {
    /// The remediator's config file.
    #[arg(long = "config.file", default_value = "remediator.yaml")]
    config_file: PathBuf,
    /// Address to listen on (`:8398` means every interface).
    #[arg(long = "web.listen-address", default_value = ":8398")]
    listen_address: String,
    /// Directory of the job journal (SQLite).
    #[arg(long = "storage.path", default_value = "data/")]
    storage_path: PathBuf,
    #[arg(long = "log.level", value_enum, default_value = "info")]
    log_level: logging::Level,
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: logging::Format,
    /// Accept webhooks without authentication (only for trusted networks).
    #[arg(long = "web.insecure-no-auth")]
    insecure_no_auth: bool,
    /// Journal what would run; run nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);

    // Config and authority are checked before anything is bound.
    let loaded = match Loaded::load(&cli.config_file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fleetcheck-remediator: {:#}", anyhow::Error::from(e));
            return ExitCode::from(2);
        }
    };
    if loaded.config.auth.is_empty() && !cli.insecure_no_auth {
        eprintln!(
            "fleetcheck-remediator: {}: no webhook authentication configured; set auth.bearer_token_file or auth.basic_auth, or pass --web.insecure-no-auth",
            cli.config_file.display()
        );
        return ExitCode::from(2);
    }
    let addr =
        match fleetcheck_daemon::listen_address(&cli.listen_address).map_err(anyhow::Error::msg) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fleetcheck-remediator: {e:#}");
                return ExitCode::from(2);
            }
        };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleetcheck-remediator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, loaded, addr));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fleetcheck-remediator failed");
            eprintln!("fleetcheck-remediator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, loaded: Loaded, addr: SocketAddr) -> Result<()> {
    if loaded.config.auth.is_empty() {
        tracing::warn!("webhook authentication is off (--web.insecure-no-auth)");
    }
    let journal = Journal::open(&cli.storage_path).context("opening the journal")?;
    let metrics = Metrics::new(fleetcheck_daemon::REVISION);
    let grace = loaded.config.shutdown_grace;
    let storage = std::fs::canonicalize(&cli.storage_path).unwrap_or(cli.storage_path.clone());
    let engine = Arc::new(Engine::new(
        loaded,
        cli.config_file.clone(),
        journal,
        metrics,
        storage,
        cli.dry_run,
    ));
    let resumed = engine.recover().context("recovering interrupted jobs")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), storage = %cli.storage_path.display(), dry_run = cli.dry_run, resumed, "fleetcheck-remediator listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(listener, engine.clone(), stop_rx));
    let scheduler = tokio::spawn(engine.clone().run());

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let e = engine.clone();
                let _ = tokio::task::spawn_blocking(move || e.reload()).await;
            }
        }
    }
    tracing::info!(grace = ?grace, "stopping: intake closed, letting running repairs finish");
    let left = engine.stop(grace).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    scheduler.abort();
    if left > 0 {
        tracing::warn!(
            jobs = left,
            "repairs still running at the end of the grace period; they resume on the next start"
        );
    }
    if server_failed(&engine) {
        bail!("the journal became unavailable");
    }
    tracing::info!("stopped");
    Ok(())
}

fn server_failed(engine: &Engine) -> bool {
    engine.journal.ping().is_err()
}
