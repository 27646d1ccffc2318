//! Where a PostgreSQL mirror is: `store.url`, `store.schema` and the password, checked
//! once as the settings load, and the one way to connect.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config};

use crate::store::StoreError;

/// TLS as libpq users write it in `sslmode` (libpq's "SSL Mode Descriptions"):
/// `disable`, `prefer` (libpq's default: TLS when the server offers it), `require`
/// (encrypted, certificate not checked), `verify-ca` (signed by a trusted CA),
/// `verify-full` (and issued for the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, else plain.
    Prefer,
    /// TLS, any certificate.
    Require,
    /// TLS, a certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, a trusted certificate naming the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling; `allow` is read as `prefer` (both accept a plain session).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A PostgreSQL mirror's address: the server (from `store.url`, without its password),
/// the password (from `store.password_file` or `PGPASSWORD`, never in the URL), the
/// schema the mirror lives in, and TLS. `Debug` and [`PgTarget::shown`] never print the
/// password.
#[derive(Clone)]
pub struct PgTarget {
    /// rust-postgres's configuration, password included; its `Debug` redacts it.
    config: Config,
    /// `store.schema`: a lowercase SQL identifier, checked by [`PgTarget::new`].
    schema: String,
    /// The URL as written, for messages (it holds no password: [`PgTarget::new`] refuses one).
    shown: String,
    /// From the URL's `sslmode` (default `prefer`).
    ssl: SslMode,
    /// The URL's `sslrootcert`: a PEM file of trusted CAs for `verify-ca`/`verify-full`.
    root_cert: Option<std::path::PathBuf>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({} schema {})", self.shown, self.schema)
    }
}

impl PgTarget {
    /// Checks `url` (`postgres://` or `postgresql://`, with libpq's `sslmode` and
    /// `sslrootcert` parameters), `schema` and sets `password`. A password inside the URL
    /// is refused: it would sit in the config file and in every message quoting the URL.
    /// Errors are one line saying what to fix.
    pub fn new(url: &str, schema: &str, password: Option<&str>) -> Result<PgTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err("must start with postgres:// or postgresql://".into());
        }
        // libpq takes a password in either place: `user:password@` or `?password=`.
        let in_query = parsed.query_pairs().any(|(k, _)| k == "password");
        if parsed.password().is_some() || in_query {
            return Err(
                "holds a password; remove it from the URL and put it in store.password_file \
                 or the PGPASSWORD environment variable"
                    .into(),
            );
        }
        check_schema(schema)?;
        let mut ssl = SslMode::Prefer;
        let mut root_cert = None;
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "sslmode" => ssl = SslMode::parse(&v).ok_or_else(|| {
                    format!(
                        "has sslmode={v}; use disable, prefer, require, verify-ca or verify-full"
                    )
                })?,
                "sslrootcert" => root_cert = Some(std::path::PathBuf::from(&*v)),
                _ => {
                    rest.append_pair(&k, &v);
                }
            }
        }
        let mut stripped = parsed.clone();
        let rest = rest.finish();
        stripped.set_query((!rest.is_empty()).then_some(rest.as_str()));
        let mut config =
            Config::from_str(stripped.as_str()).map_err(|e| format!("cannot be read: {e}"))?;
        if let Some(p) = password {
            config.password(p);
        }
        Ok(PgTarget {
            config,
            schema: schema.to_string(),
            shown: url.to_string(),
            ssl,
            root_cert,
        })
    }

    /// The URL as configured (no password), and the schema, for messages.
    pub fn shown(&self) -> String {
        format!("{} (schema {})", self.shown, self.schema)
    }

    /// `store.url` as written (it holds no password).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The schema's name (`store.schema`).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema's name quoted as an SQL identifier.
    pub fn quoted_schema(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    /// The text the advisory locks of this mirror are keyed by (`hashtextextended`):
    /// one key per database and schema, so two mirrors in one database do not exclude
    /// each other.
    pub fn lock_key(&self) -> String {
        format!("lomi-sync:{}", self.schema)
    }

    /// Whether a password was given (`store.password_file` or `PGPASSWORD`), for
    /// `check-config`.
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// TLS mode (`sslmode`).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl
    }

    /// Connects with `search_path` set to the schema and `lock_timeout` to
    /// `busy_timeout`; `role` names the connection in `pg_stat_activity`.
    pub fn connect(&self, role: &str, busy_timeout: Duration) -> Result<Client, StoreError> {
        let mut config = self.config.clone();
        config.application_name(&format!("{role} (pid {})", std::process::id()));
        config.options(&format!(
            "-c search_path={} -c lock_timeout={} -c client_min_messages=warning",
            self.schema,
            busy_timeout.as_millis().max(1)
        ));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // Off any tokio runtime: the blocking client starts its own (see `PgStore::with`).
        super::off_runtime(|| super::tls::connect(self, &config, self.root_cert.as_deref()))
    }

    /// A connection's failure, naming the mirror (never the password) and what to check.
    pub fn error(&self, source: postgres::Error) -> StoreError {
        StoreError::Connect {
            target: self.shown(),
            detail: super::describe(&source),
        }
    }
}

/// `store.schema` must be a plain lowercase identifier: it is written into SQL and into
/// the connection's `search_path` option unquoted.
fn check_schema(schema: &str) -> Result<(), String> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        // PostgreSQL reserves the prefix for its own schemas.
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "store.schema {schema:?} is not a plain identifier; use at most 63 lowercase \
             letters, digits and _, starting with a letter or _ and not with pg_"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_never_echoed() {
        for url in [
            "postgres://u:hunter2@db.example/x",
            "postgres://u@db.example/x?sslmode=disable&password=hunter2",
            "postgresql://db.example/x?user=u&password=hunter2",
        ] {
            let e = PgTarget::new(url, "lomi", None).unwrap_err();
            assert!(e.contains("password_file"), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn sslmode_is_read_as_libpq_spells_it() {
        let t = PgTarget::new("postgres://u@h/db?sslmode=verify-full", "lomi", None).unwrap();
        assert_eq!(t.ssl_mode(), SslMode::VerifyFull);
        let t = PgTarget::new("postgresql://u@h/db", "lomi", None).unwrap();
        assert_eq!(t.ssl_mode(), SslMode::Prefer);
        let e = PgTarget::new("postgres://u@h/db?sslmode=maybe", "lomi", None).unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn the_password_never_reaches_debug_or_messages() {
        let t = PgTarget::new("postgres://u@h:5433/db", "lomi", Some("hunter2")).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!t.shown().contains("hunter2"));
        assert!(t.shown().contains("schema lomi"));
    }

    #[test]
    fn schemas_must_be_plain_identifiers() {
        let long = "x".repeat(64);
        for bad in [
            "",
            "Lomi",
            "lo mi",
            "1x",
            "x;drop",
            "x\"y",
            "pg_mirror",
            &long,
        ] {
            assert!(
                PgTarget::new("postgres://u@h/db", bad, None).is_err(),
                "{bad}"
            );
        }
        assert!(PgTarget::new("postgres://u@h/db", "lomi_2", None).is_ok());
    }
}
