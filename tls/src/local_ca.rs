//! A local certificate authority for a stack without a public certificate: `calls-sfu cert`
//! (used by `scripts/run-stack.sh`) makes one CA once and server certificates signed by it for
//! the host's names and addresses; a person trusts the CA once on each laptop. The tests make
//! their own the same way.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, Result};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn generate(err: rcgen::Error) -> Error {
    Error::Generate(err.to_string())
}

/// Validity from an hour before `now` (clocks differ a little) to `now + valid_for`.
fn validity(params: &mut CertificateParams, now: SystemTime, valid_for: Duration) {
    let now = time::OffsetDateTime::from(now);
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + valid_for;
}

/// A new CA certificate named `common_name`, valid for `valid_for` from `now`.
pub fn new_ca(common_name: &str, now: SystemTime, valid_for: Duration) -> Result<PemPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, valid_for);
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A server certificate for `names` (DNS names and IP addresses; the first is also its common
/// name) signed by `ca`, valid for `valid_for` from `now`.
pub fn issue(
    ca: &PemPair,
    names: &[String],
    now: SystemTime,
    valid_for: Duration,
) -> Result<PemPair> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(generate)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(generate)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, valid_for);
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// How long the local CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a server certificate is valid: 397 days, the most browsers and Apple's systems
/// accept for a server certificate.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 86_400);

/// The files `calls-sfu cert` keeps in its directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// What [`write_stack_certificates`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// A new CA was made (there was none in the directory).
    pub new_ca: bool,
}

fn write(path: &std::path::Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    // Written next to the target and renamed over it, so a server reloading the files never
    // reads half a file.
    let tmp = path.with_extension("pem.tmp");
    let result = options
        .open(&tmp)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|source| Error::Read {
        what: "output",
        path: path.to_owned(),
        source,
    })
}

/// Makes the CA in `dir` unless it has one, then a server certificate for `names` signed by it
/// (replacing the previous one). Keys are written readable by their owner only.
pub fn write_stack_certificates(
    dir: &std::path::Path,
    names: &[String],
    now: SystemTime,
) -> Result<Written> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Read {
        what: "certificate directory",
        path: dir.to_owned(),
        source,
    })?;
    let ca_cert = dir.join(CA_CERT_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    let new_ca = !(ca_cert.is_file() && ca_key.is_file());
    let ca = if new_ca {
        let ca = new_ca_named(now)?;
        write(&ca_key, &ca.key, true)?;
        write(&ca_cert, &ca.cert, false)?;
        ca
    } else {
        let read = |path: &std::path::Path, what| {
            std::fs::read_to_string(path).map_err(|source| Error::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        PemPair {
            cert: read(&ca_cert, "ca certificate")?,
            key: read(&ca_key, "ca key")?,
        }
    };
    let server = issue(&ca, names, now, SERVER_VALIDITY)?;
    write(&dir.join(SERVER_KEY_FILE), &server.key, true)?;
    write(&dir.join(SERVER_CERT_FILE), &server.cert, false)?;
    Ok(Written { new_ca })
}

fn new_ca_named(now: SystemTime) -> Result<PemPair> {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let name = if host.is_empty() {
        "calls local CA".to_owned()
    } else {
        format!("calls local CA ({host})")
    };
    new_ca(&name, now, CA_VALIDITY)
}

/// The base64 SHA-256 of the public key (SubjectPublicKeyInfo) of a PEM private key: what
/// Chromium's `--ignore-certificate-errors-spki-list` and HPKP-style pins take.
pub fn spki_sha256_base64(key_pem: &str) -> Result<String> {
    use base64::Engine;
    use sha2::Digest;
    let key = KeyPair::from_pem(key_pem).map_err(generate)?;
    let digest = sha2::Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key));
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}
