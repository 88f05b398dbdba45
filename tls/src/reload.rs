//! A server certificate that follows its files: [`ReloadingCert`] is rustls' certificate
//! resolver, so every handshake asks it for the certificate; at most once per
//! [`CHECK_INTERVAL`] it looks at the two files' modification times and sizes, and when either
//! changed it reads them again. ACME clients replace the certificate every few weeks, often the
//! two files one after the other: a pair that does not load (a key that does not fit its
//! certificate yet, a half-written file) keeps the certificate already served, is logged, and is
//! tried again when the files change next.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{read_certificates, read_private_key, Error, Result};

/// How often, at most, the files are looked at (a handshake looks when this much time passed).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The two PEM files of a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate, then the intermediates of its chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// What identifies a version of the files: modification time and size of each.
type Stamp = [(Option<SystemTime>, u64); 2];

struct Current {
    key: Arc<CertifiedKey>,
    /// The files' stamp of the last load attempt, good or bad.
    stamp: Option<Stamp>,
    checked: Instant,
    reloads: u64,
}

/// The server certificate, reloaded when its files change.
pub struct ReloadingCert {
    files: CertFiles,
    current: Mutex<Current>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish()
    }
}

fn stamp(files: &CertFiles) -> Option<Stamp> {
    let one = |path: &PathBuf| {
        std::fs::metadata(path)
            .ok()
            .map(|meta| (meta.modified().ok(), meta.len()))
    };
    Some([one(&files.cert)?, one(&files.key)?])
}

/// Reads the pair and checks that the key fits the certificate.
fn load_pair(files: &CertFiles) -> Result<CertifiedKey> {
    let chain = read_certificates("certificate", &files.cert)?;
    let key = read_private_key(&files.key)?;
    CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|err| Error::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: err.to_string(),
    })
}

impl ReloadingCert {
    /// Loads the files now; an error names the file at fault.
    pub fn load(files: CertFiles) -> Result<ReloadingCert> {
        let stamp = stamp(&files);
        let key = load_pair(&files)?;
        Ok(ReloadingCert {
            current: Mutex::new(Current {
                key: Arc::new(key),
                stamp,
                checked: Instant::now(),
                reloads: 0,
            }),
            files,
        })
    }

    /// The certificate to serve at `now`, after reading the files again if they changed and the
    /// last look is at least [`CHECK_INTERVAL`] old.
    pub fn current_at(&self, now: Instant) -> Arc<CertifiedKey> {
        // A poisoned lock means a panic while swapping two fields; the data is still whole.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.saturating_duration_since(current.checked) >= CHECK_INTERVAL {
            current.checked = now;
            let seen = stamp(&self.files);
            if seen.is_some() && seen != current.stamp {
                current.stamp = seen;
                match load_pair(&self.files) {
                    Ok(key) => {
                        current.key = Arc::new(key);
                        current.reloads += 1;
                        tracing::info!(cert = %self.files.cert.display(), "tls certificate reloaded");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "tls certificate files changed but do not load; still serving the previous certificate");
                    }
                }
            }
        }
        Arc::clone(&current.key)
    }

    /// How many times a changed pair of files was loaded since start.
    pub fn reloads(&self) -> u64 {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .reloads
    }

    /// The files served.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current_at(Instant::now()))
    }
}
