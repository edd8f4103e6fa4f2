//! `loadtest run`: portfolio, sign-on of every connection, the load itself with a progress
//! bar, then merge of the per-connection results, verification, report, JSON and plot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authswitch::iso8583::FRAME_LEN_MAX_DEFAULT;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::admin::{self, AdminClient, AdminError};
use crate::cli::{Mode, RunConfig, CARDS_MAX};
use crate::conn::{self, Budget, ConnError, ConnOutcome, Shared};
use crate::merchant::Merchants;
use crate::plot::{self, PlotError};
use crate::portfolio::{self, Portfolio, PortfolioError};
use crate::stats::{self, ConnStats, Report};
use crate::template::RequestEncoder;
use crate::verify::{self, AccountTrack, Balance};

/// Time a connection has to sign on, at least.
const SIGN_ON_TIMEOUT_MIN: Duration = Duration::from_secs(5);
/// Progress bar refresh period.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Portfolio(#[from] PortfolioError),
    #[error("admin API: {0}")]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{cards} cards for {connections} connections: each connection needs a card")]
    TooFewCards { cards: usize, connections: u32 },
    #[error("--verify needs account ids: provision with --admin or use a cards file naming them")]
    NoAccountIds,
    #[error("{path}: {reason}")]
    Write { path: String, reason: String },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("cannot start the pacer thread: {0}")]
    Pacer(std::io::Error),
    #[error("a connection task failed: {reason}")]
    Task { reason: String },
}

/// The cards file if it exists, else provisioned cards (written to the cards file when one
/// is named), else synthesized ones.
async fn load_portfolio(
    cfg: &RunConfig,
    admin: Option<&AdminClient>,
    rng: &mut StdRng,
) -> Result<Portfolio, RunError> {
    if let Some(path) = cfg.cards_file.as_deref().filter(|p| p.exists()) {
        return Ok(portfolio::read(path, CARDS_MAX as usize)?);
    }
    let portfolio = match admin {
        Some(admin) => {
            let started = Instant::now();
            let portfolio =
                admin::provision(admin, cfg.cards, cfg.accounts, cfg.fund_minor).await?;
            if !cfg.quiet {
                eprintln!(
                    "loadtest: provisioned {} accounts and {} cards in {:.1} s",
                    portfolio.account_ids.len(),
                    portfolio.cards.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            portfolio
        }
        None => portfolio::synthesize(cfg.cards, cfg.accounts, rng),
    };
    if let Some(path) = cfg.cards_file.as_deref() {
        portfolio::write(path, &portfolio)?;
    }
    Ok(portfolio)
}

fn progress_bar(cfg: &RunConfig) -> ProgressBar {
    let (len, template) = match cfg.requests_max {
        Some(n) => (n, "{bar:40} {pos}/{len} requests {msg}"),
        None => (
            cfg.duration.as_millis() as u64,
            "{bar:40} {elapsed}/{duration} {msg}",
        ),
    };
    let target = if cfg.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn spawn_progress(shared: Arc<Shared>, bar: ProgressBar, by_requests: bool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_TICK);
        let mut previous = 0;
        loop {
            tick.tick().await;
            let done = shared.completed.load(Ordering::Relaxed);
            let sent = shared.sent.load(Ordering::Relaxed);
            let rate = (done - previous.min(done)) as f64 / PROGRESS_TICK.as_secs_f64();
            previous = done;
            if by_requests {
                bar.set_position(sent);
            } else {
                bar.set_position(shared.start.elapsed().as_millis() as u64);
            }
            bar.set_message(format!("sent {sent} answered {done} ({rate:.0}/s)"));
            if bar.is_finished() {
                return;
            }
        }
    });
}

/// Connects and signs on every connection, one after the other.
async fn connect_all(
    cfg: &RunConfig,
    encoder: &RequestEncoder,
) -> Result<Vec<conn::Connection>, RunError> {
    let mut connections = Vec::with_capacity(cfg.connections as usize);
    let timeout = cfg.timeout.max(SIGN_ON_TIMEOUT_MIN);
    for index in 0..cfg.connections {
        let frame_len_max = FRAME_LEN_MAX_DEFAULT;
        let conn = conn::open(
            index,
            cfg.connections,
            &cfg.target,
            encoder,
            frame_len_max,
            timeout,
        );
        connections.push(conn.await?);
    }
    Ok(connections)
}

/// Runs every connection to its end; the in-flight window is split as evenly as it goes.
async fn drive_all(
    cfg: &RunConfig,
    shared: &Arc<Shared>,
    connections: Vec<conn::Connection>,
) -> Result<Vec<ConnOutcome>, RunError> {
    let mut tasks = Vec::with_capacity(connections.len());
    for (i, conn) in connections.into_iter().enumerate() {
        let window = cfg.in_flight / cfg.connections
            + u32::from((i as u32) < cfg.in_flight % cfg.connections);
        tasks.push(tokio::spawn(conn::drive(shared.clone(), conn, window)));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.map_err(|e| RunError::Task {
            reason: e.to_string(),
        })?);
    }
    Ok(outcomes)
}

