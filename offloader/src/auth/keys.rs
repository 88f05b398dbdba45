//! Client key verification that cannot be turned against the host. argon2id is deliberately
//! slow and memory-hard (19 MiB, tens of ms per check), so each `Basic` request or `/login`
//! would otherwise cost that much, without bound. [`KeyVerifier`] keeps it bounded:
//!
//! - **Cache.** A key that verified is remembered for `api.key_cache_ttl` as an HMAC-SHA256 of
//!   (client id, key) under a random per-process secret, next to the argon2 hash it matched.
//!   The key itself is never kept. A hit costs one HMAC and one store read and extends the
//!   entry's life (a client in steady use never pays argon2 again until a restart); a stale
//!   entry (the client was unregistered or registered again with another key) no longer
//!   matches the stored hash and is dropped.
//! - **Slots.** At most `api.max_key_verifications` argon2 runs at once; further requests wait
//!   for a slot (and give up with 503 after [`SLOT_WAIT`]), so memory peaks at slots × 19 MiB.
//! - **Failure limit.** More than `api.auth_failure_limit` failed verifications within a minute
//!   for one client id *from one source address* (an IPv6 /64) answer 429 for that pair without
//!   running argon2. The pair, not the id or the address alone: wrong keys sent from elsewhere
//!   never lock out the right key, and clients sharing an address (one NAT) never lock out
//!   each other. A cached key is never refused. Guessing across many ids or addresses is
//!   bounded by the slots (each guess waits for an argon2 run), and keys of at least 32
//!   characters make it hopeless anyway; the limit keeps one pair from burning the slots.
//! - **Equal work for unknown ids.** An unknown client id is checked against a dummy hash, so the
//!   answer time does not tell which ids exist.
//! - **Memory returns.** The argon2 working memory is allocated here, above glibc's largest
//!   dynamic mmap threshold, so it is mapped per verification and unmapped afterwards instead
//!   of staying in a per-thread malloc arena after a burst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::store::{ClientRecord, Store};

/// How long a request waits for a verification slot before it is refused with 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);
/// The window of the failure limit.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Entries kept by the cache and by the failure counter; beyond it expired entries are pruned,
/// and if that is not enough the map starts over (its memory stays bounded under a flood).
const MAX_ENTRIES: usize = 10_000;
/// glibc raises its mmap threshold up to 32 MiB after freeing a mapped chunk; a reservation
/// above it is always mapped and unmapped on free. Only the pages argon2 touches (its m_cost)
/// become resident.
const RESERVE_BYTES: usize = 33 * 1024 * 1024;
/// Stored hashes asking for more memory than this are refused rather than computed.
const MAX_M_COST_KIB: u32 = 256 * 1024;

type Fingerprint = [u8; 32];

/// How a key check ended (the `outcome` label of `calls_offloader_auth_key_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Matched a remembered verification: no argon2 run.
    Cached,
    /// argon2 ran and the key matched.
    Verified,
    /// argon2 ran (against the dummy hash for an unknown id) and the key did not match.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Cached => "cached",
            Outcome::Verified => "verified",
            Outcome::Rejected => "rejected",
        }
    }
}

struct CachedKey {
    key_hash: String,
    expires: Instant,
}

/// Failed verifications per (client id, source address) within [`FAILURE_WINDOW`].
#[derive(Default)]
struct Failures {
    counts: HashMap<String, (u32, Instant)>,
}

impl Failures {
    fn count(&self, key: &str, now: Instant) -> u32 {
        match self.counts.get(key) {
            Some((n, start)) if now.duration_since(*start) < FAILURE_WINDOW => *n,
            _ => 0,
        }
    }

