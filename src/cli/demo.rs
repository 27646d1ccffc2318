//! `lomi-sync demo`: the whole product in one command, with no API key. It starts the
//! simulator in-process on a free loopback port, backfills, changes the source, runs
//! an incremental sync, checks the mirror against the simulator's ground truth, and
//! answers a few questions in SQL.

use std::path::Path;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use lomi_sim::{Mutation, Sim, SimOptions};
use lomi_sync::app::Mirror;
use lomi_sync::config::{ApiKey, LogSettings, Settings};
use lomi_sync::query;
use lomi_sync::store::RunKind;
use lomi_sync::sync::estimate::Estimate;
use lomi_sync::sync::{NoProgress, RunRequest, RunSummary};
use lomi_sync::verify;

const QUERIES: &[(&str, &str)] = &[
    (
        "Customers by country",
        "SELECT country, count(*) AS customers FROM live_customers GROUP BY country ORDER BY customers DESC LIMIT 5",
    ),
    (
        "Top customers by completed revenue (XOF)",
        "SELECT customer_name, completed_count, completed_total FROM customer_revenue
         WHERE currency_code = 'XOF' ORDER BY completed_minor DESC LIMIT 5",
    ),
    (
        "Completed revenue per currency",
        "SELECT currency_code, sum(completed_count) AS payments, sum(revenue_minor) AS revenue_minor
         FROM daily_revenue GROUP BY currency_code ORDER BY payments DESC",
    ),
    (
        "What the incremental sync recorded",
        "SELECT entity, kind, count(*) AS changes FROM changes
         WHERE run_id = (SELECT max(id) FROM sync_runs WHERE kind = 'sync') GROUP BY entity, kind ORDER BY entity, kind",
    ),
];

/// The requests each transactions source spends on a backfill: the one the run used
/// (the feed, under the default `auto`) against the per-customer walk's estimate.
fn sources_line(backfill: &RunSummary, per_customer: &Estimate) -> String {
    if backfill.feed_pages == 0 {
        return format!(
            "transactions read per customer (the feed is not open): {} requests, estimated {}",
            backfill.requests,
            per_customer.requests()
        );
    }
    format!(
        "requests by source: the feed {} ({} feed pages, {} customer reads); per customer about {} \
         ({} transaction reads, one per paying customer, {} customer reads)",
        backfill.requests,
        backfill.feed_pages,
        backfill.customer_reads,
        per_customer.requests(),
        per_customer.transaction_reads,
        per_customer.detail_reads
    )
}

pub async fn run(db: &Path, customers: usize, seed: u64) -> Result<()> {
    lomi_sync::telemetry::init(&LogSettings {
        level: "warn".into(),
        ..LogSettings::default()
    });
    let sim = Sim::new(SimOptions {
        customers,
        seed,
        ..SimOptions::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port for the simulator")?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(
            sim.clone()
                .serve(listener, async move { stop.cancelled().await }),
        )
    };
    let base_url = format!("http://{addr}");
    println!(
        "lomi-sync demo: a simulated lomi. account with {customers} customers at {base_url} (seed {seed})\n"
    );

    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| {
                    format!("cannot replace the old demo mirror {}", db.display())
                });
            }
            _ => {}
        }
    }
    let mut settings = Settings::default();
    settings.api.base_url = base_url.parse()?;
    settings.api.requests_per_second = 0.0;
    settings.api.max_requests_per_window = 0;
    settings.store.path = db.to_owned();
    let key = ApiKey::new(SimOptions::default().api_key);
    let mirror = Mirror::build(&settings, &key, CancellationToken::new())?;
    let _lock = mirror.lock("demo", false)?;

    let run = async |kind: RunKind| {
        let req = RunRequest {
            kind,
            restart: false,
        };
        mirror.run(req, &NoProgress).await
    };
    // What the per-customer walk would send (two list requests), beside what the
    // default source (`auto`: the feed here) spends.
    let per_customer = mirror.quick_estimate().await?;
    let backfill = run(RunKind::Backfill).await?;
    println!("1. backfill into {}\n   {}", db.display(), backfill);
    println!("   {}\n", sources_line(&backfill, &per_customer));

    let changes = Mutation {
        create: 25,
        update: 40,
        delete: 15,
        add_tx: 150,
        settle: 40,
        delete_tx: 5,
        ..Mutation::default()
    };
    let report = sim.mutate(&changes);
    let restored = sim.mutate(&Mutation {
        restore: 3,
        ..Mutation::default()
    });
    println!(
        "2. meanwhile at the source: {} customers created, {} updated, {} deleted, {} restored; \
         {} payments made, {} changed status, {} removed\n",
        report.created.len(),
        report.updated.len(),
        report.deleted.len(),
        restored.restored.len(),
        report.tx_added.len(),
        report.tx_changed.len(),
        report.tx_deleted.len()
    );

    let live = sim.truth()["customers"].as_array().map_or(0, Vec::len);
    let incremental = run(RunKind::Sync).await?;
    println!(
        "3. incremental sync (from the feed's watermark, less sync.status_lookback)\n   {incremental}"
    );
    println!(
        "   {} requests, where re-reading every customer would take {} (1 + N)",
        incremental.requests,
        1 + live
    );
    let store = mirror.open_read_only()?;
    let pending = verify::differences(&store, &sim.truth(), usize::MAX)?;
    let (customer_diffs, tx_diffs): (Vec<_>, Vec<_>) =
        pending.iter().partition(|d| d.starts_with("customer"));
    let later = if backfill.feed_pages > 0 {
        "refunds and removals older than sync.status_lookback, which the feed's rolling re-read \
         reaches within sync.full_every"
    } else {
        "on customers whose payments the rolling schedule re-reads within sync.full_every"
    };
    println!(
        "   customers now equal the source ({} differences); {} transaction differences remain: {later}\n",
        customer_diffs.len(),
        tx_diffs.len()
    );

    let full = run(RunKind::Full).await?;
    println!("4. full reconciliation (what `lomi-sync sync --full` does)\n   {full}");
    let diffs = verify::differences(&store, &sim.truth(), 5)?;
    if diffs.is_empty() {
        println!("   the mirror equals the simulator's ground truth\n");
    } else {
        anyhow::bail!("the mirror differs from the source: {}", diffs.join("; "));
    }

    for (title, sql) in QUERIES {
        println!(
            "-- {title}\n{}",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let mut out = Vec::new();
        query::run(&store, sql, query::Format::Table, &mut out)?;
        println!("{}", String::from_utf8_lossy(&out));
    }
    println!(
        "Explore the mirror: sqlite3 {db}   or   LOMI_SYNC__STORE__PATH={db} lomi-sync query \"SELECT * FROM freshness\"",
        db = db.display()
    );
    stop.cancel();
    let _ = server.await;
    Ok(())
}
