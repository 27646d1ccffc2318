//! Typed settings: built-in defaults, then a TOML file, then `LOMI_SYNC__SECTION__KEY`
//! environment variables, validated once at start-up so that a bad value is reported
//! before any database is created or any request is sent.
//!
//! The API key is deliberately not a setting: it comes from `LOMI_API_KEY` or from the
//! file named by `api.api_key_file`, never from the command line (where `ps` would show
//! it) nor from the config file (which tends to end up in version control).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "LOMI_API_KEY";
/// Prefix of the environment variables that override settings (`LOMI_SYNC__API__PAGE_SIZE`).
pub const ENV_PREFIX: &str = "LOMI_SYNC";
/// Config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/lomi-sync.toml";

/// Everything that can go wrong before a run starts; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {path} does not exist; pass an existing file to --config")]
    MissingFile {
        /// The path `--config` gave.
        path: PathBuf,
    },
    /// The file or the environment does not parse into settings (a wrong type, an unknown
    /// key); the text is the parser's, with a suggestion where one fits.
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A setting parsed but its value is unusable; `key` names it (`store.path`).
    #[error("invalid configuration: {key} {problem}")]
    Invalid {
        /// The setting, as written in the file (`store.path`).
        key: &'static str,
        /// What is wrong with its value, and what would do.
        problem: String,
    },
    /// Neither `LOMI_API_KEY` nor `api.api_key_file` gives a key.
    #[error(
        "no API key: set the LOMI_API_KEY environment variable or api.api_key_file \
         (a file holding only the key)"
    )]
    MissingApiKey,
    /// `api.api_key_file` could not be read.
    #[error(
        "cannot read the API key file {path}: {source}; check api.api_key_file and its permissions"
    )]
    KeyFile {
        /// The key file (`api.api_key_file`).
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Neither `LOMI_WEBHOOK_SECRET` nor `webhooks.secret_file` gives a secret, while
    /// `server.listen` is set.
    #[error(
        "no webhook secret: set webhooks.secret_file (a file holding only the secret, as \
         `lomi-sync webhooks register` writes it) or the LOMI_WEBHOOK_SECRET environment variable"
    )]
    MissingWebhookSecret,
    /// `webhooks.secret_file` could not be read, or holds only whitespace.
    #[error("cannot read the webhook secret file {path}: {problem}; check webhooks.secret_file")]
    WebhookSecretFile {
        /// The file (`webhooks.secret_file`).
        path: PathBuf,
        /// What went wrong (the system's error, or "it is empty").
        problem: String,
    },
    /// `api.api_key_file` holds only whitespace.
    #[error("the API key file {path} is empty; write the key into it")]
    EmptyKeyFile {
        /// The key file (`api.api_key_file`).
        path: PathBuf,
    },
    /// A `LOMI_SYNC__...` environment variable that maps to no setting.
    #[error("invalid configuration: environment variable {var} names no setting ({key}){hint}")]
    UnknownEnv {
        /// The variable's name.
        var: String,
        /// The setting it would name, as spelt (`api.page_sise`).
        key: String,
        /// `; did you mean ...?`, or empty.
        hint: String,
    },
    /// `--config` given to a command that reads no settings.
    #[error(
        "`{command}` reads no settings, so --config {path} would be ignored; leave --config out"
    )]
    ConfigNotRead {
        /// The command.
        command: &'static str,
        /// The file `--config` named.
        path: PathBuf,
    },
}

/// The API key. It only leaves this type through [`ApiKey::expose`], which the HTTP
/// client calls to build a header; `Debug` and `Display` never print it, so it cannot
/// leak into logs, error chains or panics by accident.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key` as given; [`Settings::api_key`] reads it, trimmed, from `LOMI_API_KEY` or
    /// `api.api_key_file`.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The environment the key belongs to, from its documented prefix.
    pub fn environment(&self) -> Option<&'static str> {
        if self.0.starts_with("lomi_sk_live_") {
            Some("live")
        } else if self.0.starts_with("lomi_sk_test_") {
            Some("test")
        } else {
            None
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A duration written as `30s`, `15m`, `24h` or `1h 30m` in config files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"24h\""
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

/// All settings. Every field has a default, so an empty file is a valid configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[api]`: how to reach the API and how hard to push it.
    pub api: ApiSettings,
    /// `[store]`: where the mirror lives.
    pub store: StoreSettings,
    /// `[sync]`: what an incremental run refreshes.
    pub sync: SyncSettings,
    /// `[schedule]`: when the daemon runs.
    pub schedule: ScheduleSettings,
    /// `[log]`: log output.
    pub log: LogSettings,
    /// `[server]`: the daemon's HTTP listener (webhooks, `/metrics`, `/healthz`).
    pub server: ServerSettings,
    /// `[webhooks]`: where the webhook signing secret lives.
    pub webhooks: WebhookSettings,
}