    /// Takes back one failure charged by [`Failures::add`] (a check that then succeeded).
    fn refund(&mut self, key: &str, now: Instant) {
        if let Some((n, start)) = self.counts.get_mut(key) {
            if now.duration_since(*start) < FAILURE_WINDOW {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn add(&mut self, key: String, now: Instant) {
        if self.counts.len() >= MAX_ENTRIES {
            self.counts
                .retain(|_, (_, start)| now.duration_since(*start) < FAILURE_WINDOW);
            if self.counts.len() >= MAX_ENTRIES {
                self.counts.clear();
            }
        }
        let entry = self.counts.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

/// The source-address key of the failure limit: the address, or its /64 for IPv6 (one host
/// usually owns a whole /64).
pub fn source_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The failure-limit key of a client id tried from `source` (length-prefixed, so no id can
/// collide with another pair).
pub fn failure_key(client_id: &str, source: Option<IpAddr>) -> String {
    let source = source.map_or_else(|| "ip:none".to_string(), source_key);
    format!("{}:{client_id}|{source}", client_id.len())
}

/// See the module documentation.
pub struct KeyVerifier {
    cache_ttl: Duration,
    cache_secret: [u8; 32],
    cache: Mutex<HashMap<Fingerprint, CachedKey>>,
    slots: Arc<Semaphore>,
    failures: Mutex<Failures>,
    failure_limit: u32,
    dummy_hash: String,
}

impl KeyVerifier {
    /// `slots` ≥ 1 (validated config). Computes the dummy hash once (one argon2 run).
    pub fn new(cache_ttl: Duration, slots: usize, failure_limit: u32) -> Result<KeyVerifier> {
        let mut cache_secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut cache_secret);
        let mut dummy_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut dummy_key);
        Ok(KeyVerifier {
            cache_ttl,
            cache_secret,
            cache: Mutex::default(),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            failures: Mutex::default(),
            failure_limit,
            dummy_hash: hash_key_bounded(&hex::encode(dummy_key))?,
        })
    }

    fn fingerprint(&self, client_id: &str, key: &str) -> Fingerprint {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.cache_secret)
            .expect("HMAC accepts keys of any length");
        // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
        mac.update(&(client_id.len() as u64).to_le_bytes());
        mac.update(client_id.as_bytes());
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The client whose id and key these are, or `None`. Errors: 429 after too many failures
    /// (for this id or this source), 503 when no verification slot frees up in time.
    pub async fn verify(
        &self,
        store: &Store,
        client_id: &str,
        key: &str,
        source: Option<IpAddr>,
    ) -> Result<(Option<ClientRecord>, Outcome)> {
        let fingerprint = self.fingerprint(client_id, key);
        if let Some(client) = self.cached(store, &fingerprint, client_id)? {
            return Ok((Some(client), Outcome::Cached));
        }
        let pair_key = failure_key(client_id, source);
        // Charged before argon2 runs and refunded on success, so that concurrent attempts
        // cannot all pass the check before the first failure is counted.
        self.charge_failure(&pair_key)?;
        let client = store.client(client_id)?;
        let hash = client
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |c| c.key_hash.clone());
        let _slot = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                Error::Unavailable(
                    "too many key verifications in progress; retry, or use a bearer token from /login"
                        .into(),
                )
            })?
            .map_err(|_| Error::Internal("the key verification slots were closed".into()))?;
        let key = key.to_string();
        let matched = tokio::task::spawn_blocking(move || verify_key_bounded(&key, &hash))
            .await
            .map_err(|e| Error::Internal(format!("key verification task: {e}")))?;
        match client {
            Some(client) if matched => {
                let now = Instant::now();
                let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                failures.refund(&pair_key, now);
                drop(failures);
                if !self.cache_ttl.is_zero() {
                    self.remember(fingerprint, &client.key_hash);
                }
                Ok((Some(client), Outcome::Verified))
            }
            _ => Ok((None, Outcome::Rejected)),
        }
    }

    fn cached(
        &self,
        store: &Store,
        fingerprint: &Fingerprint,
        client_id: &str,
    ) -> Result<Option<ClientRecord>> {
        if self.cache_ttl.is_zero() {
            return Ok(None);
        }
        let key_hash = {
            let now = Instant::now();
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get_mut(fingerprint) {
                Some(entry) if entry.expires > now => {
                    // Sliding: a key in use stays verified (the stored-hash check below still
                    // drops it the moment the registration changes).
                    entry.expires = now + self.cache_ttl;
                    entry.key_hash.clone()
                }
                _ => return Ok(None),
            }
        };
        match store.client(client_id)? {
            Some(client) if client.key_hash == key_hash => Ok(Some(client)),
            _ => {
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.remove(fingerprint);
                Ok(None)
            }
        }
    }

    fn remember(&self, fingerprint: Fingerprint, key_hash: &str) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            fingerprint,
            CachedKey {
                key_hash: key_hash.to_string(),
                expires: now + self.cache_ttl,
            },
        );
    }

    /// Refuses when the (id, source) pair is at its limit; otherwise counts one failure in
    /// advance (refunded when the key turns out right).
    fn charge_failure(&self, pair_key: &str) -> Result<()> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.count(pair_key, now) >= self.failure_limit {
            return Err(Error::RateLimited(format!(
                "too many failed logins for this client id from this address; wait up to {}s",
                FAILURE_WINDOW.as_secs()
            )));
        }
        failures.add(pair_key.to_string(), now);
        Ok(())
    }

    /// Forgets every cached key (after an unregistration; entries would fail the hash check
    /// anyway, this only returns their memory sooner).
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// argon2id hash of a new key, in a verification slot (registration is rare, but must not
    /// add to a burst unbounded).
    pub async fn hash(&self, key: &str) -> Result<String> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the key verification slots were closed".into()))?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || hash_key_bounded(&key))
            .await
            .map_err(|e| Error::Internal(format!("key hashing task: {e}")))?
    }
}

