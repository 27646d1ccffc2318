//! TLS for the PostgreSQL connection, as `sslmode` asks (see [`super::SslMode`]), with
//! the meaning libpq gives each mode (libpq's "SSL Mode Descriptions"):
//!
//! | `sslmode`     | TLS                                | certificate check                     |
//! |---------------|------------------------------------|---------------------------------------|
//! | `disable`     | never                              | -                                     |
//! | `prefer`      | if the server offers it, else plain | none                                 |
//! | `require`     | always                             | none; with `sslrootcert`, as verify-ca |
//! | `verify-ca`   | always                             | signed by a trusted CA                |
//! | `verify-full` | always                             | signed by a trusted CA, for the host  |
//!
//! Trusted CAs: the PEM file `sslrootcert` names, else (or with `sslrootcert=system`)
//! the Mozilla roots of `webpki-roots`. libpq's implicit `~/.postgresql/root.crt` is not
//! read: a daemon under systemd has no meaningful home, so the file is named or absent.
//! As libpq does, `prefer` connects in plain text when the server does not offer TLS or
//! the handshake fails. TLS is rustls (with `ring`, as reqwest uses it) through
//! `tokio-postgres-rustls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode as WireMode;
use postgres::{Client, Config, NoTls};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgTarget, SslMode};
use crate::store::StoreError;

impl SslMode {
    /// libpq's spelling, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What a mode asks of a connection: TLS on the wire (rust-postgres's own modes: never,
/// if offered, always) and how the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// What rust-postgres negotiates.
    pub wire: WireMode,
    /// The certificate check once TLS is on.
    pub check: Check,
}

/// How the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Not at all (`prefer`, `require`): encrypted, but open to a man in the middle.
    Nothing,
    /// Signed by a trusted CA, whatever host it names (`verify-ca`).
    Chain(Roots),
    /// Signed by a trusted CA and issued for the host connected to (`verify-full`).
    ChainAndHost(Roots),
}

/// Which CAs are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Roots {
    /// The PEM file `sslrootcert` names.
    File(PathBuf),
    /// The Mozilla roots of `webpki-roots` (no `sslrootcert`, or `sslrootcert=system`).
    WebPki,
}

/// The plan for `mode` with the URL's `sslrootcert`, if any (pure; see the module's table).
pub(super) fn plan(mode: SslMode, root_cert: Option<&Path>) -> Plan {
    let roots = match root_cert {
        Some(p) if p != Path::new("system") => Roots::File(p.to_owned()),
        _ => Roots::WebPki,
    };
    let (wire, check) = match mode {
        SslMode::Disable => (WireMode::Disable, Check::Nothing),
        SslMode::Prefer => (WireMode::Prefer, Check::Nothing),
        // libpq: "if a root CA file exists, sslmode=require behaves as verify-ca".
        SslMode::Require if root_cert.is_some() => (WireMode::Require, Check::Chain(roots)),
        SslMode::Require => (WireMode::Require, Check::Nothing),
        SslMode::VerifyCa => (WireMode::Require, Check::Chain(roots)),
        SslMode::VerifyFull => (WireMode::Require, Check::ChainAndHost(roots)),
    };
    Plan { wire, check }
}

/// Connects with `config` under `target`'s `sslmode`, off any tokio runtime (the
/// blocking client starts one of its own). A failure of TLS itself is
/// [`StoreError::Tls`], naming the mode and what to change; any other is
/// [`StoreError::Connect`]. Neither quotes the password.
pub(super) fn connect(
    target: &PgTarget,
    config: &Config,
    root_cert: Option<&Path>,
) -> Result<Client, StoreError> {
    let plan = plan(target.ssl_mode(), root_cert);
    let mut config = config.clone();
    config.ssl_mode(plan.wire);
    super::off_runtime(move || {
        if plan.wire == WireMode::Disable {
            return config.connect(NoTls).map_err(|e| target.error(e));
        }
        let tls = client_config(&plan.check).map_err(|detail| tls_error(target, detail))?;
        match config.connect(MakeRustlsConnect::new(tls)) {
            Ok(client) => Ok(client),
            Err(e) if is_tls_failure(&e) && plan.wire == WireMode::Prefer => {
                tracing::debug!(error = %e, "TLS failed under sslmode=prefer; connecting in plain text");
                config.ssl_mode(WireMode::Disable);
                config.connect(NoTls).map_err(|e| target.error(e))
            }
            Err(e) if is_tls_failure(&e) => Err(tls_error(target, tls_advice(&e, &plan.check))),
            Err(e) => Err(target.error(e)),
        }
    })
}

/// rust-postgres's error kinds are private; its TLS kind prints this first.
fn is_tls_failure(e: &postgres::Error) -> bool {
    e.to_string().starts_with("error performing TLS handshake")
}

fn tls_error(target: &PgTarget, detail: String) -> StoreError {
    StoreError::Tls {
        target: target.shown(),
        mode: target.ssl_mode().as_str(),
        detail,
    }
}

