//! The SRTP master key and salt a connection's DTLS handshake produced, as seen by the crypto
//! provider the connection is built with.
//!
//! webrtc 0.21 keeps the DTLS connection state (and so RFC 5764's `EXTRACTOR-dtls_srtp` exporter)
//! inside its driver, and exposes no accessor. It does let a connection be built with a crypto
//! provider of the application's choice (`SettingEngineBuilder::with_crypto_provider`), and the
//! SRTP contexts it creates when the handshake completes derive their session keys through that
//! provider: RFC 3711's key derivation encrypts `master_salt XOR (label || index)` with the master
//! key, one AES block at a time, and the first block a context derives (label 0, the SRTP
//! encryption key, block counter 0) is the master salt itself, zero-padded to 16 bytes. [`KeySpy`]
//! wraps the default provider, delegates every operation to it, and remembers, for each AES key
//! that a `block_encrypt` call uses for the first time with a zero block counter, the key and that
//! block: the master key and salt of one SRTP context. The handshake creates two contexts, the
//! local one (what the SFU encrypts with) first, then the remote one; the cipher the context then
//! asks for (AES-CTR or AES-GCM) tells its protection profile. No other part of webrtc uses
//! single-block AES (DTLS uses AEAD and CBC objects, ICE HMAC), which the unit test below and the
//! media tests (clients that decrypt what the fast path sends) check against the real code.
//!
//! The SFU offers only the profiles it can tell apart this way: AES-128-GCM, AES-256-GCM and
//! AES_CM_128_HMAC_SHA1_80 (not the `_32` variant, which derives the same calls as `_80`); every
//! browser and aiortc support one of them.

use std::fmt;
use std::sync::{Arc, Mutex};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::srtp::protection_profile::ProtectionProfile;

/// The DTLS-SRTP profiles the SFU offers: those whose keys [`KeySpy`] can tell apart, in
/// webrtc's order of preference.
pub const OFFERED_PROFILES: [SrtpProtectionProfile; 3] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
];

/// Master keys remembered per connection: a handshake creates two contexts; a second handshake
/// (a new DTLS session on the same connection) two more. More than this is no handshake of ours.
const MAX_KEYS: usize = 8;

/// One SRTP context's master key material, as its key derivation used it.
#[derive(Clone)]
pub struct MasterKey {
    /// The negotiated protection profile.
    pub profile: ProtectionProfile,
    /// Master key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// Master salt (14 bytes for AES-CM, 12 for AES-GCM).
    pub salt: Vec<u8>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log: the profile only.
        write!(f, "MasterKey({:?}, ..)", self.profile)
    }
}

/// A key seen by `block_encrypt`, waiting for its cipher to tell the profile.
struct Seen {
    key: Vec<u8>,
    /// The first derivation block: the salt, zero-padded.
    block: [u8; 16],
    profile: Option<ProtectionProfile>,
}

/// A crypto provider that is the default one, and remembers the SRTP master keys derived
/// through it (see the module documentation).
pub struct KeySpy {
    inner: Arc<dyn RTCCryptoProvider>,
    seen: Mutex<Vec<Seen>>,
}

impl KeySpy {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RTCCryptoProvider>) -> Self {
        Self {
            inner,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The provider this one wraps (for contexts the SFU builds itself, which need no watching).
    pub fn inner_crypto(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }

    /// The local (sending) context's key material of the latest handshake, once both of its
    /// contexts exist and their profile is known.
    pub fn local_key(&self) -> Option<MasterKey> {
        let seen = self.seen.lock().expect("key lock is never poisoned");
        // Contexts come in pairs, local first: the latest pair's first.
        let pairs = seen.len() / 2;
        let local = seen.get(pairs.checked_sub(1)? * 2)?;
        let profile = local.profile?;
        let salt_len = profile.salt_len();
        Some(MasterKey {
            profile,
            key: local.key.clone(),
            salt: local.block[..salt_len].to_vec(),
        })
    }

    fn note_block(&self, algorithm: BlockCipherAlgorithm, key: &[u8], block: &[u8]) {
        let expected = match algorithm {
            BlockCipherAlgorithm::Aes128 => 16,
            BlockCipherAlgorithm::Aes256 => 32,
            _ => return,
        };
        // Counter 0 (the block's last two bytes) of a key not seen before: the first block of a
        // context's derivation.
        if key.len() != expected || block.len() != 16 || block[14..] != [0, 0] {
            return;
        }
        let mut seen = self.seen.lock().expect("key lock is never poisoned");
        if seen.iter().any(|s| s.key == key) || seen.len() >= MAX_KEYS {
            return;
        }
        let mut first = [0u8; 16];
        first.copy_from_slice(block);
        seen.push(Seen {
            key: key.to_vec(),
            block: first,
            profile: None,
        });
    }

    /// The context whose key was seen last asks for its session cipher: that tells its profile.
    fn note_cipher(&self, profile: Option<ProtectionProfile>) {
        let mut seen = self.seen.lock().expect("key lock is never poisoned");
        if let Some(last) = seen.last_mut() {
            if last.profile.is_none() {
                last.profile = profile.filter(|p| p.key_len() == last.key.len());
            }
        }
    }
}

impl RTCCryptoProvider for KeySpy {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

/// An [`RTCCrypto`] method that only passes its arguments to the wrapped provider.
macro_rules! delegate {
    ($name:ident($($arg:ident: $type:ty),* $(,)?) -> $out:ty) => {
        fn $name(&self, $($arg: $type),*) -> Result<$out, CryptoError> {
            self.inner.crypto().$name($($arg),*)
        }
    };
}

impl RTCCrypto for KeySpy {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    delegate!(hash(algorithm: HashAlgorithm, data: &[u8]) -> Vec<u8>);

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.note_block(algorithm, key, block);
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    delegate!(new_hmac(algorithm: HmacAlgorithm, key: &[u8]) -> Box<dyn Mac>);

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.note_cipher(match algorithm {
            StreamCipherAlgorithm::Aes128Ctr => Some(ProtectionProfile::Aes128CmHmacSha1_80),
            _ => None,
        });
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.note_cipher(match algorithm {
            AeadAlgorithm::Aes128Gcm => Some(ProtectionProfile::AeadAes128Gcm),
            AeadAlgorithm::Aes256Gcm => Some(ProtectionProfile::AeadAes256Gcm),
            _ => None,
        });
        self.inner.crypto().new_aead(algorithm, key)
    }

