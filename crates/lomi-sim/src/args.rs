//! Command-line flags of `lomi-sync sim`.

use std::net::IpAddr;
use std::time::Duration;

use super::{
    Drift, Faults, Feed, FieldOverride, IdField, IdFormat, Paging, RateLimit, RetryAfterStyle,
    SimOptions, TimestampStyle, WebhookFaults,
};

/// Run a local simulator of the lomi. Customers API (for tests, demos and trying the
/// mirror without an API key).
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// TCP port to listen on; 0 picks a free port (the line printed at start-up says which).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to listen on. Loopback unless you mean to expose the simulator.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Number of customers generated at start-up.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Seed of the generated data: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// API key clients must send (`X-API-KEY` or `Authorization: Bearer`).
    #[arg(
        long,
        env = "LOMI_SIM_API_KEY",
        default_value = "test_key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// Mean number of transactions per customer (about 35% of customers never pay).
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    pub tx_per_customer: f64,
    /// Largest page size served; larger `pageSize` values are capped.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_page_size: u32,
    /// JSON key of customer ids: `id` (as documented) or `customer_id` (as live).
    #[arg(long, value_enum, default_value_t = IdField::Id)]
    pub id_field: IdField,
    /// Form of customer ids: `prefixed` (`cus_...`, as documented) or `uuid` (as live).
    #[arg(long, value_enum, default_value_t = IdFormat::Prefixed)]
    pub id_format: IdFormat,
    /// Behave like the live service where it differs from the docs: list items carry
    /// `metadata: null` and no `environment`.
    #[arg(long)]
    pub live_quirks: bool,
    /// Share of generated customers that share the `created_at` of the one before them
    /// (bulk imports); 1 gives them all one `created_at`.
    #[arg(long, default_value_t = 0.01, value_parser = probability)]
    pub bulk_import_share: f64,
    /// Return customers sharing a `created_at` in a new order on every list request (no
    /// tie-breaker in the sort, as the live service may do).
    #[arg(long)]
    pub shuffle_ties: bool,
    /// Add this to every list page's `totalCount` (negative: under-report).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub total_count_delta: i64,
    /// Add this to every list page's `totalPages`, so it disagrees with `totalCount`.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub total_pages_delta: i64,
    /// Serve at most this many rows per list page while offsetting by the requested
    /// `pageSize` (a silent cap); 0 for none.
    #[arg(long, default_value_t = 0)]
    pub row_cap: u32,
    /// Answer 404 on both feed routes (`GET /transactions`, `GET /transactions/{id}`), as
    /// for a key without access to them.
    #[arg(long)]
    pub feed_disabled: bool,
    /// Serve at most this many rows per feed page while offsetting by the requested
    /// `pageSize` (a silent cap below the service's 1,000); 0 for none.
    #[arg(long, default_value_t = 0)]
    pub feed_row_cap: u32,
    /// New transactions created after each feed page is served.
    #[arg(long, default_value_t = 0)]
    pub feed_drift_insert: u32,
    /// Probability of a 500 `internal_error`.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p500: f64,
    /// Probability of a 502 with an HTML body (as from a proxy).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p502_html: f64,
    /// Probability of a 503 `service_unavailable`.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p503: f64,
    /// Probability of a 429 `rate_limit_exceeded`.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p429: f64,
    /// `Retry-After` seconds of the 429 and 503 faults.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Probability of a slow response.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_slow: f64,
    /// Delay of a slow response, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub slow_ms: u64,
    /// Probability that the connection is closed without a response.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_close: f64,
    /// Probability of a 200 whose JSON body is cut in half.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_truncate: f64,
    /// Probability of a 200 with an error body instead of a list page.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_error_body_list: f64,
    /// Probability of a 200 with an error body instead of a customer.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_error_body_get: f64,
    /// Probability of a 200 `{"data":[],"error":{...}}` instead of a transactions list.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub p_error_body_transactions: f64,
    /// How the 429 and 503 faults write `Retry-After`: `seconds` (--retry-after-secs),
    /// or a value that is no usable hint: `zero`, `negative`, `garbage`, `past-date`.
    #[arg(long, value_enum, default_value_t = RetryAfterStyle::Seconds)]
    pub retry_after_style: RetryAfterStyle,
    /// How timestamps are written: `z-millis` (as documented), `pg-micro` (as live:
    /// `2025-06-01T10:00:00.123456+00:00`), `offset-no-colon`, `negative-offset`,
    /// `space`, `z-nanos`.
    #[arg(long, value_enum, default_value_t = TimestampStyle::ZMillis)]
    pub timestamp_style: TimestampStyle,
    /// Serve one field of one record with another value, as `ID:FIELD=JSON`
    /// (`cus_...:postal_code=75001`); repeatable.
    #[arg(long = "mistype", value_parser = field_override)]
    pub mistyped: Vec<FieldOverride>,
    /// Customers inserted at the top of the list each time a list page is served.
    #[arg(long, default_value_t = 0)]
    pub drift_insert: u32,
    /// Customers deleted each time a list page is served.
    #[arg(long, default_value_t = 0)]
    pub drift_delete: u32,
    /// Enforce this many requests per window and per route (answering 429 past it, and
    /// sending the `X-RateLimit-*` headers on every response), as the live service does
    /// with 5000 per 15 minutes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Length of the rate-limit window, in seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_window_secs: u64,
    /// Probability that a webhook delivery is lost (never sent).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub webhook_drop: f64,
    /// Probability that a webhook delivery is sent twice (same event id).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub webhook_duplicate: f64,
    /// Probability that a webhook delivery is held back --webhook-reorder-delay-ms, so
    /// later events arrive first.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub webhook_reorder: f64,
    /// Hold of a reordered webhook delivery, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub webhook_reorder_delay_ms: u64,
    /// Probability that a webhook attempt is signed with a wrong key.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub webhook_bad_signature: f64,
    /// First retry's wait of a failed webhook delivery, in milliseconds, doubled each
    /// retry (the vendor's 5 s; lower it to scale the schedule down).
    #[arg(long, default_value_t = 5000)]
    pub webhook_retry_base_ms: u64,
    /// Retries of a failed webhook delivery before it is given up.
    #[arg(long, default_value_t = 5)]
    pub webhook_max_retries: u32,
    /// Time limit of one webhook attempt, in milliseconds.
    #[arg(long, default_value_t = 4000)]
    pub webhook_timeout_ms: u64,
}