/// What went wrong in TLS, and what to change.
fn tls_advice(e: &postgres::Error, check: &Check) -> String {
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |c| c.to_string());
    if cause.contains("does not support TLS") {
        return "the server does not offer TLS; turn ssl on in the server's postgresql.conf, \
                or lower sslmode in store.url (prefer accepts a plain connection)"
            .into();
    }
    let fix = match check {
        Check::Nothing => "check the server's TLS setup",
        Check::Chain(Roots::File(_)) | Check::ChainAndHost(Roots::File(_)) => {
            "check that sslrootcert in store.url names the PEM file of the CA that signed the server's certificate"
        }
        Check::Chain(Roots::WebPki) | Check::ChainAndHost(Roots::WebPki) => {
            "name the PEM file of the CA that signed the server's certificate in sslrootcert in store.url"
        }
    };
    let wrong_host = matches!(
        rustls_error(e),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ))
    );
    let host = if wrong_host {
        " (verify-full: the certificate is not issued for the host in store.url; connect by that name, or use verify-ca)"
    } else {
        ""
    };
    format!("the TLS handshake failed: {cause}{host}; {fix}")
}

/// rustls's own error under rust-postgres's (boxed as an I/O error by tokio-rustls).
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

/// rustls's configuration for `check`, with the `ring` provider.
fn client_config(check: &Check) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match check {
        Check::ChainAndHost(roots) => builder
            .with_root_certificates(root_store(roots)?)
            .with_no_client_auth(),
        Check::Nothing | Check::Chain(_) => {
            // Without a chain check the roots only build the verifier, whose signature
            // checks of the handshake are still used.
            let (roots, chain) = match check {
                Check::Chain(roots) => (roots, true),
                _ => (&Roots::WebPki, false),
            };
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider)
                    .build()
                    .map_err(|e| e.to_string())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient { inner, chain }))
                .with_no_client_auth()
        }
    };
    // PostgreSQL 17 asks for it; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The trusted CAs; a file that cannot be read or holds no certificate is an error
/// naming it.
fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let path = match roots {
        Roots::WebPki => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        Roots::File(p) => p,
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot read sslrootcert {}: {e}; name a PEM file of CA certificates",
            path.display()
        )
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        let cert = cert.map_err(|e| unreadable(&e))?;
        store.add(cert).map_err(|e| unreadable(&e))?;
    }
    if store.is_empty() {
        return Err(unreadable(&"it holds no certificate"));
    }
    Ok(store)
}

/// webpki's verifier with less checked: `verify-ca` (`chain`) checks the chain
/// whatever host the certificate names; `prefer` and `require` accept any certificate
/// (libpq's behaviour with OpenSSL's `SSL_VERIFY_NONE`). Both still check the
/// handshake's signatures against the certificate.
#[derive(Debug)]
struct Lenient {
    inner: Arc<WebPkiServerVerifier>,
    chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sslmode_plans_as_libpq_reads_it() {
        let ca = Path::new("/etc/ca.pem");
        let file = || Roots::File(ca.to_owned());
        use Check::{Chain, ChainAndHost, Nothing};
        use WireMode::{Disable, Prefer, Require};
        let system = Some(Path::new("system"));
        #[rustfmt::skip]
        let cases = [
            (SslMode::Disable,    None,      Disable, Nothing),
            (SslMode::Disable,    Some(ca),  Disable, Nothing),
            (SslMode::Prefer,     None,      Prefer,  Nothing),
            (SslMode::Prefer,     Some(ca),  Prefer,  Nothing),
            (SslMode::Require,    None,      Require, Nothing),
            (SslMode::Require,    Some(ca),  Require, Chain(file())),
            (SslMode::VerifyCa,   None,      Require, Chain(Roots::WebPki)),
            (SslMode::VerifyCa,   Some(ca),  Require, Chain(file())),
            (SslMode::VerifyFull, None,      Require, ChainAndHost(Roots::WebPki)),
            (SslMode::VerifyFull, Some(ca),  Require, ChainAndHost(file())),
            (SslMode::VerifyFull, system,    Require, ChainAndHost(Roots::WebPki)),
        ];
        for (mode, root, wire, check) in cases {
            assert_eq!(plan(mode, root), Plan { wire, check }, "{mode:?} {root:?}");
        }
    }

    #[test]
    fn every_check_builds_a_config_offering_postgresql_alpn() {
        for check in [
            Check::Nothing,
            Check::Chain(Roots::WebPki),
            Check::ChainAndHost(Roots::WebPki),
        ] {
            let c = client_config(&check).unwrap();
            assert_eq!(c.alpn_protocols, vec![b"postgresql".to_vec()], "{check:?}");
        }
    }

    #[test]
    fn a_root_cert_file_that_is_missing_or_empty_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(&Check::Chain(Roots::File(missing.clone()))).unwrap_err();
        assert!(
            e.contains("sslrootcert") && e.contains(&*missing.to_string_lossy()),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&Check::ChainAndHost(Roots::File(empty))).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