/// argon2 working memory of `blocks` KiB, reserved above the mmap threshold (see the module
/// documentation) and touched only as far as needed.
fn working_memory(blocks: usize) -> Vec<Block> {
    let mut memory = Vec::with_capacity((RESERVE_BYTES / Block::SIZE).max(blocks));
    memory.resize(blocks, Block::new());
    memory
}

/// argon2id (default parameters) PHC string of `key`, with a fresh random salt.
pub fn hash_key_bounded(key: &str) -> Result<String> {
    let params = Params::default();
    let salt_bytes = {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        salt
    };
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::Internal(format!("salt encoding: {e}")))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(
            key.as_bytes(),
            &salt_bytes,
            &mut out,
            working_memory(params.block_count()),
        )
        .map_err(|e| Error::Internal(format!("key hashing: {e}")))?;
    let output = Output::new(&out).map_err(|e| Error::Internal(format!("key hashing: {e}")))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| Error::Internal(format!("key hashing: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `key` against an argon2 PHC string (any argon2 variant and version, as the argon2
/// crate writes them); false for anything unparsable or out of bounds.
pub fn verify_key_bounded(key: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(expected), Some(salt)) =
        (Algorithm::try_from(hash.algorithm), hash.hash, hash.salt)
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
        None => Version::default(),
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        return false;
    }
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if argon2
        .hash_password_into_with_memory(
            key.as_bytes(),
            salt,
            &mut out,
            working_memory(params.block_count()),
        )
        .is_err()
    {
        return false;
    }
    // `Output` equality is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn bounded_hashes_verify_and_match_the_argon2_crate() {
        let hash = hash_key_bounded(KEY).expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_key_bounded(KEY, &hash));
        assert!(!verify_key_bounded(
            "0123456789abcdef0123456789abcdeX",
            &hash
        ));
        // Hashes made by the argon2 crate's own hasher (stores written before) still verify.
        let salt = SaltString::encode_b64(b"sixteen byte salt").expect("salt");
        let theirs = Argon2::default()
            .hash_password(KEY.as_bytes(), &salt)
            .expect("hash")
            .to_string();
        assert!(verify_key_bounded(KEY, &theirs));
        assert!(!verify_key_bounded("other", &theirs));
        for bad in [
            "",
            "not a hash",
            "$argon2id$v=19$m=999999999,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!verify_key_bounded(KEY, bad), "{bad}");
        }
    }

    #[test]
    fn failures_count_per_key_within_the_window() {
        let mut failures = Failures::default();
        let start = Instant::now();
        for _ in 0..3 {
            failures.add("id:a".into(), start);
        }
        assert_eq!(failures.count("id:a", start), 3);
        assert_eq!(failures.count("id:b", start), 0);
        assert_eq!(failures.count("id:a", start + FAILURE_WINDOW), 0);
        failures.add("id:a".into(), start + FAILURE_WINDOW);
        assert_eq!(failures.count("id:a", start + FAILURE_WINDOW), 1);
        failures.refund("id:a", start + FAILURE_WINDOW);
        assert_eq!(failures.count("id:a", start + FAILURE_WINDOW), 0);
    }

    #[test]
    fn failures_are_counted_per_client_id_and_source() {
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_ne!(failure_key("c", Some(a)), failure_key("c", Some(b)));
        assert_ne!(failure_key("c", Some(a)), failure_key("d", Some(a)));
        assert_eq!(failure_key("c", Some(a)), failure_key("c", Some(a)));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(source_key(mapped), "ip:10.1.2.3");
    }
}