/// The daemon's HTTP listener: `POST /webhooks/lomi`, `GET /metrics`, `GET /healthz`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`127.0.0.1:9810`); none (the default) runs no listener.
    /// Put a TLS reverse proxy in front of it to receive the vendor's webhooks, which
    /// the vendor only sends to public HTTPS URLs (NOTES.md, Webhooks).
    pub listen: Option<std::net::SocketAddr>,
    /// `/healthz` answers 200 while the last successful run is younger than this, 503
    /// otherwise. Default 1 h: four missed 15-minute ticks.
    pub healthy_within: HumanDuration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: None,
            healthy_within: Duration::from_secs(3600).into(),
        }
    }
}

/// Webhook deliveries: the secret that signs them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// A file holding only the endpoint's signing secret (`whsec_...`), as `lomi-sync
    /// webhooks register` writes it (mode 0600). Without it, `LOMI_WEBHOOK_SECRET`. The
    /// secret is never a setting's value, so it never lands in a config dump or a log.
    pub secret_file: Option<PathBuf>,
}

/// Environment variable holding the PostgreSQL password when `store.password_file` is
/// not set (libpq's own).
pub const PG_PASSWORD_ENV: &str = "PGPASSWORD";

/// Environment variable holding the webhook signing secret when `webhooks.secret_file`
/// is not set.
pub const WEBHOOK_SECRET_ENV: &str = "LOMI_WEBHOOK_SECRET";

/// The webhook signing secret (`whsec_...`). Like [`ApiKey`], it leaves this type only
/// through [`WebhookSecret::expose`]; `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps `secret` as given.
    pub fn new(secret: impl Into<String>) -> Self {
        WebhookSecret(secret.into())
    }
    /// The secret itself, as the HMAC key only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to reach the lomi. API and how hard to push it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// `https://api.lomi.africa` (live) or `https://sandbox.api.lomi.africa` (test),
    /// parsed and checked as the settings load ([`BaseUrl`]).
    pub base_url: BaseUrl,
    /// A file that holds the API key (e.g. a systemd credential); else `LOMI_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// Customers per list page.
    pub page_size: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Whole-request timeout (connect, send, receive the body).
    pub timeout: HumanDuration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: HumanDuration,
    /// Retries of one request after the first attempt, before the run fails.
    pub max_retries: u32,
    /// Upper bound of the exponential backoff between retries.
    pub max_backoff: HumanDuration,
    /// The longest `Retry-After` the client agrees to wait; longer fails the run.
    pub max_retry_after: HumanDuration,
    /// Average request rate; 0 means unlimited.
    pub requests_per_second: f64,
    /// Requests allowed per `rate_window` (sliding); 0 means unlimited.
    pub max_requests_per_window: u32,
    /// The window of `max_requests_per_window` (the live service uses 15 minutes).
    pub rate_window: HumanDuration,
    /// The share of each route's rate-limit window (as the server's `X-RateLimit-*`
    /// headers report it) the mirror may use; the rest is left for the merchant's own
    /// systems behind the same IP. In (0, 1].
    pub budget_share: f64,
    /// Responses larger than this are refused, so a broken proxy cannot exhaust memory.
    pub max_body_bytes: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            base_url: BaseUrl::parse("https://api.lomi.africa").expect("the default URL is valid"),
            api_key_file: None,
            page_size: 200,
            concurrency: 8,
            timeout: Duration::from_secs(30).into(),
            connect_timeout: Duration::from_secs(10).into(),
            max_retries: 8,
            max_backoff: Duration::from_secs(60).into(),
            max_retry_after: Duration::from_secs(1800).into(),
            requests_per_second: 4.0,
            max_requests_per_window: 3000,
            rate_window: Duration::from_secs(900).into(),
            budget_share: 0.6,
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where the mirror lives.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The SQLite file. Its directory must exist and be writable. Unused when `url` is set.
    pub path: PathBuf,
    /// How long a writer waits for a reader's lock before giving up (PostgreSQL: the
    /// session's `lock_timeout`).
    pub busy_timeout: HumanDuration,
    /// `postgres://user@host:port/dbname?sslmode=...`: mirror into PostgreSQL instead of
    /// the SQLite file. No password here: it comes from `password_file` or `PGPASSWORD`.
    pub url: Option<String>,
    /// The PostgreSQL schema the mirror lives in (created if missing).
    pub schema: String,
    /// A file holding only the PostgreSQL password (else `PGPASSWORD`, else none).
    pub password_file: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: PathBuf::from("lomi-sync.db"),
            busy_timeout: Duration::from_secs(10).into(),
            url: None,
            schema: "lomi".into(),
            password_file: None,
        }
    }
}

