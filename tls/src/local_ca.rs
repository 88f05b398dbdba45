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
