//! The collector through its public API on local hosts and a real HTTP server:
//! file, command and url entities, missing things, failures and caps.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use fleetcheck_core::{Authority, Collector, CollectorOptions, State};

fn md5(data: &[u8]) -> String {
    use md5::Digest as _;
    format!("{:x}", md5::Md5::digest(data))
}

/// Serves `/good` (a fixed body), `/big` (over the cap), `/slow` (never
/// answers in time) and 404 for anything else; returns the port.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.as_str() {
                    "/good/web-01" => ("200 OK", b"motd for everyone\n".to_vec()),
                    "/big/web-01" => ("200 OK", vec![b'x'; 10_000]),
                    "/slow/web-01" => {
                        std::thread::sleep(Duration::from_secs(5));
                        ("200 OK", Vec::new())
                    }
                    _ => ("404 Not Found", b"no\n".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

#[tokio::test]
async fn file_command_and_url_entities_on_a_local_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.conf"), b"workers = 8\n").unwrap();
    let port = serve();
    let d = dir.path().display();
    let text = format!(
        r#"
hosts:
  - {{ name: web-01, address: 127.0.0.1, transport: local }}
entities:
  - {{ name: conf, type: file, path: {d}/app.conf, md5: {conf}, entity_set: [web-01] }}
  - {{ name: conf-drifted, type: file, path: {d}/app.conf, md5: 00000000000000000000000000000000, entity_set: [web-01] }}
  - {{ name: conf-missing, type: file, path: {d}/gone.conf, md5: {conf}, entity_set: [web-01] }}
  - {{ name: conf-normalised, type: file, path: {d}/app.conf, collect_script: 'tr -d " " < "$FLEETCHECK_PATH"', md5: {norm}, entity_set: [web-01] }}
  - {{ name: queues, type: command, collect_script: 'printf "8\n"', md5: {eight}, entity_set: [web-01] }}
  - {{ name: failing, type: command, collect_script: 'echo broken >&2; exit 4', md5: {eight}, entity_set: [web-01] }}
  - {{ name: chatty, type: command, collect_script: 'yes', md5: {eight}, max_output: 1024, entity_set: [web-01] }}
  - {{ name: versioned, type: command, collect_script: 'printf "8\n"', md5: {eight}, version: "2.0", version_script: 'echo 1.9', entity_set: [web-01] }}
  - {{ name: motd, type: url, path: "http://{{address}}:{port}/good/{{host}}", md5: {motd}, entity_set: [web-01] }}
  - {{ name: motd-missing, type: url, path: "http://127.0.0.1:{port}/nothing/{{host}}", md5: {motd}, entity_set: [web-01] }}
  - {{ name: motd-big, type: url, path: "http://127.0.0.1:{port}/big/{{host}}", md5: {motd}, max_output: 1000, entity_set: [web-01] }}
  - {{ name: motd-slow, type: url, path: "http://127.0.0.1:{port}/slow/{{host}}", md5: {motd}, check_timeout: 1s, entity_set: [web-01] }}
"#,
        conf = md5(b"workers = 8\n"),
        norm = md5(b"workers=8\n"),
        eight = md5(b"8\n"),
        motd = md5(b"motd for everyone\n"),
    );
    let authority = Authority::parse(&text, &dir.path().join("authority.yaml")).unwrap();
    let collector = Collector::new(CollectorOptions {
        concurrency: 4,
        max_sessions: 4,
        control_dir: dir.path().to_path_buf(),
        session_idle: Duration::from_secs(10),
    });
    let snapshot = collector.collect(&authority).await;
    let state = |name: &str| {
        let p = snapshot
            .pairs
            .iter()
            .find(|p| p.entity == name)
            .unwrap_or_else(|| panic!("no pair for {name}"));
        (p.state, p.error.clone().unwrap_or_default())
    };
    assert_eq!(state("conf").0, State::Consistent);
    assert_eq!(state("conf-drifted").0, State::Drifted);
    assert_eq!(state("conf-missing").0, State::Missing);
    assert_eq!(state("conf-normalised").0, State::Consistent);
    assert_eq!(state("queues").0, State::Consistent);
    assert_eq!(
        state("failing"),
        (
            State::CheckFailed,
            "exited with status 4: broken".to_string()
        )
    );
    let (s, e) = state("chatty");
    assert_eq!(s, State::CheckFailed);
    assert!(e.contains("exceeds max_output (1024 bytes)"), "{e}");
    assert_eq!(state("versioned").0, State::VersionMismatch);
    assert_eq!(state("motd").0, State::Consistent);
    assert_eq!(state("motd-missing").0, State::Missing);
    let (s, e) = state("motd-big");
    assert_eq!(s, State::CheckFailed);
    assert!(e.contains("cap 1000 bytes"), "{e}");
    let (s, e) = state("motd-slow");
    assert_eq!(s, State::CheckFailed);
    assert!(e.contains("timed out after 1s"), "{e}");
    assert_eq!(snapshot.hosts.len(), 1);
    assert!(snapshot.hosts[0].up);

    // The remediator's re-check: only the pairs asked for, and only real ones.
    let pairs = collector
        .check_pairs(
            &authority,
            &[
                ("queues".into(), "web-01".into()),
                ("queues".into(), "not-in-set".into()),
                ("ghost".into(), "web-01".into()),
            ],
        )
        .await;
    assert_eq!(pairs.len(), 1);
    assert_eq!(
        (pairs[0].entity.as_str(), pairs[0].state),
        ("queues", State::Consistent)
    );
}