/// What an incremental run refreshes: the request economy knobs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Staleness bound: every customer's transactions are re-read at least this often.
    pub full_every: HumanDuration,
    /// Customers with a payment this recent are re-read on every run.
    pub hot_window: HumanDuration,
    /// Customers with a pending payment this recent are re-read on every run.
    pub pending_window: HumanDuration,
    /// Walk the list twice, `status=active` then `status=inactive`, so that customers
    /// with no transaction at all cost no transactions request.
    pub use_status_filter: bool,
    /// Read `GET /customers/{id}` for customers whose list item has `metadata: null`
    /// (the live list hides metadata, NOTES.md), as a background fill: a backfill
    /// writes list items (metadata unknown) and later runs read the details.
    pub fetch_details: bool,
    /// Customers lacking details one incremental or full run reads (one
    /// `GET /customers/{id}` each), changed ones first, then newest first; 0 = none.
    /// The default, 1,000, is a fifth of the live service's 5,000 requests per 15
    /// minutes on that route, so a run every 15 minutes leaves the rest to the
    /// merchant's own systems (NOTES.md, "Errors"); the requests are paced like every
    /// other (`api.budget_share`).
    pub details_per_run: u32,
    /// Requests one incremental run may spend on transaction refreshes; 0 = no cap.
    pub max_requests_per_run: u32,
    /// Where transactions are read from: the org-wide feed, one request per customer, or
    /// the feed when the key may read it (NOTES.md, "The org-wide transactions feed").
    pub transactions_source: TransactionsSource,
    /// In feed mode, an incremental run re-reads the feed back this far from the newest
    /// `created_at` the previous run saw (its watermark), for status changes (pending ->
    /// completed -> refunded) of recent transactions.
    pub status_lookback: HumanDuration,
}

/// `sync.transactions_source`: how a run reads transactions (issue 14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionsSource {
    /// The default. One probe of `GET /transactions` per run: the feed when it
    /// answers, else (403/404/405) the per-customer walk, said once in the log and
    /// shown by `status`. The feed spends about 1,000 times fewer requests on
    /// transactions, sees every new payment on the next run, and re-reads the whole
    /// feed within `sync.full_every` (its rolling re-read).
    #[default]
    Auto,
    /// `GET /transactions` (1,000 rows a request, whoever the customer); a key without
    /// access to it fails the run.
    Feed,
    /// `GET /customers/{id}/transactions` for each customer worth re-reading (one
    /// request per active customer in a backfill), never probing the feed.
    PerCustomer,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            full_every: Duration::from_secs(24 * 3600).into(),
            hot_window: Duration::from_secs(2 * 24 * 3600).into(),
            pending_window: Duration::from_secs(7 * 24 * 3600).into(),
            use_status_filter: true,
            fetch_details: true,
            details_per_run: 1000,
            max_requests_per_run: 0,
            transactions_source: TransactionsSource::Auto,
            status_lookback: Duration::from_secs(7 * 24 * 3600).into(),
        }
    }
}

/// The daemon's timetable.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Cron expression with a seconds field: `sec min hour day-of-month month day-of-week`,
    /// parsed as the settings load ([`CronSchedule`]).
    pub cron: CronSchedule,
    /// Run once at start instead of waiting for the first tick.
    pub run_on_start: bool,
    /// Force a full reconciliation walk (every customer's transactions) this often.
    pub full_every: Option<HumanDuration>,
    /// How long SIGTERM waits for the page in flight before giving up.
    pub shutdown_timeout: HumanDuration,
    /// A scheduled run that would wait longer than this for a route's rate-limit
    /// window (the live service's 429 asks for 900 s) stops at its checkpoint instead,
    /// recorded `deferred` with the time it may resume; the first tick after that time
    /// resumes the walk. One-shot commands (`backfill`, `sync`) wait instead.
    pub defer_after: HumanDuration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            cron: CronSchedule::parse("0 */15 * * * *").expect("the default cron is valid"),
            run_on_start: true,
            full_every: None,
            shutdown_timeout: Duration::from_secs(30).into(),
            defer_after: Duration::from_secs(60).into(),
        }
    }
}

/// Log output.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter (`info`, `lomi_sync=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `pretty` or `json`.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

/// The log line format (`log.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

