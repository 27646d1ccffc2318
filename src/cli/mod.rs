//! Command-line interface: parses arguments, loads settings, and runs each command on
//! the library's one wiring ([`lomi_sync::app::Mirror`]). `anyhow` lives here and
//! nowhere in the library.

#[cfg(feature = "sim")]
mod demo;
mod progress;
mod webhooks;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "sim")]
use lomi_sim::SimArgs;
use lomi_sync::app::{AppError, Mirror};
use lomi_sync::config::{ApiKey, ConfigError, Settings};
use lomi_sync::query;
use lomi_sync::scheduler::SystemdNotifier;
use lomi_sync::store::{Location, RunKind, Store, StoreError};
use lomi_sync::sync::estimate::Pace;
use lomi_sync::sync::{RunRequest, RunSummary, SyncError};

/// What `--help` says after the commands: where the key, the settings and the mirror
/// come from, which the flags alone do not show.
const AFTER_HELP: &str = "\
Environment:
  LOMI_API_KEY             the API key (or the file named by api.api_key_file); never a flag
  LOMI_SYNC__SECTION__KEY  overrides one setting, with double underscores, e.g.
                           LOMI_SYNC__STORE__PATH=/var/lib/lomi-sync/mirror.db
                           LOMI_SYNC__API__BASE_URL=https://sandbox.api.lomi.africa
  PGPASSWORD               the PostgreSQL password, with store.url (or store.password_file)
  NO_COLOR                 no colour in log lines (there is none off a terminal anyway)

Settings: built-in defaults, then the TOML file (--config PATH, else config/lomi-sync.toml
if it exists), then LOMI_SYNC__* variables. `lomi-sync check-config` shows the result.

The mirror: store.path, by default ./lomi-sync.db in the working directory (with
lomi-sync.db.lock, -wal and -shm beside it). Or PostgreSQL: store.url, e.g.
postgres://lomi@db.example:5432/analytics?sslmode=verify-full (sslmode as libpq reads
it; no password in the URL), the mirror in the schema store.schema (default lomi).";

/// Keeps a local SQLite mirror of your lomi. customers and their transactions.
///
/// The API key is read from the LOMI_API_KEY environment variable or from the file
/// named by api.api_key_file, never from the command line.
#[derive(Parser, Debug)]
#[command(name = "lomi-sync", version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    /// Config file (TOML). Default: config/lomi-sync.toml, if it exists.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Full walk: every customer and every customer's transactions (resumable).
    Backfill {
        /// Forget an unfinished backfill and start over.
        #[arg(long)]
        restart: bool,
        /// Walk everything, write nothing: count customers, transactions and requests.
        /// Costs as many requests as the backfill; --estimate is the cheap answer.
        #[arg(long)]
        dry_run: bool,
        /// Walk only the customer list (about one request per page of customers) and
        /// print the requests a backfill sends and how long they take at the configured rate.
        #[arg(long, conflicts_with_all = ["dry_run", "restart", "wait"])]
        estimate: bool,
        /// Wait for another run holding the mirror instead of failing.
        #[arg(long)]
        wait: bool,
    },
    /// One incremental run now.
    Sync {
        /// Re-read every active customer's transactions (a full reconciliation).
        #[arg(long)]
        full: bool,
        /// Wait for another run holding the mirror instead of failing.
        #[arg(long)]
        wait: bool,
    },
    /// The daemon: run on the schedule.cron timetable until SIGTERM/SIGINT.
    Run,
    /// Recent runs, totals and freshness of the mirror.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit with status 5 when the last successful run is older than this (e.g. 2h).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        max_age: Option<Duration>,
        /// How many runs to list.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Run one read-only SQL statement against the mirror.
    Query {
        /// The SQL, e.g. "SELECT count(*) FROM live_customers".
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Copy the mirror to PATH: one whole, checked file, safe while a run or the daemon writes.
    Backup {
        /// Where to write the copy, e.g. /var/backups/lomi-sync/mirror-2025-06-01.db.
        path: PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// See it work: a built-in simulator, a backfill, a round of changes, a sync.
    #[cfg(feature = "sim")]
    Demo {
        /// Where to write the demo mirror (replaced if it exists).
        #[arg(long, default_value = "lomi-demo.db")]
        db: PathBuf,
        /// Customers in the simulated account.
        #[arg(long, default_value_t = 3000)]
        customers: usize,
        /// Seed of the simulated data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Validate the configuration and show the effective settings and next fire times.
    CheckConfig,
    /// Register the daemon's webhook endpoint with the vendor, or list what is registered.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Serve a simulated lomi. Customers API on loopback (for trials and tests).
    // Boxed: the simulator's many switches would size every command like it.
    #[cfg(feature = "sim")]
    Sim(Box<SimArgs>),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

/// Exit codes, documented in the README.
pub mod code {
    pub const FAILURE: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const KEY_REJECTED: u8 = 3;
    pub const LOCKED: u8 = 4;
    pub const STALE: u8 = 5;
    /// A one-shot run stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report it);
    /// the next run resumes it.
    pub const INTERRUPTED: u8 = 130;
}

/// Maps an error chain to an exit code.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some()
            || matches!(cause.downcast_ref(), Some(AppError::Config(_)))
        {
            return code::CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<SyncError>() {
            if e.is_fatal() {
                return code::KEY_REJECTED;
            }
            if let SyncError::Store(StoreError::Locked { .. }) = e {
                return code::LOCKED;
            }
        }
        if let Some(StoreError::Locked { .. }) = cause.downcast_ref::<StoreError>() {
            return code::LOCKED;
        }
        if cause.downcast_ref::<webhooks::UsageError>().is_some() {
            return code::CONFIG;
        }
        // `server.listen` names an address this machine will not let us bind.
        if let Some(lomi_sync::server::ServerError::Bind { .. }) = cause.downcast_ref() {
            return code::CONFIG;
        }
        if let Some(lomi_sync::api::ApiError::Unauthorized { .. }) = cause.downcast_ref() {
            return code::KEY_REJECTED;
        }
    }
    code::FAILURE
}

pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli))
}