/// Runs the whole load test and returns its report (also written where asked).
pub async fn run(cfg: RunConfig) -> Result<Report, RunError> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let merchants = Merchants::generate(&mut rng);
    let admin = match cfg.admin.as_deref() {
        Some(addr) => Some(AdminClient::new(addr, &cfg.admin_token)?),
        None => None,
    };
    let portfolio = load_portfolio(&cfg, admin.as_ref(), &mut rng).await?;
    if portfolio.cards.len() < cfg.connections as usize {
        return Err(RunError::TooFewCards {
            cards: portfolio.cards.len(),
            connections: cfg.connections,
        });
    }
    let baseline = match (&admin, cfg.verify) {
        (Some(admin), true) if !portfolio.account_ids.is_empty() => {
            Some(admin::read_balances(admin, &portfolio.account_ids).await?)
        }
        (_, true) => return Err(RunError::NoAccountIds),
        _ => None,
    };
    let encoder = RequestEncoder::new(cfg.wire, FRAME_LEN_MAX_DEFAULT);
    let connections = connect_all(&cfg, &encoder).await?;
    let start = Instant::now();
    let ticks = match cfg.mode {
        Mode::Open => {
            Some(crate::pacer::spawn(cfg.tick, start + cfg.duration).map_err(RunError::Pacer)?)
        }
        Mode::Closed => None,
    };
    let shared = Arc::new(Shared {
        portfolio,
        merchants,
        mix: cfg.mix,
        encoder,
        frame_len_max: FRAME_LEN_MAX_DEFAULT,
        mode: cfg.mode,
        connections: cfg.connections,
        rate_per_s: cfg.rate_per_s,
        timeout: cfg.timeout,
        start,
        deadline: start + cfg.duration,
        tick: cfg.tick,
        ticks,
        budget: Budget::new(cfg.requests_max),
        sent: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        seed: cfg.seed,
    });
    let bar = progress_bar(&cfg);
    spawn_progress(shared.clone(), bar.clone(), cfg.requests_max.is_some());
    let outcomes = drive_all(&cfg, &shared, connections).await?;
    bar.finish_and_clear();
    let mut report = build_report(&cfg, &shared, &outcomes);
    if let (Some(admin), Some(before)) = (&admin, baseline) {
        let after = admin::read_balances(admin, &shared.portfolio.account_ids).await?;
        report.verify = Some(verify_accounts(
            &shared.portfolio,
            &before,
            &after,
            &outcomes,
        ));
    }
    if let Some(path) = &cfg.json {
        write_json(path, &report)?;
    }
    if let Some(path) = &cfg.plot {
        let mut all = ConnStats::default();
        outcomes.iter().for_each(|o| all.merge(&o.stats));
        let title = format!(
            "authswitch loadtest: {:?} loop, {} responses",
            cfg.mode, all.responses
        );
        plot::write_svg(path, &all.latency_us, &title)?;
    }
    Ok(report)
}

fn build_report(cfg: &RunConfig, shared: &Shared, outcomes: &[ConnOutcome]) -> Report {
    let mut all = ConnStats::default();
    for outcome in outcomes {
        all.merge(&outcome.stats);
    }
    let end = outcomes
        .iter()
        .filter_map(|o| o.last_response)
        .max()
        .unwrap_or_else(Instant::now);
    let duration_s = end.saturating_duration_since(shared.start).as_secs_f64();
    let throughput_per_s = if duration_s > 0.0 {
        (all.responses as f64 / duration_s * 10.0).round() / 10.0
    } else {
        0.0
    };
    Report {
        mode: cfg.mode,
        rate: (cfg.mode == Mode::Open).then_some(cfg.rate_per_s),
        in_flight: (cfg.mode == Mode::Closed).then_some(cfg.in_flight),
        connections: cfg.connections,
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        sent: all.sent,
        responses: all.responses,
        errors: all.errors,
        timeouts: all.timeouts,
        late: all.late,
        dropped: all.dropped,
        throughput_per_s,
        latency_us: stats::summarize(&all.latency_us),
        served_latency_us: stats::summarize(&all.served_latency_us),
        read_lag_us: (!all.read_lag_us.is_empty()).then(|| stats::summarize(&all.read_lag_us)),
        response_codes: stats::codes_map(&all),
        sent_by_kind: stats::kinds_map(&all),
        mix: cfg.mix.to_string(),
        seed: cfg.seed,
        wire: cfg.wire,
        verify: None,
    }
}

fn verify_accounts(
    portfolio: &Portfolio,
    before: &[Balance],
    after: &[Balance],
    outcomes: &[ConnOutcome],
) -> verify::VerifyReport {
    let mut merged: HashMap<u32, AccountTrack> = HashMap::new();
    for outcome in outcomes {
        for (account, track) in &outcome.tracks {
            merged.entry(*account).or_default().merge(track);
        }
    }
    let tracks: Vec<AccountTrack> = (0..portfolio.account_ids.len() as u32)
        .map(|a| merged.get(&a).copied().unwrap_or_default())
        .collect();
    verify::verify_all(&portfolio.account_ids, before, after, &tracks)
}

fn write_json(path: &Path, report: &Report) -> Result<(), RunError> {
    let fail = |reason: String| RunError::Write {
        path: path.display().to_string(),
        reason,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| fail(e.to_string()))
}