impl Settings {
    /// Loads defaults, then `file` (or `config/lomi-sync.toml` if present), then the
    /// environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// [`Settings::load`] with an explicit environment, so tests need not mutate the
    /// process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::MissingFile {
                        path: path.to_owned(),
                    });
                }
                builder =
                    builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name(DEFAULT_CONFIG_PATH)
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        check_env_keys(env)?;
        let env_map: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let settings: Settings =
            builder
                .build()
                .and_then(|c| c.try_deserialize())
                .map_err(|e| {
                    ConfigError::Load(with_suggestion(&without_repeated_key(&e.to_string())))
                })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The config file `load` reads for `file`: the one given, else the default one if
    /// it exists; `None` when only defaults and the environment apply.
    pub fn source_file(file: Option<&Path>) -> Option<PathBuf> {
        match file {
            Some(p) => Some(p.to_owned()),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                default.exists().then(|| default.to_owned())
            }
        }
    }

    /// Where the mirror is: the SQLite file at `store.path`, or with `store.url` the
    /// PostgreSQL schema `store.schema`, with its password from `store.password_file`,
    /// else `PGPASSWORD` from `env`. Errors name the setting and what to fix; none
    /// quotes the password.
    pub fn store_location_from(
        &self,
        env: &[(String, String)],
    ) -> Result<crate::store::Location, ConfigError> {
        let Some(url) = &self.store.url else {
            return Ok(crate::store::Location::Sqlite(self.store.path.clone()));
        };
        let password = match &self.store.password_file {
            Some(path) => {
                let problem = |problem: String| ConfigError::Invalid {
                    key: "store.password_file",
                    problem: format!("{}: {problem}", path.display()),
                };
                let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() {
                    return Err(problem("it is empty; write the password into it".into()));
                }
                Some(text)
            }
            None => env
                .iter()
                .find(|(k, _)| k == PG_PASSWORD_ENV)
                .map(|(_, v)| v.clone()),
        };
        crate::store::pg::PgTarget::new(url, &self.store.schema, password.as_deref())
            .map(crate::store::Location::Postgres)
            .map_err(|problem| ConfigError::Invalid {
                key: "store.url",
                problem,
            })
    }

    /// [`Settings::store_location_from`] with this process's environment.
    pub fn store_location(&self) -> Result<crate::store::Location, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        self.store_location_from(&env)
    }

    /// Checks that the mirror can be created and written where `store.path` says, so a
    /// wrong path fails before a run (exit 2, naming the key), not as an I/O error
    /// from the lock file half-way in. Not part of [`Settings::validate`]: `status` and
    /// `query` only read, and need no write access.
    pub fn check_store_path(&self) -> Result<(), ConfigError> {
        // PostgreSQL: the URL, the schema and the password's source (the server is
        // asked only when connecting).
        if self.store.url.is_some() {
            return self.store_location().map(|_| ());
        }
        let path = &self.store.path;
        let invalid = |problem: String| ConfigError::Invalid {
            key: "store.path",
            problem,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(invalid(format!(
                "is {}, in a directory that does not exist ({}); create it or point store.path elsewhere",
                path.display(),
                dir.display()
            )));
        }
        if path.is_dir() {
            return Err(invalid(format!(
                "is {}, a directory; name a file in it, e.g. {}",
                path.display(),
                path.join("mirror.db").display()
            )));
        }
        let unwritable = |e: std::io::Error| {
            invalid(format!(
                "is {}, where the mirror cannot be written ({e}); fix the permissions or point store.path elsewhere",
                path.display()
            ))
        };
        if path.exists() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(unwritable)?;
        }
        // The lock file, `-wal` and `-shm` are created beside the mirror.
        let probe = dir.join(format!(".lomi-sync-probe-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(unwritable)?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Checks what serde cannot: ranges (`api.base_url` and `schedule.cron` were parsed
    /// and checked as they loaded: [`BaseUrl`], [`CronSchedule`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    key,
                    problem: "must be greater than zero".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("api.page_size", self.api.page_size.into())?;
        if self.api.page_size > 1000 {
            return Err(ConfigError::Invalid {
                key: "api.page_size",
                problem: format!(
                    "is {}; use at most 1000 (the service serves 200)",
                    self.api.page_size
                ),
            });
        }
        positive("api.concurrency", self.api.concurrency.into())?;
        if self.api.concurrency > 256 {
            return Err(ConfigError::Invalid {
                key: "api.concurrency",
                problem: format!("is {}; use at most 256", self.api.concurrency),
            });
        }
        positive("api.timeout", self.api.timeout.0.as_millis() as u64)?;
        positive(
            "api.connect_timeout",
            self.api.connect_timeout.0.as_millis() as u64,
        )?;
        positive("api.max_body_bytes", self.api.max_body_bytes)?;
        positive("api.rate_window", self.api.rate_window.0.as_millis() as u64)?;
        if !self.api.requests_per_second.is_finite() || self.api.requests_per_second < 0.0 {
            return Err(ConfigError::Invalid {
                key: "api.requests_per_second",
                problem: "must be zero (unlimited) or a positive number".into(),
            });
        }
        if !(self.api.budget_share > 0.0 && self.api.budget_share <= 1.0) {
            return Err(ConfigError::Invalid {
                key: "api.budget_share",
                problem: format!("is {}; use a share in (0, 1]", self.api.budget_share),
            });
        }
        positive("sync.full_every", self.sync.full_every.0.as_millis() as u64)?;
        positive(
            "schedule.shutdown_timeout",
            self.schedule.shutdown_timeout.0.as_millis() as u64,
        )?;
        positive(
            "server.healthy_within",
            self.server.healthy_within.0.as_millis() as u64,
        )?;
        positive(
            "schedule.defer_after",
            self.schedule.defer_after.0.as_millis() as u64,
        )?;
        if self.store.path.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "store.path",
                problem: "is empty".into(),
            });
        }
        Ok(())
    }

    /// The API key from `api.api_key_file`, else from `LOMI_API_KEY`.
    pub fn api_key(&self) -> Result<ApiKey, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        self.api_key_from(&env)
    }

    /// [`Settings::api_key`] with an explicit environment.
    pub fn api_key_from(&self, env: &[(String, String)]) -> Result<ApiKey, ConfigError> {
        if let Some(path) = &self.api.api_key_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                path: path.clone(),
                source,
            })?;
            let key = text.trim();
            if key.is_empty() {
                return Err(ConfigError::EmptyKeyFile { path: path.clone() });
            }
            return Ok(ApiKey::new(key));
        }
        env.iter()
            .find(|(k, _)| k == API_KEY_ENV)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .map(ApiKey::new)
            .ok_or(ConfigError::MissingApiKey)
    }

    /// The webhook signing secret from `webhooks.secret_file`, else `LOMI_WEBHOOK_SECRET`.
    pub fn webhook_secret_from(
        &self,
        env: &[(String, String)],
    ) -> Result<WebhookSecret, ConfigError> {
        if let Some(path) = &self.webhooks.secret_file {
            let problem = |problem: String| ConfigError::WebhookSecretFile {
                path: path.clone(),
                problem,
            };
            let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(problem("it is empty".into()));
            }
            return Ok(WebhookSecret::new(secret));
        }
        env.iter()
            .find(|(k, _)| k == WEBHOOK_SECRET_ENV)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .map(WebhookSecret::new)
            .ok_or(ConfigError::MissingWebhookSecret)
    }
}

