//! Wiring: start-up (recovery, listeners, token), the metrics endpoint, and graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::runtime::Ledger;
use crate::server::Shared;

pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const ADMIN_TOKEN_ENV: &str = "AUTHSWITCH_ADMIN_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Start(#[from] crate::ledger::runtime::StartError),
    #[error("{what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Where the admin token comes from, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource {
    Environment,
    Config,
    File(PathBuf),
}

/// The admin token: the environment, else the config, else `<data_dir>/admin.token`
/// (generated with mode 0600 on first use). An empty token is never returned: the admin API
/// would take an absent Authorization header for it. An empty (or blank) variable counts as
/// unset; an empty config value or file is an error. Each is trimmed, as the file always was:
/// a secret mounted with a trailing newline would otherwise match no header, ever.
pub fn admin_token(config: &Config) -> Result<(String, TokenSource), AppError> {
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
        let token = token.trim();
        if !token.is_empty() {
            return Ok((token.to_string(), TokenSource::Environment));
        }
    }
    if let Some(token) = &config.admin.token {
        let token = token.trim();
        // Config validation refuses it already; checked again because an empty token opens
        // every route.
        if token.is_empty() {
            return Err(AppError::Config("admin.token must not be empty".into()));
        }
        return Ok((token.to_string(), TokenSource::Config));
    }
    if !config.admin.listen.ip().is_loopback() {
        return Err(AppError::Config(format!(
            "admin.listen {} is not a loopback address: configure admin.token or {ADMIN_TOKEN_ENV}",
            config.admin.listen
        )));
    }
    let path = config.data_dir.join(ADMIN_TOKEN_FILE);
    let io = |source| AppError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(io)?;
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Err(AppError::Config(format!(
            "{}: the admin token file is empty; write a token into it, or delete it to have \
             one generated",
            path.display()
        ))),
        Ok(text) => Ok((text.trim().to_string(), TokenSource::File(path.clone()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| io(std::io::Error::other(e)))?;
            let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            crate::ledger::router::write_secret_file(&path, format!("{token}\n").as_bytes())
                .map_err(io)?;
            Ok((token, TokenSource::File(path.clone())))
        }
        Err(e) => Err(io(e)),
    }
}

/// Runs the switch until SIGTERM or SIGINT; returns after a graceful shutdown.
pub fn serve_blocking(config: Config, demo: bool) -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_thread_count())
        .enable_all()
        .thread_name("authswitch-io")
        .build()
        .map_err(|source| AppError::Io {
            path: PathBuf::from("tokio runtime"),
            source,
        })?;
    runtime.block_on(async { serve(config, demo, shutdown_on_signal()).await })
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        trigger.cancel();
    });
    token
}

/// The whole server: recovery, listeners, then everything until `shutdown` fires.
pub async fn serve(
    config: Config,
    demo: bool,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    serve_reporting(config, demo, shutdown, |_| {}).await
}

/// The addresses the listeners actually bound (port 0 resolved).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub iso: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
}

/// `serve`, telling `on_ready` the bound addresses once recovery finished and the listeners
/// accept (in-process benchmarks and embedders use it).
pub async fn serve_reporting(
    config: Config,
    demo: bool,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Bound),
) -> Result<(), AppError> {
    crate::metrics::install();
    let ready = Arc::new(AtomicBool::new(false));
    let (token, source) = admin_token(&config)?;
    // Bind first so /healthz answers (and /readyz says not ready) during recovery.
    let metrics_listener = bind("metrics", config.metrics.listen).await?;
    let admin_listener = bind("admin", config.admin.listen).await?;
    let iso_listener = bind("ISO 8583", config.server.listen).await?;
    // Receive timestamps for `receive_wait_seconds`, inherited by every connection accepted
    // (each also asks for them itself); without them (not Linux) that histogram stays empty.
    if let Err(error) = crate::server::rxstamp::enable(&iso_listener) {
        tracing::info!(%error, "no receive timestamps on the ISO 8583 listener");
    }
    match &source {
        TokenSource::File(path) => tracing::info!(path = %path.display(), "admin token file"),
        other => tracing::info!(source = ?other, "admin token configured"),
    }
    if config.wal.fsync == crate::config::FsyncSetting::None {
        tracing::warn!("wal.fsync = none: approvals are NOT durable; benchmarks only");
    }
    let metrics_addr = local_addr(&metrics_listener, "metrics")?;
    let ledger_slot: Arc<parking_lot::RwLock<Option<Arc<Ledger>>>> = Default::default();
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        ready.clone(),
        ledger_slot.clone(),
        shutdown.clone(),
    ));
    let open_config = config.clone();
    let (ledger, report) = tokio::task::spawn_blocking(move || Ledger::open(&open_config))
        .await
        .expect("recovery task panicked")?;
    tracing::info!(
        shards = report.shards,
        records = report.records_replayed,
        cards = report.cards,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "recovery finished"
    );
    let ledger = Arc::new(ledger);
    crate::admin::apply_program_config(&ledger, &config)
        .await
        .map_err(AppError::Config)?;
    *ledger_slot.write() = Some(ledger.clone());
    let admin = crate::admin::AdminState::new(ledger.clone(), &config, token);
    if demo {
        crate::admin::demo::create(&admin, &config, iso_listener.local_addr().ok(), &source).await;
    }
    let bound = Bound {
        iso: local_addr(&iso_listener, "ISO 8583")?,
        admin: local_addr(&admin_listener, "admin")?,
        metrics: metrics_addr,
    };
    let admin_task = tokio::spawn(crate::admin::serve(admin_listener, admin, shutdown.clone()));
    ready.store(true, Ordering::Release);
    on_ready(bound);
    let shared = Arc::new(Shared::new(config, ledger.clone()));
    crate::server::run(iso_listener, shared, shutdown.clone()).await;
    let _ = admin_task.await;
    ready.store(false, Ordering::Release);
    *ledger_slot.write() = None;
    let _ = metrics_task.await;
    // Every connection has answered what it read; now drain the shards and flush the WALs.
    let ledger = Arc::try_unwrap(ledger).ok();
    tokio::task::spawn_blocking(move || {
        if let Some(ledger) = ledger {
            ledger.shutdown();
        }
    })
    .await
    .expect("shutdown task panicked");
    tracing::info!("shutdown complete");
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, AppError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AppError::Bind { what, addr, source })?;
    tracing::info!(listener = what, addr = %bound, "listening");
    Ok(listener)
}

