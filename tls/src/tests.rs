use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::local_ca::{issue, new_ca, PemPair};

const DAY: Duration = Duration::from_secs(86_400);

fn ca() -> PemPair {
    new_ca("calls test ca", SystemTime::now(), DAY).unwrap()
}

fn write_pair(dir: &Path, pair: &PemPair) -> CertFiles {
    let files = CertFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, &pair.cert).unwrap();
    std::fs::write(&files.key, &pair.key).unwrap();
    files
}

fn server(ca: &PemPair) -> PemPair {
    issue(
        ca,
        &["calls.test".into(), "127.0.0.1".into()],
        SystemTime::now(),
        DAY,
    )
    .unwrap()
}

#[test]
fn a_missing_or_bad_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let files = write_pair(dir.path(), &server(&ca));

    let missing = CertFiles {
        cert: dir.path().join("nope.pem"),
        key: files.key.clone(),
    };
    let error = ServerTls::load(missing).unwrap_err().to_string();
    assert!(
        error.contains("cannot read certificate file") && error.contains("nope.pem"),
        "{error}"
    );

    let not_pem = dir.path().join("garbage.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let error = ServerTls::load(CertFiles {
        cert: not_pem.clone(),
        key: files.key.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("garbage.pem") && error.contains("no PEM certificate"),
        "{error}"
    );
    let error = ServerTls::load(CertFiles {
        cert: files.cert.clone(),
        key: not_pem,
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("key file") && error.contains("garbage.pem"),
        "{error}"
    );

    // A key of another certificate.
    let other = dir.path().join("other-key.pem");
    std::fs::write(&other, server(&ca).key).unwrap();
    let error = ServerTls::load(CertFiles {
        cert: files.cert.clone(),
        key: other,
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("does not fit certificate file"), "{error}");
    assert!(ServerTls::load(files).is_ok());
}

#[test]
fn changed_files_are_picked_up_and_a_bad_change_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let first = server(&ca);
    let files = write_pair(dir.path(), &first);
    let cert = ReloadingCert::load(files.clone()).unwrap();
    let start = Instant::now();
    let served = |at: Duration| cert.current_at(start + at).cert[0].clone();
    let first_der = served(Duration::ZERO);

    // Renewed: the next look after the interval serves the new one.
    let second = server(&ca);
    write_pair(dir.path(), &second);
    let second_der = served(Duration::from_secs(2));
    assert_ne!(first_der, second_der);
    assert_eq!(cert.reloads(), 1);

    // Half-way through a renewal (new certificate, old key): keeps serving the second.
    std::fs::write(&files.cert, server(&ca).cert).unwrap();
    assert_eq!(served(Duration::from_secs(4)), second_der);
    assert_eq!(cert.reloads(), 1);
    // The key follows: now the third is served.
    let third = server(&ca);
    write_pair(dir.path(), &third);
    let third_der = served(Duration::from_secs(6));
    assert_ne!(third_der, second_der);
    assert_eq!(cert.reloads(), 2);
    // Files gone: the loaded certificate stays.
    std::fs::remove_file(&files.cert).unwrap();
    assert_eq!(served(Duration::from_secs(8)), third_der);
}

/// A real handshake over loopback: the client trusts the local CA and checks the name.
async fn handshake(acceptor: &TlsAcceptor, ca: &PemPair, name: &str) -> std::io::Result<Vec<u8>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = acceptor.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut tls = acceptor.accept(stream).await?;
        tls.write_all(b"hello").await?;
        tls.shutdown().await?;
        std::io::Result::Ok(())
    });
    let roots = parse_certificates(ca.cert.as_bytes()).unwrap();
    let connector = TlsConnector::from(client_config(&roots).unwrap());
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), stream)
        .await?;
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let mut body = Vec::new();
    tls.read_to_end(&mut body).await?;
    assert_eq!(body, b"hello");
    let _ = server.await;
    Ok(peer)
}

#[tokio::test]
async fn clients_trusting_the_ca_connect_and_get_the_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let first = server(&ca);
    let files = write_pair(dir.path(), &first);
    let tls = ServerTls::load(files).unwrap();
    let peer = handshake(&tls.acceptor, &ca, "calls.test").await.unwrap();
    assert_eq!(
        peer,
        parse_certificates(first.cert.as_bytes()).unwrap()[0].to_vec()
    );
    // By IP address too.
    handshake(&tls.acceptor, &ca, "127.0.0.1").await.unwrap();
    // A name the certificate does not hold is refused by the client.
    assert!(handshake(&tls.acceptor, &ca, "other.test").await.is_err());
    // A client that does not trust the CA is refused.
    assert!(handshake(
        &tls.acceptor,
        &new_ca("stranger", SystemTime::now(), DAY).unwrap(),
        "calls.test"
    )
    .await
    .is_err());

    let second = server(&ca);
    write_pair(dir.path(), &second);
    tokio::time::sleep(reload::CHECK_INTERVAL + Duration::from_millis(100)).await;
    let peer = handshake(&tls.acceptor, &ca, "calls.test").await.unwrap();
    assert_eq!(
        peer,
        parse_certificates(second.cert.as_bytes()).unwrap()[0].to_vec()
    );
}