/// Every setting as `section.key`, from the defaults' own shape (so it cannot drift).
pub fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(Settings::default()) {
        for (section, body) in sections {
            if let serde_json::Value::Object(fields) = body {
                keys.extend(fields.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    keys
}

/// `section.key` as its environment variable: `LOMI_SYNC__STORE__PATH`.
pub fn env_var_of(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// A `LOMI_SYNC__*` variable that names no setting is an error (as an unknown key in
/// the file is), with the closest known key suggested.
fn check_env_keys(env: &[(String, String)]) -> Result<(), ConfigError> {
    let prefix = format!("{ENV_PREFIX}__");
    let known = known_keys();
    for (var, _) in env {
        let Some(rest) = var.strip_prefix(&prefix) else {
            continue;
        };
        let key = rest.to_lowercase().replacen("__", ".", 1);
        if known.contains(&key) {
            continue;
        }
        let hint = if key.contains("api_key") || key == "api.key" {
            format!(
                "; the API key is read from {API_KEY_ENV} or from the file api.api_key_file names"
            )
        } else {
            closest(&key, &known)
                .map(|k| format!("; did you mean {}?", env_var_of(k)))
                .unwrap_or_default()
        };
        return Err(ConfigError::UnknownEnv {
            var: var.clone(),
            key,
            hint,
        });
    }
    Ok(())
}

/// Environment variables that look meant for lomi-sync but that it does not read
/// (`LOMI_SYNC_STORE_PATH`, with single underscores): each with what to write instead.
/// Warnings, not errors: another program may own such a name.
pub fn env_warnings(env: &[(String, String)]) -> Vec<String> {
    let known = known_keys();
    let mut warnings = Vec::new();
    for (var, _) in env {
        let upper = var.to_uppercase();
        if var.starts_with(&format!("{ENV_PREFIX}__")) {
            continue;
        }
        let squashed: String = upper
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let Some(rest) = squashed.strip_prefix("LOMISYNC") else {
            continue;
        };
        let rest = rest.to_lowercase();
        let squash = |k: &str| k.replace(['.', '_'], "");
        let target = known
            .iter()
            .find(|k| squash(k) == rest)
            .or_else(|| closest_by(&rest, &known, |k| squash(k)));
        warnings.push(match target {
            Some(k) => format!(
                "environment variable {var} is not read; settings variables are LOMI_SYNC__SECTION__KEY, with double underscores: did you mean {}?",
                env_var_of(k)
            ),
            None => format!(
                "environment variable {var} is not read; settings variables are LOMI_SYNC__SECTION__KEY, with double underscores (e.g. LOMI_SYNC__STORE__PATH)"
            ),
        });
    }
    warnings
}

/// The known key nearest to `word` by edit distance, if near enough to be a typo.
fn closest<'k>(word: &str, known: &'k [String]) -> Option<&'k String> {
    closest_by(word, known, |k| k.to_string())
}

fn closest_by<'k>(
    word: &str,
    known: &'k [String],
    form: impl Fn(&str) -> String,
) -> Option<&'k String> {
    let limit = (word.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (strsim::levenshtein(word, &form(k)), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Appends `; did you mean `x`?` to the config crate's "unknown field `y`" message,
/// from the key names of every section (and the section names).
fn with_suggestion(message: &str) -> String {
    let Some(field) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    else {
        return message.to_string();
    };
    let known = known_keys();
    let mut names: Vec<String> = known
        .iter()
        .filter_map(|k| k.split('.').nth(1).map(str::to_string))
        .collect();
    names.extend(
        known
            .iter()
            .filter_map(|k| k.split('.').next().map(str::to_string)),
    );
    names.sort();
    names.dedup();
    match closest(field, &names) {
        Some(n) if n != field => format!("{message}; did you mean `{n}`?"),
        _ => message.to_string(),
    }
}

impl ApiSettings {
    /// The base URL as a [`Url`], already validated when the settings loaded (kept for
    /// callers that take it as a fallible step; [`ApiSettings::base_url`] the field is
    /// the same value).
    pub fn base_url(&self) -> Result<Url, ConfigError> {
        Ok(self.base_url.url().clone())
    }

    /// The environment a base URL serves, when it is one of lomi.'s own.
    pub fn environment(&self) -> Option<&'static str> {
        match self.base_url.url().host_str()? {
            "api.lomi.africa" => Some("live"),
            "sandbox.api.lomi.africa" => Some("test"),
            _ => None,
        }
    }
}

/// `api.base_url`, parsed once as the settings load. Plain `http://` is accepted only
/// for loopback hosts, so the key never crosses a network in clear text; no query or
/// fragment (paths are appended to it). Keeps the text as written, so `check-config`
/// and messages show what the user wrote (a parsed [`Url`] would add a `/`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct BaseUrl {
    text: String,
    url: Url,
}

impl BaseUrl {
    /// Parses and checks a base URL; the error names `api.base_url` and the problem.
    pub fn parse(text: &str) -> Result<BaseUrl, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "api.base_url",
            problem,
        };
        let url = Url::parse(text).map_err(|e| invalid(format!("`{text}` is not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(invalid(format!(
                    "`{text}` uses plain http to a non-loopback host; use https (the API key would travel in clear text)"
                )));
            }
            other => {
                return Err(invalid(format!("`{text}` has scheme `{other}`; use https")));
            }
        }
        if url.host().is_none() {
            return Err(invalid(format!("`{text}` has no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(format!(
                "`{text}` must not carry a query or fragment"
            )));
        }
        Ok(BaseUrl {
            text: text.to_owned(),
            url,
        })
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL as written in the settings.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for BaseUrl {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BaseUrl::parse(s)
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BaseUrl::parse(&s).map_err(keyed_problem)
    }
}

