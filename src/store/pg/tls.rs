//! TLS for the PostgreSQL connection, as `sslmode` asks (see [`super::SslMode`]).

use std::path::Path;

use postgres::{Client, Config, NoTls};

use super::{PgTarget, SslMode};
use crate::store::StoreError;

/// Connects with `config` under `target`'s `sslmode`.
pub(super) fn connect(
    target: &PgTarget,
    config: &Config,
    _root_cert: Option<&Path>,
) -> Result<Client, StoreError> {
    match target.ssl_mode() {
        SslMode::Disable | SslMode::Prefer => {
            let mut config = config.clone();
            config.ssl_mode(postgres::config::SslMode::Disable);
            config.connect(NoTls).map_err(|e| target.error(e))
        }
        mode => Err(StoreError::Migrate(format!(
            "sslmode {mode:?} is not built yet"
        ))),
    }
}