/// A test CA and a certificate for 127.0.0.1 it signed, made with openssl in
/// `dir`: (ca.pem, cert.pem, key.pem). webpki refuses a CA certificate used as
/// the server's own, so the usual one-command self-signed certificate will not do.
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl not found: install it with `apt-get install openssl` (scripts/test does this)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=fleetcheck-test-ca",
    ]);
    openssl(&[
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// An HTTPS server (rustls, blocking) answering every request with `body`.
fn serve_tls(cert: &std::path::Path, key: &std::path::Path, body: &'static [u8]) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                if tls.read(&mut buf).is_err() {
                    return; // the client refused our certificate
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(body);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[tokio::test]
async fn https_urls_trust_the_system_store_plus_url_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = test_pki(dir.path());
    let port = serve_tls(&cert, &key, b"motd for everyone\n");
    let authority = |defaults: &str| {
        let text = format!(
            "{defaults}hosts:\n  - {{ name: web-01, address: 127.0.0.1, transport: local }}\nentities:\n  - {{ name: motd, type: url, path: \"https://{{address}}:{port}/motd\", md5: {}, entity_set: [web-01] }}\n",
            md5(b"motd for everyone\n")
        );
        Authority::parse(&text, &dir.path().join("authority.yaml"))
    };
    let collector = Collector::new(CollectorOptions {
        concurrency: 1,
        max_sessions: 1,
        control_dir: dir.path().to_path_buf(),
        session_idle: Duration::from_secs(10),
    });

    // Trusted through url_ca_file (relative to the authority file).
    let trusted = authority("defaults: { url_ca_file: ca.pem }\n").unwrap();
    let snapshot = collector.collect(&trusted).await;
    assert_eq!(
        snapshot.pairs[0].state,
        State::Consistent,
        "{:?}",
        snapshot.pairs[0].error
    );

    // Without it, the test CA's certificate is refused (and reloading
    // without the file rebuilds the client).
    let untrusted = authority("").unwrap();
    let snapshot = collector.collect(&untrusted).await;
    assert_eq!(snapshot.pairs[0].state, State::CheckFailed);
    let error = snapshot.pairs[0].error.clone().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // A url_ca_file that holds no certificate is an authority problem.
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let err = authority("defaults: { url_ca_file: empty.pem }\n").unwrap_err();
    assert!(err.to_string().contains("defaults.url_ca_file"), "{err}");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}