impl From<BaseUrl> for String {
    fn from(u: BaseUrl) -> String {
        u.text
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A typed setting's error as serde carries it: `key problem`, which
/// [`without_repeated_key`] recognises.
fn keyed_problem(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { key, problem } => format!("{key} {problem}"),
        other => other.to_string(),
    }
}

/// The config crate appends `` for key `K` `` to a value's error; a typed setting's
/// error already starts with its key ([`keyed_problem`]), so the suffix goes.
fn without_repeated_key(message: &str) -> String {
    if let Some((head, key)) = message.rsplit_once(" for key `") {
        let key = key.trim_end_matches('`');
        if head.starts_with(&format!("{key} ")) {
            return head.to_string();
        }
    }
    message.to_string()
}

/// `schedule.cron`, parsed once as the settings load (the daemon and `check-config`
/// use the parsed schedule; the text is kept for messages and `check-config`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule {
    text: String,
    schedule: cron::Schedule,
}

impl CronSchedule {
    /// Parses a cron expression; the error names `schedule.cron`, the expression and
    /// the problem.
    pub fn parse(text: &str) -> Result<CronSchedule, ConfigError> {
        let schedule = cron::Schedule::from_str(text).map_err(|e| ConfigError::Invalid {
            key: "schedule.cron",
            problem: format!(
                "`{text}` is not a valid cron expression ({}); it needs a seconds field, e.g. \"0 */15 * * * *\" for every 15 minutes",
                cron_problem(text, &e.to_string())
            ),
        })?;
        Ok(CronSchedule {
            text: text.to_owned(),
            schedule,
        })
    }