fn local_addr(
    listener: &tokio::net::TcpListener,
    what: &'static str,
) -> Result<SocketAddr, AppError> {
    listener.local_addr().map_err(|source| AppError::Bind {
        what,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

#[derive(Clone)]
struct MetricsState {
    ready: Arc<AtomicBool>,
    ledger: Arc<parking_lot::RwLock<Option<Arc<Ledger>>>>,
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    ledger: Arc<parking_lot::RwLock<Option<Arc<Ledger>>>>,
    shutdown: CancellationToken,
) {
    let state = MetricsState { ready, ledger };
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let upkeep = tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            crate::metrics::upkeep();
        }
    });
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    upkeep.abort();
}

async fn metrics_text(State(state): State<MetricsState>) -> String {
    let ledger = state.ledger.read().clone();
    if let Some(ledger) = ledger {
        ledger.publish_gauges().await;
    }
    metrics::gauge!(crate::metrics::READY).set(if ready(&state) { 1.0 } else { 0.0 });
    crate::metrics::render()
}

fn ready(state: &MetricsState) -> bool {
    state.ready.load(Ordering::Acquire)
        && state
            .ledger
            .read()
            .as_ref()
            .is_some_and(|ledger| ledger.healthy())
}

async fn readyz(State(state): State<MetricsState>) -> (StatusCode, &'static str) {
    if ready(&state) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// `authswitch wal verify DIR`.
pub fn wal_verify(dir: &Path) -> Result<(), AppError> {
    crate::ledger::tools::verify(dir).map_err(AppError::Config)
}

/// `authswitch disk-check`: runs the check, prints its table, and writes the report as JSON
/// to `json` if asked.
pub fn disk_check(
    params: &crate::wal::diskcheck::DiskCheckParams,
    json: Option<&Path>,
) -> Result<(), AppError> {
    stop_disk_check_on_signals();
    let report = crate::wal::diskcheck::run_until(params, &DISK_CHECK_STOP)
        .map_err(|error| AppError::Config(error.to_string()))?;
    print!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("a report serializes");
        std::fs::write(path, text + "\n").map_err(|source| AppError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Set by SIGINT or SIGTERM during `disk-check`: the check then removes its files (up to
/// 4 GiB of them) and ends, where the default action would kill it and leave them behind.
static DISK_CHECK_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_disk_check_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe; nothing else is done here.
    DISK_CHECK_STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn stop_disk_check_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is async-signal-safe, and
        // it stays valid for the life of the process.
        let previous = unsafe {
            libc::signal(
                signal,
                on_disk_check_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        if previous == libc::SIG_ERR {
            tracing::warn!(
                signal,
                "cannot catch the signal; the check's files may stay behind"
            );
        }
    }
}

/// `authswitch wal dump DIR`.
pub fn wal_dump(dir: &Path) -> Result<(), AppError> {
    crate::ledger::tools::dump(dir).map_err(AppError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_is_trimmed_like_the_file() {
        if std::env::var_os(ADMIN_TOKEN_ENV).is_some() {
            return; // The environment's token would win; nothing to check here.
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.admin.token = Some(" s3cret\n".into());
        let (token, source) = admin_token(&config).unwrap();
        assert_eq!(token, "s3cret");
        assert!(matches!(source, TokenSource::Config));
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "t0ken\n").unwrap();
        config.admin.token = None;
        assert_eq!(admin_token(&config).unwrap().0, "t0ken");
    }
}
