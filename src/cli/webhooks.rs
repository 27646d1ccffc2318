//! `lomi-sync webhooks register|list`: the vendor's webhook registration API (NOTES.md,
//! Webhooks). `register` subscribes a URL to the payment and refund events and writes
//! the signing secret, which the vendor shows only once, to a file of mode 0600; the
//! secret is printed nowhere (not in the output, a log line or an error).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use url::{Host, Url};

use lomi_sync::api::RegisteredWebhook;
use lomi_sync::config::Settings;

/// The events `register` subscribes to: every payment and refund event the vendor
/// documents (NOTES.md, Webhooks); there are no customer events.
pub const EVENTS: [&str; 6] = [
    "PAYMENT_CREATED",
    "PAYMENT_SUCCEEDED",
    "PAYMENT_FAILED",
    "REFUND_CREATED",
    "REFUND_COMPLETED",
    "REFUND_FAILED",
];

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Register a URL for the payment and refund events and save its signing secret
    /// (to webhooks.secret_file or --secret-file, mode 0600; never printed).
    Register {
        /// The public HTTPS URL the vendor delivers to: your TLS reverse proxy in front
        /// of the daemon's `[server] listen`, path /webhooks/lomi. Plain http only to a
        /// loopback address (trials against `lomi-sync sim`).
        #[arg(long)]
        url: String,
        /// Where to write the secret; default: webhooks.secret_file.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// Replace the secret file if it exists (its permissions are only narrowed).
        #[arg(long)]
        force: bool,
    },
    /// List the registered webhooks: id, active, URL and events.
    List,
}

/// A command used wrongly (a bad `--url`, no place for the secret, a file in the way):
/// exit status 2, like a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub(super) String);

pub async fn run(settings: &Settings, command: WebhooksCommand) -> Result<ExitCode> {
    let mirror = super::mirror(settings, &super::shutdown_token())?;
    let client = mirror.client();
    match command {
        WebhooksCommand::Register {
            url,
            secret_file,
            force,
        } => {
            let url = check_url(&url)?;
            let path = secret_file
                .or_else(|| settings.webhooks.secret_file.clone())
                .ok_or_else(|| {
                    UsageError(
                        "no place for the webhook secret: pass --secret-file PATH or set webhooks.secret_file"
                            .into(),
                    )
                })?;
            // Before registering: a secret the vendor shows once must have somewhere to go.
            check_secret_file(&path, force)?;
            let hook = client
                .register_webhook(url.as_str(), &EVENTS)
                .await
                .context("cannot register the webhook")?;
            let secret = hook.secret.as_ref().expect("register_webhook checks it");
            write_secret(&path, secret.expose(), force).with_context(|| {
                format!(
                    "webhook {} was registered, but its secret could not be saved; delete that webhook with the vendor and register again",
                    hook.id
                )
            })?;
            println!("registered webhook {} for {}", hook.id, hook.url);
            println!("events: {}", hook.authorized_events.join(", "));
            println!(
                "secret written to {} (mode 0600); the daemon reads it from webhooks.secret_file",
                path.display()
            );
            warn_of_others(client, &hook).await;
        }
        WebhooksCommand::List => {
            let hooks = client
                .list_webhooks()
                .await
                .context("cannot list the webhooks")?;
            if hooks.is_empty() {
                println!(
                    "no webhook registered; `lomi-sync webhooks register --url https://...` adds one"
                );
            }
            for h in hooks {
                let active = match h.is_active {
                    Some(true) => "active",
                    Some(false) => "inactive",
                    None => "active?",
                };
                let events = h.authorized_events.join(",");
                println!("{}  {active}  {}  {events}", h.id, h.url);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns of other webhooks delivering to the same URL (an earlier registration, or one
/// a retried `POST` made): their deliveries are signed with a secret no longer saved, so
/// the daemon refuses them. Best effort: a failed listing is only logged.
async fn warn_of_others(client: &lomi_sync::api::ApiClient, hook: &RegisteredWebhook) {
    match client.list_webhooks().await {
        Ok(hooks) => {
            let others: Vec<String> = hooks
                .into_iter()
                .filter(|h| h.url == hook.url && h.id != hook.id)
                .map(|h| h.id)
                .collect();
            if !others.is_empty() {
                tracing::warn!(
                    "other webhooks also deliver to {}: {}; their secret is not the one saved, so the daemon will refuse their deliveries: delete them with the vendor",
                    hook.url,
                    others.join(", ")
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not list the webhooks after registering"),
    }
}

/// `https` with a host, or plain `http` to a loopback address.
fn check_url(text: &str) -> Result<Url, UsageError> {
    let bad = |why: String| {
        UsageError(format!(
            "--url {text}: {why}; the vendor delivers only to public https:// URLs (plain http is accepted for a loopback address, for trials)"
        ))
    };
    let url = Url::parse(text).map_err(|e| bad(format!("not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(bad("no host".into())),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(bad("plain http to a non-loopback host".into())),
        other => Err(bad(format!("scheme {other}"))),
    }
}

/// Refuses, before anything is registered, a secret file that exists (without
/// `force`) or whose directory does not.
fn check_secret_file(path: &Path, force: bool) -> Result<(), UsageError> {
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} exists; pass --force to replace it (the secret it holds stops working once the daemon reads the new one)",
            path.display()
        )));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.is_dir()) {
        return Err(UsageError(format!(
            "the directory of {} does not exist; create it first",
            path.display()
        )));
    }
    Ok(())
}

/// Writes `secret` and a newline. A new file is created with mode 0600 (never wider for
/// a moment); an existing one (with `force`) keeps its owner and loses any group and
/// other permission bits before the secret goes in.
fn write_secret(path: &Path, secret: &str, force: bool) -> std::io::Result<()> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && force => {
            let file = OpenOptions::new().write(true).truncate(true).open(path)?;
            let mode = file.metadata()?.permissions().mode();
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
            file
        }
        other => other?,
    };
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://hooks.example.com/webhooks/lomi",
            "http://127.0.0.1:9810/webhooks/lomi",
            "http://[::1]:9810/x",
            "http://localhost:9810/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/x",
            "hooks.example.com",
        ] {
            let err = check_url(bad).unwrap_err().to_string();
            assert!(err.contains("https://"), "{err}");
        }
    }

    /// A new file is 0600; a replaced one keeps no group/other bit and is never widened.
    #[test]
    fn the_secret_file_is_private_and_never_widened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_secret(&path, "whsec_1", false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert!(write_secret(&path, "whsec_2", false).is_err());
        assert!(check_secret_file(&path, false).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, "whsec_2", true).unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o200)).unwrap();
        write_secret(&path, "whsec_3", true).unwrap();
        assert_eq!(mode(&path), 0o200, "never widened");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whsec_3\n");
        assert!(check_secret_file(&dir.path().join("no/such/dir/secret"), true).is_err());
    }
}
