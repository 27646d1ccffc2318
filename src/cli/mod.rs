//! Command-line interface: parses arguments, loads settings, wires the library
//! together for each command. `anyhow` lives here and nowhere in the library.

mod demo;
mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use lomi_sync::api::{ApiClient, ClientOptions};
use lomi_sync::config::{ApiKey, ConfigError, Settings, is_loopback};
use lomi_sync::query;
use lomi_sync::scheduler::{self, Daemon, SystemdNotifier};
use lomi_sync::sim::SimArgs;
use lomi_sync::store::{RunKind, Store, StoreError, WriterLock};
use lomi_sync::sync::{self, RunRequest, RunSummary, SyncError, SyncOptions};

/// Keeps a local SQLite mirror of your lomi. customers and their transactions.
///
/// The API key is read from the LOMI_API_KEY environment variable or from the file
/// named by api.api_key_file, never from the command line.
#[derive(Parser, Debug)]
#[command(name = "lomi-sync", version, about, long_about = None)]
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
        #[arg(long)]
        dry_run: bool,
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
    /// Serve a simulated lomi. Customers API on loopback (for trials and tests).
    // Boxed: the simulator's many switches would size every command like it.
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
}

/// Maps an error chain to an exit code.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
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

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Sim(args) => {
            lomi_sync::telemetry::init(&Default::default());
            lomi_sync::sim::run(*args, shutdown_signal())
                .await
                .context("the simulator stopped")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            db,
            customers,
            seed,
        } => demo::run(&db, customers, seed)
            .await
            .map(|_| ExitCode::SUCCESS),
        command => {
            let settings = load_settings(cli.config.as_deref())?;
            lomi_sync::telemetry::init(&settings.log);
            match command {
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
                Command::CheckConfig => check_config(&settings),
                Command::Sim(_) | Command::Demo { .. } => unreachable!("handled above"),
            }
        }
    }
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
    if let (Some(k), Some(u)) = (key.environment(), settings.api.environment())
        && k != u
    {
        tracing::warn!(
            key_environment = k,
            url_environment = u,
            "the API key is a {k} key but api.base_url is the {u} service; the key decides which data you get"
        );
    }
    Ok(key)
}

fn client(settings: &Settings, cancel: &CancellationToken) -> Result<ApiClient> {
    let key = api_key(settings)?;
    let opts = ClientOptions::from_settings(&settings.api).context("invalid [api] settings")?;
    if opts.base_url.scheme() == "http" && !is_loopback(&opts.base_url) {
        anyhow::bail!("refusing to send the API key over plain http");
    }
    Ok(ApiClient::new(opts, &key, cancel.clone())?)
}

pub fn sync_options(settings: &Settings) -> SyncOptions {
    SyncOptions {
        page_size: settings.api.page_size,
        concurrency: settings.api.concurrency as usize,
        settings: settings.sync.clone(),
        busy_timeout: settings.store.busy_timeout.0,
    }
}

async fn one_run(settings: &Settings, req: RunRequest, wait: bool) -> Result<ExitCode> {
    let cancel = shutdown_token();
    let client = client(settings, &cancel)?;
    let db = &settings.store.path;
    let _lock = WriterLock::acquire(db, req.kind.as_str(), wait)?;
    let progress = progress::for_terminal(req.kind.as_str());
    let result = sync::run(
        &client,
        db,
        &sync_options(settings),
        req,
        &cancel,
        &*progress,
    )
    .await;
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
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the {} run failed; the mirror keeps its last good state",
            req.kind.as_str()
        ))),
    }
}

async fn dry_run(settings: &Settings) -> Result<ExitCode> {
    let cancel = shutdown_token();
    let client = client(settings, &cancel)?;
    let progress = progress::for_terminal("dry run");
    let summary = sync::dry_run(&client, &sync_options(settings), &cancel, &*progress).await;
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
    let budgets = client.route_budgets();
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
    let line = scheduler::summary_line(s);
    tracing::info!(target: "lomi_sync::summary", "{line}");
    println!("{line}");
}

async fn daemon(settings: Settings) -> Result<ExitCode> {
    // Fail at start, not at the first tick, on anything a run would trip over.
    settings.schedule.parsed_cron()?;
    let cancel = shutdown_token();
    let client = client(&settings, &cancel)?;
    let db = settings.store.path.clone();
    let _lock = WriterLock::acquire(&db, "daemon", false)?;
    // Create and migrate the store now, so READY=1 means "the store is open".
    drop(Store::open(&db, settings.store.busy_timeout.0).context("cannot open the mirror")?);
    let daemon = Daemon {
        options: sync_options(&settings),
        settings,
        client,
        db,
        notifier: Arc::new(SystemdNotifier),
    };
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
    let store = Store::open_read_only(&settings.store.path, settings.store.busy_timeout.0)?;
    let report = store
        .status(runs)
        .context("cannot read the mirror's status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    if let Some(max) = max_age {
        let fresh = report
            .seconds_since_success
            .is_some_and(|s| s >= 0 && (s as u64) <= max.as_secs());
        if !fresh {
            eprintln!(
                "lomi-sync: the mirror is stale: last successful run {} ago, more than --max-age {}",
                report
                    .seconds_since_success
                    .map(
                        |s| humantime::format_duration(Duration::from_secs(s.max(0) as u64))
                            .to_string()
                    )
                    .unwrap_or_else(|| "never".into()),
                humantime::format_duration(max)
            );
            return Ok(ExitCode::from(code::STALE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(r: &lomi_sync::store::StatusReport) {
    println!("mirror: {}", r.database);
    match (&r.last_success_at, r.seconds_since_success) {
        (Some(at), Some(s)) => println!(
            "last successful run: {at} ({} ago)",
            humantime::format_duration(Duration::from_secs(s.max(0) as u64))
        ),
        _ => println!("last successful run: never"),
    }
    if let Some(w) = &r.walk_in_progress {
        println!("unfinished: {w}");
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
            run.requests,
            run.retries,
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
fn backup(settings: &Settings, path: &Path, force: bool) -> Result<ExitCode> {
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

fn run_query(settings: &Settings, sql: &str, format: QueryFormat) -> Result<ExitCode> {
    let store = Store::open_read_only(&settings.store.path, settings.store.busy_timeout.0)?;
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

fn check_config(settings: &Settings) -> Result<ExitCode> {
    let key = match settings.api_key() {
        Ok(k) => format!(
            "set ({}), redacted",
            k.environment()
                .map(|e| format!("{e} key"))
                .unwrap_or("unrecognised prefix".into())
        ),
        Err(e) => format!("NOT SET: {e}"),
    };
    println!("# effective settings (API key {key})");
    println!("{}", toml_like(settings)?);
    let schedule = settings.schedule.parsed_cron()?;
    println!(
        "# next fire times of schedule.cron = \"{}\" (UTC)",
        settings.schedule.cron
    );
    for t in schedule.upcoming(chrono::Utc).take(5) {
        println!("#   {}", t.format("%Y-%m-%d %H:%M:%S"));
    }
    if std::io::stdout().is_terminal() {
        println!("configuration OK");
    }
    Ok(ExitCode::SUCCESS)
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
