//! TLS for the calls programs, with rustls (no OpenSSL):
//!
//! - [`ServerTls`]: a server certificate and key read from PEM files (a chain is allowed) and
//!   **re-read when the files change**, so a certificate renewed by an ACME client is served to the
//!   next connection without a restart ([`reload`]). A missing or bad file is an error naming the
//!   file at start; a bad file later keeps the certificate already loaded (and says so in the log).
//! - [`client_config`]: what a client trusts: the public web roots plus extra CA certificates
//!   (a stack's own local CA, `--ca-cert FILE`, the PEM a job gets in its environment).
//! - [`local_ca`]: makes a local CA and server certificates signed by it (`run-stack.sh` and tests).
//!
//! Shared by the SFU and the offloader (servers) and the participant client and the job shell
//! (clients), so that there is one way to load and trust certificates.

pub mod local_ca;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use reload::{CertFiles, ReloadingCert};
use rustls::pki_types::pem::PemObject;
pub use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use rustls::{ClientConfig, ServerConfig};
pub use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// Why a certificate could not be loaded or trusted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no PEM block of the kind expected, or a broken one.
    #[error("{what} file {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refuses it.
    #[error("key file {key} does not fit certificate file {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// A certificate could not be generated.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Result with the TLS error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one crypto provider of every config made here (ring, as the rest of the workspace uses).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file (`what` names the file's role in errors: "certificate", "ca
/// certificate"). At least one is required.
pub fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(what, path)?;
    parse_certificates(&bytes).map_err(|reason| Error::Pem {
        what,
        path: path.to_owned(),
        reason,
    })
}

/// The certificates of PEM text; at least one is required.
pub fn parse_certificates(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| format!("not valid PEM: {err}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| Error::Pem {
        what: "key",
        path: path.to_owned(),
        reason: match err {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----)".into()
            }
            other => format!("not a valid PEM private key: {other}"),
        },
    })
}

/// A server's TLS: the config to accept connections with and the certificate it reloads.
#[derive(Clone)]
pub struct ServerTls {
    /// Accepts connections with the current certificate.
    pub acceptor: TlsAcceptor,
    /// The certificate, re-read when its files change.
    pub cert: Arc<ReloadingCert>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .finish()
    }
}

impl ServerTls {
    /// Loads the certificate chain and key (an error names the file at fault) and builds a
    /// server config offering HTTP/1.1, TLS 1.2 and 1.3.
    pub fn load(files: CertFiles) -> Result<ServerTls> {
        let cert = Arc::new(ReloadingCert::load(files)?);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
        })
    }
}

/// A client config trusting the public web roots and `extra_roots` (a local CA).
pub fn client_config(extra_roots: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