/// `demo` and `sim` read no settings: a `--config` given to them is refused rather than
/// silently ignored (a missing file would otherwise pass unnoticed).
#[cfg(feature = "sim")]
fn refuse_config(command: &'static str, config: Option<&Path>) -> Result<()> {
    match config {
        Some(path) => Err(ConfigError::ConfigNotRead {
            command,
            path: path.to_owned(),
        }
        .into()),
        None => Ok(()),
    }
}

/// The whole error chain on one line, `what: why: root cause`, leaving out a cause
/// whose text its parent already ends with (an I/O error both quoted and chained would
/// print twice).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    #[cfg(feature = "sim")]
    match cli.command {
        Command::Sim(_) => refuse_config("sim", cli.config.as_deref())?,
        Command::Demo { .. } => refuse_config("demo", cli.config.as_deref())?,
        _ => {}
    }
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Sim(args) => {
            lomi_sync::telemetry::init(&Default::default());
            lomi_sim::run(*args, shutdown_signal())
                .await
                .context("the simulator stopped")?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Command::Demo {
            db,
            customers,
            seed,
        } => demo::run(&db, customers, seed)
            .await
            .map(|_| ExitCode::SUCCESS),
        command => with_settings(command, cli.config.as_deref()).await,
    }
}

/// The commands that read the settings (every one but `sim` and `demo`).
async fn with_settings(command: Command, config: Option<&Path>) -> Result<ExitCode> {
    let settings = load_settings(config)?;
    lomi_sync::telemetry::init(&settings.log);
    if !matches!(command, Command::CheckConfig) {
        for w in env_warnings() {
            tracing::warn!("{w}");
        }
    }
    if matches!(
        command,
        Command::Backfill {
            dry_run: false,
            estimate: false,
            ..
        } | Command::Sync { .. }
            | Command::Run
    ) {
        settings.check_store_path()?;
    }
    match command {
        Command::Backfill { estimate: true, .. } => estimate(&settings).await,
        Command::Backfill {
            restart,
            dry_run: true,
            ..
        } => {
            if restart {
                anyhow::bail!(
                    "--restart and --dry-run do not go together: a dry run writes nothing"
                );
            }
            dry_run(&settings).await
        }
        Command::Backfill { restart, wait, .. } => {
            one_run(
                &settings,
                RunRequest {
                    kind: RunKind::Backfill,
                    restart,
                },
                wait,
            )
            .await
        }
        Command::Sync { full, wait } => {
            let kind = if full { RunKind::Full } else { RunKind::Sync };
            one_run(
                &settings,
                RunRequest {
                    kind,
                    restart: false,
                },
                wait,
            )
            .await
        }
        Command::Run => daemon(settings).await,
        Command::Status {
            json,
            max_age,
            runs,
        } => status(&settings, json, max_age, runs),
        Command::Query { sql, format } => run_query(&settings, &sql, format),
        Command::Backup { path, force } => backup(&settings, &path, force),
        Command::CheckConfig => check_config(&settings, config),
        Command::Webhooks { command } => webhooks::run(&settings, command).await,
        #[cfg(feature = "sim")]
        Command::Sim(_) | Command::Demo { .. } => unreachable!("handled above"),
    }
}