impl SimArgs {
    pub fn options(&self) -> SimOptions {
        SimOptions {
            customers: self.customers,
            seed: self.seed,
            api_key: self.api_key.clone(),
            tx_per_customer: self.tx_per_customer,
            max_page_size: self.max_page_size as usize,
            id_field: self.id_field,
            id_format: self.id_format,
            live_quirks: self.live_quirks,
            bulk_import_share: self.bulk_import_share,
            faults: Faults {
                p500: self.p500,
                p502_html: self.p502_html,
                p503: self.p503,
                p429: self.p429,
                retry_after_secs: self.retry_after_secs,
                p_slow: self.p_slow,
                slow_ms: self.slow_ms,
                p_close: self.p_close,
                p_truncate: self.p_truncate,
                p_error_body_list: self.p_error_body_list,
                p_error_body_get: self.p_error_body_get,
                p_error_body_transactions: self.p_error_body_transactions,
                retry_after_style: self.retry_after_style,
                timestamp_style: self.timestamp_style,
                mistyped: self.mistyped.clone(),
            },
            drift: Drift {
                insert_per_page: self.drift_insert,
                delete_per_page: self.drift_delete,
            },
            paging: Paging {
                shuffle_ties: self.shuffle_ties,
                total_count_delta: self.total_count_delta,
                total_pages_delta: self.total_pages_delta,
                row_cap: self.row_cap,
            },
            feed: Feed {
                disabled: self.feed_disabled,
                row_cap: self.feed_row_cap,
                insert_per_page: self.feed_drift_insert,
            },
            rate_limit: self.rate_limit.map(|requests| RateLimit {
                requests,
                window: Duration::from_secs(self.rate_window_secs),
            }),
            webhooks: WebhookFaults {
                p_drop: self.webhook_drop,
                p_duplicate: self.webhook_duplicate,
                p_reorder: self.webhook_reorder,
                reorder_delay_ms: self.webhook_reorder_delay_ms,
                p_bad_signature: self.webhook_bad_signature,
                retry_base_ms: self.webhook_retry_base_ms,
                max_retries: self.webhook_max_retries,
                timeout_ms: self.webhook_timeout_ms,
            },
        }
    }
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

/// `ID:FIELD=JSON`, e.g. `cus_00ab:postal_code=75001` or `tx_01:gross_amount="abc"`.
fn field_override(s: &str) -> Result<FieldOverride, String> {
    let (target, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` should be ID:FIELD=JSON"))?;
    let (id, field) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("`{target}` should be ID:FIELD"))?;
    let value = serde_json::from_str(value).map_err(|e| format!("`{value}` is not JSON: {e}"))?;
    Ok(FieldOverride {
        id: id.to_string(),
        field: field.to_string(),
        value,
    })
}

fn non_negative(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("{x} must be a finite number >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn defaults_match_sim_options_defaults() {
        let cli = Cli::try_parse_from(["sim"]).expect("defaults parse");
        let opts = cli.sim.options();
        let expected = SimOptions::default();
        assert_eq!(cli.sim.port, 8787);
        assert_eq!(cli.sim.bind.to_string(), "127.0.0.1");
        assert_eq!(opts.customers, expected.customers);
        assert_eq!(opts.seed, expected.seed);
        assert_eq!(opts.tx_per_customer, expected.tx_per_customer);
        assert_eq!(opts.max_page_size, expected.max_page_size);
        assert_eq!(opts.id_field, expected.id_field);
        assert_eq!(opts.id_format, expected.id_format);
        assert_eq!(opts.faults, expected.faults);
        assert_eq!(opts.drift, expected.drift);
        assert_eq!(opts.paging, expected.paging);
        assert_eq!(opts.feed, expected.feed);
        assert_eq!(opts.bulk_import_share, expected.bulk_import_share);
        assert_eq!(opts.rate_limit, None);
        assert_eq!(opts.webhooks, expected.webhooks);
    }

    #[test]
    fn flags_map_to_options() {
        let cli = Cli::try_parse_from([
            "sim",
            "--port=0",
            "--id-field=customer_id",
            "--id-format=uuid",
            "--live-quirks",
            "--p503=0.25",
            "--drift-insert=2",
            "--rate-limit=10",
            "--rate-window-secs=60",
            "--shuffle-ties",
            "--total-count-delta=-5",
            "--row-cap=200",
            "--p-error-body-transactions=0.5",
            "--retry-after-style=past-date",
            "--timestamp-style=pg-micro",
            "--mistype=cus_1:postal_code=75001",
            "--feed-disabled",
            "--feed-row-cap=300",
            "--feed-drift-insert=4",
            "--webhook-drop=0.2",
            "--webhook-duplicate=0.1",
            "--webhook-reorder=0.1",
            "--webhook-bad-signature=0.05",
            "--webhook-retry-base-ms=20",
        ])
        .expect("flags parse");
        let opts = cli.sim.options();
        assert_eq!(opts.id_field, IdField::CustomerId);
        assert_eq!(opts.id_format, IdFormat::Uuid);
        assert!(opts.live_quirks);
        assert_eq!(opts.faults.p503, 0.25);
        assert_eq!(opts.drift.insert_per_page, 2);
        assert!(opts.paging.shuffle_ties);
        assert_eq!(opts.paging.total_count_delta, -5);
        assert_eq!(opts.paging.row_cap, 200);
        assert_eq!(
            opts.feed,
            Feed {
                disabled: true,
                row_cap: 300,
                insert_per_page: 4
            }
        );
        assert_eq!(
            opts.rate_limit,
            Some(RateLimit {
                requests: 10,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(
            opts.webhooks,
            WebhookFaults {
                p_drop: 0.2,
                p_duplicate: 0.1,
                p_reorder: 0.1,
                p_bad_signature: 0.05,
                retry_base_ms: 20,
                ..WebhookFaults::default()
            }
        );
        assert_eq!(opts.faults.p_error_body_transactions, 0.5);
        assert_eq!(opts.faults.retry_after_style, RetryAfterStyle::PastDate);
        assert_eq!(opts.faults.timestamp_style, TimestampStyle::PgMicro);
        assert_eq!(
            opts.faults.mistyped,
            [FieldOverride {
                id: "cus_1".into(),
                field: "postal_code".into(),
                value: serde_json::json!(75001)
            }]
        );
        assert!(Cli::try_parse_from(["sim", "--mistype=cus_1:postal_code"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--p500=1.5"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--max-page-size=0"]).is_err());
    }
}
