//! `sslmode` against a stub PostgreSQL server on loopback that speaks just enough of the
//! protocol: it answers the `SSLRequest`, does the TLS handshake with a certificate for
//! `localhost` signed by the test CA (`tests/it/tls/`: `ca.pem`, `server.pem`,
//! `server-key.pem`; `other-ca.pem` signed nothing here), reads the startup message and
//! refuses it with an error naming how it came (`handshake done` or `plain`). So each
//! mode's certificate check is seen to pass or fail, with no server of ours needing TLS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lomi_sync::store::StoreError;
use lomi_sync::store::pg::{PgStore, PgTarget};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const PASSWORD: &str = "pw-tls-stub-never-printed";

/// What the stub does after answering `S` to an `SSLRequest`.
#[derive(Clone, Copy)]
enum Stub {
    /// The TLS handshake with the `localhost` certificate.
    Tls,
    /// Bytes that are no TLS, then it hangs up (a broken TLS setup).
    Garbage,
}

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/tls")
        .join(name)
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls_file("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_file("server-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// A length-prefixed message (the startup message and `SSLRequest` have no type byte).
fn read_message(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// A FATAL `ErrorResponse` with `message`.
fn error_response(message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (b'M', message),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// One connection: what the stub saw (`tls`, `tls refused`, `garbage`, `plain`).
fn handle(mut sock: TcpStream, stub: Stub) -> &'static str {
    const SSL_REQUEST: [u8; 4] = 80877103u32.to_be_bytes();
    let Ok(first) = read_message(&mut sock) else {
        return "nothing";
    };
    if first != SSL_REQUEST {
        let _ = sock.write_all(&error_response("stub server: plain"));
        return "plain";
    }
    let _ = sock.write_all(b"S");
    match stub {
        Stub::Garbage => {
            let _ = sock.write_all(b"HTTP/1.1 400 this is not TLS\r\n\r\n");
            "garbage"
        }
        Stub::Tls => {
            let conn = rustls::ServerConnection::new(server_config()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            match read_message(&mut tls) {
                Ok(_) => {
                    let _ = tls.write_all(&error_response("stub server: handshake done"));
                    let _ = tls.flush();
                    "tls"
                }
                Err(_) => "tls refused",
            }
        }
    }
}

/// Serves `n` connections (or until 20 s pass), then returns what it saw of each.
fn stub(stub: Stub, n: usize) -> (u16, JoinHandle<Vec<&'static str>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while seen.len() < n && Instant::now() < deadline {
            match listener.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(false).unwrap();
                    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    seen.push(handle(sock, stub));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
        seen
    });
    (port, handle)
}

/// The error of opening a mirror at `url`, with its causes on one line.
fn open_error(url: &str) -> (StoreError, String) {
    let target = PgTarget::new(url, "lomi", Some(PASSWORD)).unwrap();
    let e = match PgStore::open(&target, Duration::from_secs(5)) {
        Err(e) => e,
        Ok(_) => panic!("{url}: the stub accepted a session"),
    };
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(!text.contains(PASSWORD), "{text}");
    (e, text)
}

/// Modes whose check the stub's certificate passes: the handshake is done, and the
/// stub's refusal of the session is what comes back.
#[test]
fn a_certificate_each_mode_accepts_completes_the_handshake() {
    let ca = tls_file("ca.pem");
    let ca = ca.display();
    let cases = [
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("127.0.0.1", "sslmode=prefer".to_string()),
    ];
    for (host, query) in cases {
        let (port, server) = stub(Stub::Tls, 1);
        let url = format!("postgres://lomi@{host}:{port}/db?{query}");
        let (e, text) = open_error(&url);
        assert!(matches!(e, StoreError::Connect { .. }), "{url}: {text}");
        assert!(
            text.contains("stub server: handshake done"),
            "{url}: {text}"
        );
        assert_eq!(server.join().unwrap(), ["tls"], "{url}");
    }
}

/// Modes whose check the stub's certificate fails: a TLS error naming the mode, and
/// the session never starts.
#[test]
fn a_certificate_a_mode_refuses_fails_naming_the_mode() {
    let ca = tls_file("ca.pem");
    let other = tls_file("other-ca.pem");
    let cases = [
        // Issued for localhost, not for the address connected to.
        (
            format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            "verify-full",
            "not issued for the host",
        ),
        // Signed by a CA the file does not hold.
        (
            format!("sslmode=verify-ca&sslrootcert={}", other.display()),
            "verify-ca",
            "sslrootcert",
        ),
        // No sslrootcert: the public roots, which never signed the test CA.
        ("sslmode=verify-ca".to_string(), "verify-ca", "sslrootcert"),
        // require with a root file checks the chain, as libpq does.
        (
            format!("sslmode=require&sslrootcert={}", other.display()),
            "require",
            "sslrootcert",
        ),
    ];
    for (query, mode, hint) in cases {
        let (port, server) = stub(Stub::Tls, 1);
        let url = format!("postgres://lomi@127.0.0.1:{port}/db?{query}");
        let (e, text) = open_error(&url);
        assert!(matches!(e, StoreError::Tls { .. }), "{url}: {text}");
        assert!(
            text.contains(&format!("with sslmode={mode}:")) && text.contains(hint),
            "{url}: {text}"
        );
        assert_eq!(server.join().unwrap(), ["tls refused"], "{url}");
    }
    // An sslrootcert that is not there is named before anything is sent.
    let url = "postgres://lomi@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    let (e, text) = open_error(url);
    assert!(matches!(e, StoreError::Tls { .. }), "{text}");
    assert!(
        text.contains("cannot read sslrootcert /nonexistent/ca.pem"),
        "{text}"
    );
}

/// `prefer`: a TLS setup that fails is tried again in plain text, as libpq does;
/// `require` stops there.
#[test]
fn prefer_falls_back_to_plain_text_when_the_handshake_fails() {
    let (port, server) = stub(Stub::Garbage, 2);
    let (e, text) = open_error(&format!(
        "postgres://lomi@127.0.0.1:{port}/db?sslmode=prefer"
    ));
    assert!(matches!(e, StoreError::Connect { .. }), "{text}");
    assert!(text.contains("stub server: plain"), "{text}");
    assert_eq!(server.join().unwrap(), ["garbage", "plain"]);
    let (port, server) = stub(Stub::Garbage, 1);
    let (e, text) = open_error(&format!(
        "postgres://lomi@127.0.0.1:{port}/db?sslmode=require"
    ));
    assert!(matches!(e, StoreError::Tls { .. }), "{text}");
    assert!(text.contains("sslmode=require"), "{text}");
    assert_eq!(server.join().unwrap(), ["garbage"]);
}