fn env_warnings() -> Vec<String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    lomi_sync::config::env_warnings(&env)
}

fn load_settings(path: Option<&Path>) -> Result<Settings> {
    Settings::load(path).context("cannot load the configuration")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A token cancelled by the first SIGINT/SIGTERM: one signal fanned out to every task.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing the page in flight");
        t.cancel();
    });
    token
}

fn api_key(settings: &Settings) -> Result<ApiKey> {
    let key = settings.api_key().context("cannot read the API key")?;
    if let Some(w) = key_mismatch(&key, settings) {
        tracing::warn!("{w}");
    }
    Ok(key)
}

/// A test key against the live URL, or a live key against the sandbox: the key decides
/// which data comes back, so the URL is not what the user thinks it is.
fn key_mismatch(key: &ApiKey, settings: &Settings) -> Option<String> {
    match (key.environment(), settings.api.environment()) {
        (Some(k), Some(u)) if k != u => Some(format!(
            "the API key is a {k} key (lomi_sk_{k}_...) but api.base_url is the {u} service ({}); the key decides which data you get",
            settings.api.base_url
        )),
        _ => None,
    }
}

/// The mirror these settings describe, with the key read (and checked against the URL).
fn mirror(settings: &Settings, cancel: &CancellationToken) -> Result<Mirror> {
    let key = api_key(settings)?;
    Ok(Mirror::build(settings, &key, cancel.clone())?)
}

async fn one_run(settings: &Settings, req: RunRequest, wait: bool) -> Result<ExitCode> {
    let mirror = mirror(settings, &shutdown_token())?;
    let _lock = mirror.lock(req.kind.as_str(), wait)?;
    let expected = if mirror.walks_everything(req.kind) {
        announce(&mirror, false).await
    } else {
        None
    };
    let pace = Pace::from_settings(&settings.api);
    let progress = progress::for_terminal(req.kind.as_str(), expected, pace, mirror.client());
    let result = mirror.run(req, &*progress).await;
    progress.finish();
    match result {
        Ok(summary) => {
            report(&summary);
            Ok(ExitCode::SUCCESS)
        }
        Err(SyncError::Interrupted) => {
            eprintln!(
                "lomi-sync: interrupted; the next `lomi-sync {}` resumes where this one stopped",
                req.kind.as_str()
            );
            Ok(ExitCode::from(code::INTERRUPTED))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the {} run failed; the mirror keeps its last good state",
            req.kind.as_str()
        ))),
    }
}

