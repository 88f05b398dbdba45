//! Helpers of the TLS tests: a local CA and a server certificate in a temporary directory (renewed
//! in place like an ACME client does), an SFU serving them, clients trusting the CA, the
//! certificate a new connection gets, and the correlation of speech envelopes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use calls_participant::{JoinOptions, Participant, Role};
use calls_sfu::{Config, RunningSfu};
use calls_tls::local_ca::{issue, new_ca, PemPair};
use calls_tls::CertFiles;

use crate::common::{token, SECRET};

const DAY: Duration = Duration::from_secs(86_400);

/// A CA and a server certificate for `names`, as files.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PemPair,
    pub files: CertFiles,
    names: Vec<String>,
    server: Mutex<PemPair>,
}

impl Certs {
    pub fn new(names: &[&str]) -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("calls test ca", SystemTime::now(), DAY).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let server = issue(&ca, &names, SystemTime::now(), DAY).unwrap();
        let files = CertFiles {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
        };
        std::fs::write(&files.cert, &server.cert).unwrap();
        std::fs::write(&files.key, &server.key).unwrap();
        Certs {
            dir,
            ca,
            files,
            names,
            server: Mutex::new(server),
        }
    }

    /// The server certificate served now (DER).
    pub fn leaf_der(&self) -> Vec<u8> {
        let server = self.server.lock().unwrap();
        calls_tls::parse_certificates(server.cert.as_bytes()).unwrap()[0].to_vec()
    }

    /// Base64 SHA-256 of the server key's SPKI (Chromium's --ignore-certificate-errors-spki-list).
    pub fn spki(&self) -> String {
        calls_tls::local_ca::spki_sha256_base64(&self.server.lock().unwrap().key).unwrap()
    }

    /// Issues a new certificate (new key) and writes it over the files, certificate first, as a
    /// renewal does; returns its DER.
    pub fn renew(&self) -> Vec<u8> {
        let renewed = issue(&self.ca, &self.names, SystemTime::now(), DAY).unwrap();
        std::fs::write(&self.files.cert, &renewed.cert).unwrap();
        std::fs::write(&self.files.key, &renewed.key).unwrap();
        *self.server.lock().unwrap() = renewed;
        self.leaf_der()
    }
}

/// An SFU on 127.0.0.1 serving `certs` (`adjust` changes the config first).
pub async fn start_tls_sfu(certs: &Certs, adjust: impl FnOnce(&mut Config)) -> RunningSfu {
    let mut config = Config::for_local_test(SECRET);
    config.http_tls = Some(calls_sfu::config::TlsFiles {
        cert_file: certs.files.cert.clone(),
        key_file: certs.files.key.clone(),
    });
    adjust(&mut config);
    calls_sfu::start(config).await.expect("sfu starts with tls")
}

/// Join options trusting `ca_pem`.
pub fn trusting(ca_pem: &str) -> JoinOptions {
    JoinOptions {
        ca_cert_pem: Some(ca_pem.to_owned()),
        ..JoinOptions::default()
    }
}

/// `name` joins `call` over WSS trusting the test CA; returns once media is up.
pub async fn join_tls(sfu: &RunningSfu, certs: &Certs, call: &str, name: &str) -> Participant {
    Participant::join_connected(
        &sfu.ws_url(),
        &token(call, name, Role::Participant),
        trusting(&certs.ca.cert),
        Duration::from_secs(10),
    )
    .await
    .expect("join over wss succeeds and media connects")
}

/// An HTTPS client trusting only the public roots and `ca_pem`.
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// The certificate (DER) a new TLS connection to `addr` is given, checked against `ca_pem`.
pub async fn peer_certificate(addr: SocketAddr, ca_pem: &str) -> std::io::Result<Vec<u8>> {
    let roots = calls_tls::parse_certificates(ca_pem.as_bytes()).unwrap();
    let connector = calls_tls::TlsConnector::from(calls_tls::client_config(&roots).unwrap());
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let tls = connector
        .connect(calls_tls::ServerName::from(addr.ip()), stream)
        .await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

/// Pearson correlation of the 10 ms energy envelopes of `sent` and the best-aligned part of
/// `heard` (48 kHz mono): 1.0 = the same loudness contour.
pub fn envelope_correlation(sent: &[i16], heard: &[i16]) -> f64 {
    let envelope = |pcm: &[i16]| -> Vec<f64> {
        pcm.chunks_exact(480)
            .map(|c| c.iter().map(|s| f64::from(*s).abs()).sum::<f64>() / 480.0)
            .collect()
    };
    let (a, b) = (envelope(sent), envelope(heard));
    if a.is_empty() || b.len() < a.len() {
        return 0.0;
    }
    (0..=b.len() - a.len())
        .map(|lag| pearson(&a, &b[lag..lag + a.len()]))
        .fold(0.0, f64::max)
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut dot, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        dot += (x - mean_a) * (y - mean_b);
        var_a += (x - mean_a).powi(2);
        var_b += (y - mean_b).powi(2);
    }
    if var_a == 0.0 || var_b == 0.0 {
        return 0.0;
    }
    dot / (var_a * var_b).sqrt()
}