    delegate!(new_cbc(algorithm: CbcAlgorithm, key: &[u8]) -> Box<dyn CbcCipher>);
    delegate!(start_key_exchange(algorithm: KeyExchangeAlgorithm) -> Box<dyn ActiveKeyExchange>);
    delegate!(generate_signing_key(scheme: SignatureScheme) -> Arc<dyn SigningKey>);
    delegate!(import_signing_key(scheme: SignatureScheme, pkcs8_der: &[u8]) -> Arc<dyn SigningKey>);
    delegate!(verify_signature(
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8]
    ) -> ());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;

    fn spy() -> KeySpy {
        KeySpy::new(rtc::crypto::default_provider().expect("a built-in provider is compiled in"))
    }

    /// What webrtc's DTLS handler does at the end of a handshake: the local context, then the
    /// remote one, through the connection's provider.
    fn handshake(spy: &KeySpy, profile: ProtectionProfile, local: &[u8], remote: &[u8]) {
        let salt = |seed: u8| {
            (0..profile.salt_len() as u8)
                .map(|i| seed ^ i)
                .collect::<Vec<_>>()
        };
        Context::new(local, &salt(0x5a), profile, None, None, spy).expect("local context");
        Context::new(remote, &salt(0xa5), profile, None, None, spy).expect("remote context");
    }

    #[test]
    fn the_local_context_key_salt_and_profile_are_recovered() {
        for profile in [
            ProtectionProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::AeadAes256Gcm,
        ] {
            let spy = spy();
            assert!(spy.local_key().is_none(), "nothing before a handshake");
            let local = vec![7u8; profile.key_len()];
            let remote = vec![9u8; profile.key_len()];
            handshake(&spy, profile, &local, &remote);
            let got = spy.local_key().expect("both contexts were created");
            let salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| 0x5a ^ i).collect();
            assert_eq!(got.profile as u8, profile as u8);
            assert_eq!((got.key, got.salt), (local, salt), "{profile:?}");
        }
    }

    #[test]
    fn a_context_built_from_the_recovered_key_encrypts_as_the_original() {
        let spy = spy();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let salt: Vec<u8> = (0..12u8).collect();
        let crypto = rtc::crypto::default_provider().expect("provider");
        let mut original =
            Context::new(&[3u8; 16], &salt, profile, None, None, &spy).expect("local context");
        Context::new(&[4u8; 16], &salt, profile, None, None, &spy).expect("remote context");
        let key = spy.local_key().expect("recovered");
        let mut ours = Context::new(
            &key.key,
            &key.salt,
            key.profile,
            None,
            None,
            crypto.crypto(),
        )
        .expect("rebuilt context");
        let packet = [
            0x80, 0x6f, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5,
        ];
        assert_eq!(
            original.encrypt_rtp(&packet).expect("encrypt"),
            ours.encrypt_rtp(&packet).expect("encrypt")
        );
    }

    #[test]
    fn a_second_handshake_replaces_the_keys() {
        let spy = spy();
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        handshake(&spy, profile, &[1; 16], &[2; 16]);
        handshake(&spy, profile, &[3; 16], &[4; 16]);
        assert_eq!(spy.local_key().expect("keys").key, vec![3; 16]);
    }
}