async fn dry_run(settings: &Settings) -> Result<ExitCode> {
    let mirror = mirror(settings, &shutdown_token())?;
    let expected = announce(&mirror, true).await;
    let pace = Pace::from_settings(&settings.api);
    let progress = progress::for_terminal("dry run", expected, pace, mirror.client());
    let summary = mirror.dry_run(&*progress).await;
    progress.finish();
    let summary = summary.context("the dry run failed")?;
    println!(
        "dry run: {} customers, {} transactions, {} requests ({} retries) in {:.1}s; nothing was written",
        summary.customers_seen,
        summary.transactions_seen,
        summary.requests,
        summary.retries,
        summary.duration_secs
    );
    let budgets = mirror.client().route_budgets();
    if let Some(t) = lomi_sync::api::budget::estimate(&budgets, settings.api.budget_share) {
        print_budget_estimate(&budgets, settings.api.budget_share, t);
    } else if settings.api.requests_per_second > 0.0 {
        let secs = summary.requests as f64 / settings.api.requests_per_second;
        println!(
            "at api.requests_per_second = {}, a backfill would take about {}",
            settings.api.requests_per_second,
            humantime::format_duration(Duration::from_secs(secs as u64))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The first line of a backfill or dry run: how many requests it will send, at which
/// rate, set by which setting, and so how long it takes (a 3,000-customer backfill at the
/// default 4 requests/s is 12 minutes; it should say so before, not after). Costs two
/// requests; returns the requests expected of the run's own client, for the progress ETA.
/// A failure here is only logged: the run's own preflight reports it properly.
async fn announce(mirror: &Mirror, dry: bool) -> Option<u64> {
    // One try per read, on a client of its own: with the API down, the run's preflight
    // reports it after its retries, and this line must not spend them first.
    let once = mirror.without_retries().ok()?;
    let settings = mirror.settings();
    match once.quick_estimate().await {
        Ok(e) => {
            let e = if dry { e.for_dry_run() } else { e };
            let pace = Pace::from_settings(&settings.api);
            tracing::info!(
                customers = e.customers,
                requests = e.requests(),
                requests_per_second = settings.api.requests_per_second,
                "a full {} of {} customers (as the list counts them): {}",
                if dry { "dry run" } else { "backfill" },
                e.customers,
                pace.describe(e.requests())
            );
            Some(e.requests())
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not estimate the run's requests");
            None
        }
    }
}

/// `backfill --estimate`: the list alone, and the sums a backfill would spend.
async fn estimate(settings: &Settings) -> Result<ExitCode> {
    let mirror = mirror(settings, &shutdown_token())?;
    let e = mirror.estimate().await.context("the estimate failed")?;
    let pace = Pace::from_settings(&settings.api);
    println!(
        "customers: {} listed, {} with payments to read",
        e.customers, e.transaction_reads
    );
    println!(
        "a backfill sends about {} requests: {} list pages, {} transaction reads; {} customer detail reads are left to later runs (sync.details_per_run)",
        e.requests(),
        e.list_reads,
        e.transaction_reads,
        e.detail_reads
    );
    println!("time: {}", pace.describe(e.requests()));
    println!(
        "this estimate sent {} requests (list pages only); `backfill --dry-run` would send {}",
        e.spent,
        e.clone().for_dry_run().requests()
    );
    Ok(ExitCode::SUCCESS)
}

/// The dry run's estimate under the service's per-route budgets (issue 15).
fn print_budget_estimate(
    budgets: &[lomi_sync::api::budget::RouteReport],
    share: f64,
    total: Duration,
) {
    for b in budgets.iter().filter(|b| b.limit > 0) {
        let t = lomi_sync::api::budget::route_time(b.requests, b.limit, b.window, share);
        println!(
            "  {}: {} requests, {} per {} window at api.budget_share = {share}: about {}",
            b.route.template(),
            b.requests,
            b.limit,
            humantime::format_duration(b.window),
            t.map_or_else(
                || "-".into(),
                |t| humantime::format_duration(Duration::from_secs(t.as_secs())).to_string()
            )
        );
    }
    println!(
        "under the service's per-route budgets, a backfill would take about {}",
        humantime::format_duration(Duration::from_secs(total.as_secs()))
    );
}

fn report(s: &RunSummary) {
    tracing::info!(target: "lomi_sync::summary", "{s}");
    println!("{s}");
}

async fn daemon(settings: Settings) -> Result<ExitCode> {
    // The cron expression was parsed with the settings: a bad one never gets here.
    let cancel = shutdown_token();
    let key = api_key(&settings)?;
    let mirror = Mirror::build_for_daemon(&settings, &key, cancel.clone())?;
    let _lock = mirror.lock("daemon", false)?;
    // The listener's secret and address are checked before the mirror is touched.
    let listening = match settings.server.listen {
        Some(addr) => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let secret = settings.webhook_secret_from(&env)?;
            let listener = lomi_sync::server::bind(addr)?;
            Some(lomi_sync::scheduler::Listening { listener, secret })
        }
        None => None,
    };
    // Create and migrate the store now, so READY=1 means "the store is open"; the
    // daemon's one writer thread keeps it open for its whole life.
    let store = mirror.open_store().context("cannot open the mirror")?;
    let mut daemon = mirror.into_daemon(Arc::new(SystemdNotifier), store);
    if let Some(l) = listening {
        daemon = daemon.serve(l);
    }
    tracing::info!("daemon started");
    daemon.run(cancel).await?;
    tracing::info!("daemon stopped");
    Ok(ExitCode::SUCCESS)
}

fn status(
    settings: &Settings,
    json: bool,
    max_age: Option<Duration>,
    runs: usize,
) -> Result<ExitCode> {
    let store = Store::open_read_only(&settings.store_location()?, settings.store.busy_timeout.0)?;
    let mut report = store
        .status(runs)
        .context("cannot read the mirror's status")?;
    // In feed mode no customer's transactions are re-read one by one: the feed's
    // rolling re-read covers them all.
    let per_customer = report
        .transactions_source
        .as_ref()
        .is_none_or(|s| s.source == "per_customer");
    if per_customer {
        report.payments_not_reread = store
            .not_reread_by_last_success(settings.sync.full_every.0)
            .context("cannot read the mirror's status")?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let fill = settings.sync.fetch_details && settings.sync.details_per_run > 0;
        print_status(&report, fill);
    }
    if let Some(max) = max_age {
        let fresh = report
            .seconds_since_success
            .is_some_and(|s| s >= 0 && (s as u64) <= max.as_secs());
        if !fresh {
            eprintln!(
                "lomi-sync: {}",
                stale_message(report.seconds_since_success, max)
            );
            return Ok(ExitCode::from(code::STALE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `status --max-age` fails, in words.
fn stale_message(seconds_since_success: Option<i64>, max: Duration) -> String {
    match seconds_since_success {
        Some(s) => format!(
            "the mirror is stale: last successful run {} ago, more than --max-age {}",
            humantime::format_duration(Duration::from_secs(s.max(0) as u64)),
            humantime::format_duration(max)
        ),
        None => "the mirror is stale: no successful run yet (run `lomi-sync backfill`)".into(),
    }
}

/// `fill`: runs read missing details (`sync.fetch_details` on, `sync.details_per_run`
/// above 0), so the customers lacking them are filled by later runs.
fn print_status(r: &lomi_sync::store::StatusReport, fill: bool) {
    println!("mirror: {}", r.database);
    match (&r.last_success_at, r.seconds_since_success) {
        (Some(at), Some(s)) => println!(
            "last successful run: {at} ({} ago)",
            humantime::format_duration(Duration::from_secs(s.max(0) as u64))
        ),
        _ => println!("last successful run: none yet"),
    }
    if let Some(s) = &r.transactions_source {
        println!("transactions source: {s}");
    }
    if let Some(n) = &r.payments_not_reread {
        println!("{}", n.to_string().replace("this run", "that run"));
    }
    if let Some(at) = r.runs.first().and_then(|run| run.resume_at.as_deref()) {
        println!(
            "last run deferred by the rate limit: the first scheduled run after {at} resumes it"
        );
    }
    match (&r.walk_in_progress, &r.writer) {
        (Some(w), _) => println!("walk: {w}"),
        (None, Some(holder)) => println!("writer: {holder}"),
        (None, None) => {}
    }
    let t = &r.totals;
    println!(
        "customers: {} live, {} deleted; transactions: {} live, {} deleted; {} changes recorded",
        t.live_customers,
        t.deleted_customers,
        t.live_transactions,
        t.deleted_transactions,
        t.changes
    );
    match (t.customers_lacking_details, fill) {
        (0, _) => {}
        (n, true) => {
            println!("{n} customers lack details; filled by later runs (sync.details_per_run)")
        }
        (n, false) => println!(
            "{n} customers lack details; no run reads them (sync.fetch_details is off or \
             sync.details_per_run is 0)"
        ),
    }
    println!();
    println!(
        "{:>5}  {:<8}  {:<27}  {:>9}  {:<11}  {:>6}  {:>8}  {:>7}  {:>7}  {:<23}  {:<23}  error",
        "run",
        "kind",
        "started",
        "duration",
        "outcome",
        "pages",
        "requests",
        "retries",
        "skipped",
        "customers +/~/-/↺",
        "transactions +/~/-/↺"
    );
    for run in &r.runs {
        println!(
            "{:>5}  {:<8}  {:<27}  {:>9}  {:<11}  {:>6}  {:>8}  {:>7}  {:>7}  {:<23}  {:<23}  {}",
            run.id,
            run.kind,
            run.started_at,
            run.duration_secs
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_else(|| "-".into()),
            run.outcome,
            run.pages,
            counter(run, run.requests),
            counter(run, run.retries),
            run.records_skipped,
            format!(
                "{}/{}/{}/{}",
                run.customers_inserted,
                run.customers_updated,
                run.customers_deleted,
                run.customers_restored
            ),
            format!(
                "{}/{}/{}/{}",
                run.transactions_inserted,
                run.transactions_updated,
                run.transactions_deleted,
                run.transactions_restored
            ),
            run.error.as_deref().unwrap_or("")
        );
    }
    print_route_budgets(&r.route_budgets);
}

/// Per route: the service's last known budget and the 429s of the runs shown.
fn print_route_budgets(rows: &[lomi_sync::store::RouteBudgetRow]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<34}  {:>6}  {:>9}  {:<22}  429s",
        "route", "limit", "remaining", "resets at"
    );
    let show = |v: Option<i64>| v.map_or_else(|| "-".into(), |v| v.to_string());
    for b in rows {
        println!(
            "{:<34}  {:>6}  {:>9}  {:<22}  {}",
            b.route,
            show(b.limit),
            show(b.remaining),
            b.reset_at.as_deref().unwrap_or("-"),
            b.rate_limited
        );
    }
}

/// `lomi-sync backup`: no key and no writer lock needed (a read transaction suffices).
/// A PostgreSQL mirror is refused (exit 2): the server's own `pg_dump` backs up its
/// schema, consistently, while the daemon writes.
fn backup(settings: &Settings, path: &Path, force: bool) -> Result<ExitCode> {
    if let Location::Postgres(t) = settings.store_location()? {
        return Err(webhooks::UsageError(pg_backup_advice(&t)).into());
    }
    let r = lomi_sync::store::backup(
        &settings.store.path,
        path,
        force,
        settings.store.busy_timeout.0,
    )
    .context("cannot back up the mirror")?;
    println!(
        "backed up {} to {}: {} customers, {} transactions, {} runs, {} bytes; quick_check {}",
        settings.store.path.display(),
        r.path.display(),
        r.customers,
        r.transactions,
        r.runs,
        r.bytes,
        r.check
    );
    Ok(ExitCode::SUCCESS)
}

/// What `backup` says of a PostgreSQL mirror: which command does it instead.
fn pg_backup_advice(t: &lomi_sync::store::pg::PgTarget) -> String {
    format!(
        "`backup` copies the SQLite file, and this mirror is in PostgreSQL ({}); back it up with \
         the server's tools: pg_dump --schema={} --format=custom --file=lomi.dump '{}' \
         (pg_dump reads the password from PGPASSWORD or ~/.pgpass)",
        t.shown(),
        t.schema(),
        t.url()
    )
}

/// A run records its requests when it ends: a running one shows `-`, not 0.
fn counter(run: &lomi_sync::store::RunRow, n: i64) -> String {
    if run.outcome == "running" {
        "-".into()
    } else {
        n.to_string()
    }
}

fn run_query(settings: &Settings, sql: &str, format: QueryFormat) -> Result<ExitCode> {
    let store = Store::open_read_only(&settings.store_location()?, settings.store.busy_timeout.0)?;
    let format = match format {
        QueryFormat::Table => query::Format::Table,
        QueryFormat::Csv => query::Format::Csv,
        QueryFormat::Json => query::Format::Json,
        QueryFormat::Jsonl => query::Format::Jsonl,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    query::run(&store, sql, format, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(settings: &Settings, config: Option<&Path>) -> Result<ExitCode> {
    settings.check_store_path()?;
    let mut warnings = env_warnings();
    let key = match settings.api_key() {
        Ok(k) => {
            warnings.extend(key_mismatch(&k, settings));
            format!(
                "set ({}, from {}), redacted",
                k.environment()
                    .map(|e| format!("{e} key"))
                    .unwrap_or("unrecognised prefix".into()),
                match &settings.api.api_key_file {
                    Some(p) => format!("api.api_key_file {}", p.display()),
                    None => lomi_sync::config::API_KEY_ENV.to_string(),
                }
            )
        }
        Err(e) => format!("NOT SET: {e}"),
    };
    match Settings::source_file(config) {
        Some(p) => println!("# config file: {}", p.display()),
        None => println!(
            "# config file: none (no --config, and no {} here): defaults",
            lomi_sync::config::DEFAULT_CONFIG_PATH
        ),
    }
    let mut vars: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&format!("{}__", lomi_sync::config::ENV_PREFIX)))
        .collect();
    vars.sort();
    if vars.is_empty() {
        println!("# environment: no LOMI_SYNC__* variables");
    } else {
        println!("# environment: {}", vars.join(", "));
    }
    for w in &warnings {
        println!("# warning: {w}");
        eprintln!("lomi-sync: warning: {w}");
    }
    println!("# store: {}", store_line(settings)?);
    println!("# effective settings (API key {key})");
    println!("{}", toml_like(settings)?);
    let schedule = settings.schedule.cron.schedule();
    println!(
        "# next fire times of schedule.cron = \"{}\" (UTC)",
        settings.schedule.cron
    );
    let upcoming: Vec<_> = schedule.upcoming(chrono::Utc).take(5).collect();
    for t in &upcoming {
        println!("#   {}", t.format("%Y-%m-%d %H:%M:%S"));
    }
    if upcoming.is_empty() {
        // Valid, so not an error; but `run` would stop at once (scheduler.rs).
        let w = format!(
            "schedule.cron = \"{}\" never fires again: `lomi-sync run` would stop at once; \
             write one that does, e.g. \"0 */15 * * * *\"",
            settings.schedule.cron
        );
        println!("# warning: {w}");
        eprintln!("lomi-sync: warning: {w}");
    }
    if std::io::stdout().is_terminal() {
        println!("configuration OK");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the mirror is, for `check-config`: the file, or the PostgreSQL schema and
/// where its password comes from (never the password).
fn store_line(settings: &Settings) -> Result<String> {
    Ok(match settings.store_location()? {
        Location::Sqlite(p) => format!("SQLite file {}", p.display()),
        Location::Postgres(t) => format!(
            "PostgreSQL {}, sslmode={}, password {}",
            t.shown(),
            t.ssl_mode().as_str(),
            match (&settings.store.password_file, t.has_password()) {
                (Some(p), _) => format!("from store.password_file {}", p.display()),
                (None, true) => format!("from {}", lomi_sync::config::PG_PASSWORD_ENV),
                (None, false) => format!(
                    "NOT SET (neither store.password_file nor {}): fine only for trust or peer authentication",
                    lomi_sync::config::PG_PASSWORD_ENV
                ),
            }
        ),
    })
}

/// Settings as JSON grouped by section: the TOML-shaped view `check-config` prints.
fn toml_like(settings: &Settings) -> Result<String> {
    let v = serde_json::to_value(settings)?;
    let mut out = String::new();
    if let Some(sections) = v.as_object() {
        for (section, body) in sections {
            out.push_str(&format!("[{section}]\n"));
            if let Some(fields) = body.as_object() {
                for (k, v) in fields {
                    if !v.is_null() {
                        out.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Quoting {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn an_error_line_prints_a_quoted_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let root = io.to_string();
        let err = anyhow::Error::new(Quoting {
            path: "/x/m.db.lock",
            source: io,
        })
        .context("the backfill run failed");
        assert_eq!(
            error_line(&err),
            format!("the backfill run failed: /x/m.db.lock: {root}")
        );
    }

    #[test]
    fn stale_without_a_successful_run_says_so_in_words() {
        let m = stale_message(None, Duration::from_secs(3600));
        assert!(
            m.contains("no successful run yet") && !m.contains("never"),
            "{m}"
        );
        let m = stale_message(Some(7200), Duration::from_secs(3600));
        assert!(m.contains("2h ago") && m.contains("--max-age 1h"), "{m}");
    }
}