    /// The parsed schedule.
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    /// The expression as written in the settings.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for CronSchedule {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CronSchedule::parse(&s).map_err(keyed_problem)
    }
}

impl From<CronSchedule> for String {
    fn from(c: CronSchedule) -> String {
        c.text
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// True for `localhost`, 127.0.0.0/8 and `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

impl ScheduleSettings {
    /// The parsed cron schedule, already validated when the settings loaded (kept for
    /// callers that take it as a fallible step; the field holds the same value).
    pub fn parsed_cron(&self) -> Result<cron::Schedule, ConfigError> {
        Ok(self.cron.schedule().clone())
    }
}

/// The cron parser's explanation, in one line. Its message echoes the input and draws a
/// caret under it on lines of their own, and for a wrong number of fields says nothing
/// else (the last line was a bare `^`): count the fields first, then keep the lines that
/// explain.
fn cron_problem(expr: &str, message: &str) -> String {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return format!(
            "it has {fields} fields; write 6 or 7: sec min hour day-of-month month day-of-week [year]"
        );
    }
    message
        .lines()
        .map(str::trim)
        .rfind(|l| *l != expr.trim() && l.chars().any(|c| c.is_alphanumeric()))
        .unwrap_or("a field cannot be parsed")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(Some(&path), &env)
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let s = load_toml("", &[]).unwrap();
        assert_eq!(s.api.base_url.as_str(), "https://api.lomi.africa");
        assert_eq!(s.api.page_size, 200);
        assert_eq!(s.schedule.cron.as_str(), "0 */15 * * * *");
    }

    #[test]
    fn environment_overrides_file() {
        let s = load_toml(
            "[api]\npage_size = 50\n",
            &[("LOMI_SYNC__API__PAGE_SIZE", "75")],
        )
        .unwrap();
        assert_eq!(s.api.page_size, 75);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load_toml("[api]\npage_sise = 50\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("page_sise"), "{err}");
        let err = load_toml("", &[("LOMI_SYNC__API__COLOUR", "red")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn api_key_is_not_a_setting() {
        let err = load_toml("[api]\napi_key = \"lomi_sk_live_x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_key"), "{err}");
        assert!(!err.contains("lomi_sk_live_x"), "{err}");
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        assert!(load_toml("[api]\nbase_url = \"http://127.0.0.1:8787\"\n", &[]).is_ok());
        assert!(load_toml("[api]\nbase_url = \"http://localhost:8787\"\n", &[]).is_ok());
        assert!(load_toml("[api]\nbase_url = \"http://[::1]:8787\"\n", &[]).is_ok());
        let err = load_toml("[api]\nbase_url = \"http://api.lomi.africa\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain http"), "{err}");
        let err = load_toml("[api]\nbase_url = \"not a url\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a URL"), "{err}");
    }

    #[test]
    fn zero_sizes_are_refused() {
        let err = load_toml("[api]\npage_size = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api.page_size must be greater than zero"),
            "{err}"
        );
        let err = load_toml("[api]\nconcurrency = -1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurrency"), "{err}");
    }

    #[test]
    fn base_url_and_cron_are_parsed_at_load_and_keep_their_text() {
        let s = load_toml(
            "[api]\nbase_url = \"http://127.0.0.1:8787\"\n[schedule]\ncron = \"0 0 * * * *\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.api.base_url.url().port(), Some(8787));
        // As written, not as `Url` normalises it (`http://127.0.0.1:8787/`).
        assert_eq!(s.api.base_url.to_string(), "http://127.0.0.1:8787");
        let shown = serde_json::to_value(&s).unwrap();
        assert_eq!(shown["api"]["base_url"], "http://127.0.0.1:8787");
        assert_eq!(shown["schedule"]["cron"], "0 0 * * * *");
        assert!(
            s.schedule
                .cron
                .schedule()
                .upcoming(chrono::Utc)
                .next()
                .is_some()
        );
        let err = "ftp://x".parse::<BaseUrl>().unwrap_err().to_string();
        assert!(
            err.contains("api.base_url") && err.contains("use https"),
            "{err}"
        );
        // The key once, as before the URL was typed: not `... for key `api.base_url``.
        let err = load_toml("[api]\nbase_url = \"ftp://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid configuration: api.base_url `ftp://x` has scheme `ftp`; use https"
        );
        let err = load_toml("", &[("LOMI_SYNC__SCHEDULE__CRON", "* * *")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid configuration: schedule.cron `* * *` is not a valid")
                && err.ends_with("for every 15 minutes"),
            "{err}"
        );
    }

    #[test]
    fn bad_cron_names_the_expression() {
        let err = load_toml("[schedule]\ncron = \"every 5 minutes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("every 5 minutes") && err.contains("schedule.cron"),
            "{err}"
        );
    }

    #[test]
    fn cron_errors_explain_without_stray_carets() {
        for (cron, expected) in [
            ("*/15 * * * *", "it has 5 fields; write 6 or 7"),
            ("", "it has 0 fields"),
            ("0 */15 * * * * * *", "it has 8 fields"),
            ("0 0 25 * * *", "Hours must be less than"),
        ] {
            let err = load_toml(&format!("[schedule]\ncron = \"{cron}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{cron:?}: {err}");
            assert!(
                !err.contains("(^)") && !err.contains('\n'),
                "{cron:?}: {err}"
            );
        }
        assert!(!cron_problem("0 0 12 * * Mon-", "0 0 12 * * Mon-\n        ^\n").contains('^'));
    }

    #[test]
    fn transactions_come_from_the_feed_where_the_key_can_read_it_by_default() {
        let s = load_toml("", &[]).unwrap();
        assert_eq!(s.sync.transactions_source, TransactionsSource::Auto);
        let s = load_toml("[sync]\ntransactions_source = \"per_customer\"\n", &[]).unwrap();
        assert_eq!(s.sync.transactions_source, TransactionsSource::PerCustomer);
        let s = load_toml("", &[("LOMI_SYNC__SYNC__TRANSACTIONS_SOURCE", "feed")]).unwrap();
        assert_eq!(s.sync.transactions_source, TransactionsSource::Feed);
    }

    #[test]
    fn durations_are_human_readable() {
        let s = load_toml("[sync]\nfull_every = \"12h\"\n", &[]).unwrap();
        assert_eq!(s.sync.full_every.0, Duration::from_secs(12 * 3600));
        let err = load_toml("[sync]\nfull_every = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn api_key_comes_from_file_or_env_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let keyfile = dir.path().join("key");
        std::fs::write(&keyfile, "lomi_sk_test_secret\n").unwrap();
        let mut s = Settings::default();
        s.api.api_key_file = Some(keyfile);
        let key = s.api_key_from(&[]).unwrap();
        assert_eq!(key.expose(), "lomi_sk_test_secret");
        assert_eq!(key.environment(), Some("test"));
        assert!(!format!("{key:?} {key}").contains("secret"));

        let s = Settings::default();
        assert!(matches!(
            s.api_key_from(&[]),
            Err(ConfigError::MissingApiKey)
        ));
        let env = vec![(API_KEY_ENV.to_string(), "k".to_string())];
        assert_eq!(s.api_key_from(&env).unwrap().expose(), "k");
    }

    #[test]
    fn a_misspelt_env_key_is_refused_with_the_closest_key() {
        let err = load_toml("", &[("LOMI_SYNC__STORE__PTH", "/x/m.db")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LOMI_SYNC__STORE__PTH")
                && err.contains("did you mean LOMI_SYNC__STORE__PATH?"),
            "{err}"
        );
        let err = load_toml("", &[("LOMI_SYNC__API__API_KEY", "lomi_sk_live_x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LOMI_API_KEY") && !err.contains("lomi_sk_live_x"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_file_key_gets_a_suggestion() {
        let err = load_toml("[api]\npage_sise = 50\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `page_size`?"), "{err}");
    }

    #[test]
    fn near_miss_env_variables_are_warned_about() {
        let env = |k: &str| vec![(k.to_string(), "v".to_string())];
        let w = env_warnings(&env("LOMI_SYNC_STORE_PATH"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("LOMI_SYNC_STORE_PATH")
                && w[0].contains("did you mean LOMI_SYNC__STORE__PATH?"),
            "{w:?}"
        );
        let w = env_warnings(&env("LOMISYNC__API__PAGE_SIZE"));
        assert!(w[0].contains("LOMI_SYNC__API__PAGE_SIZE"), "{w:?}");
        assert!(env_warnings(&env("LOMI_SYNC__STORE__PATH")).is_empty());
        assert!(env_warnings(&env("LOMI_API_KEY")).is_empty());
        assert!(env_warnings(&env("PATH")).is_empty());
    }

    #[test]
    fn known_keys_come_from_the_settings() {
        let keys = known_keys();
        for k in [
            "api.page_size",
            "store.path",
            "schedule.full_every",
            "api.api_key_file",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert_eq!(
            closest("pth", &["path".to_string()]).map(String::as_str),
            Some("path")
        );
    }

    #[test]
    fn store_path_in_a_missing_or_unwritable_directory_is_refused() {
        let mut s = Settings::default();
        s.store.path = PathBuf::from("/nonexistent-dir/m.db");
        let err = s.check_store_path().unwrap_err().to_string();
        assert!(
            err.contains("store.path") && err.contains("/nonexistent-dir"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        s.store.path = dir.path().join("m.db");
        s.check_store_path().unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is gone"
        );
        s.store.path = dir.path().to_owned();
        let err = s.check_store_path().unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/x.toml")), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
