//! Join tokens: standard JSON Web Tokens (HS256) whose payload is `calls_protocol::join_token::
//! JoinClaims` (call id, display name, role, bot purpose, `exp`, `iat`), which a participant presents
//! when it joins a call. Any backend can mint them with an off-the-shelf JWT library and the SFU's
//! token secret (docs/protocol.md, "Join tokens").
//!
//! Verification (through the `jsonwebtoken` crate) accepts only HS256 — `none` and every other
//! algorithm are refused — checks the signature over the encoded header and payload exactly as sent
//! before it looks at the claims, then our own rules: no unknown claim, a purpose only on bot tokens,
//! and the expiry against the time the caller passes in (the crate's own clock check is off, so
//! tests and callers control time).
//!
//! `verify` does not know which call the socket is joining; callers that do must use
//! `verify_for_call`, which also rejects a token minted for another call.
//!
//! For `main.rs`: the `calls-sfu token` subcommand is `TokenArgs` (a `clap::Args`) and is run by
//! `token::token_command(&config, &args, SystemTime::now())`, which returns the token to print.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::config::Config;

/// Longest token we even try to decode; real tokens are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The signed content of a join token; the wire type lives in `calls_protocol`.
pub use calls_protocol::join_token::JoinClaims;
/// Why a bot is in the call (optional `purpose` claim of bot tokens).
pub use calls_protocol::signalling::BotPurpose;
/// Role of a token holder; the wire type lives in `calls_protocol` so events can carry it too.
pub use calls_protocol::signalling::Role;

/// Parses `recording` or `transcribing` (the `--purpose` argument).
pub fn parse_purpose(value: &str) -> Result<BotPurpose, String> {
    match value {
        "recording" => Ok(BotPurpose::Recording),
        "transcribing" => Ok(BotPurpose::Transcribing),
        other => Err(format!(
            "unknown purpose {other:?}: expected recording or transcribing"
        )),
    }
}

/// Parses `participant` or `bot` (the `--role` argument).
pub fn parse_role(value: &str) -> Result<Role, String> {
    match value {
        "participant" => Ok(Role::Participant),
        "bot" => Ok(Role::Bot),
        other => Err(format!(
            "unknown role {other:?}: expected participant or bot"
        )),
    }
}

/// Why a token was refused. Messages are safe to send back to the client: they never contain the
/// secret or the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token: {0}")]
    Malformed(&'static str),
    #[error("join token signature is invalid")]
    BadSignature,
    #[error("join token expired")]
    Expired,
    #[error("join token is for another call")]
    WrongCall,
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
}

/// Signs `claims` with `secret` as an HS256 JWT.
pub fn sign(secret: &[u8], claims: &JoinClaims) -> String {
    // Invariant: HS256 signing with a byte secret cannot fail, and `JoinClaims` holds only strings,
    // integers and enums, which always serialise.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of JoinClaims cannot fail")
}

/// What `jsonwebtoken` checks for us: the algorithm (HS256 only) and the signature. Expiry is ours
/// (time passed in), and so are the claims' own rules.
fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation
}

/// Checks the signature and expiry of `token` and returns its claims. It does not check the call
/// id: see `verify_for_call`.
pub fn verify(secret: &[u8], token: &str, now_unix: u64) -> Result<JoinClaims, TokenError> {
    use jsonwebtoken::errors::ErrorKind;
    if token.is_empty() {
        return Err(TokenError::Malformed("empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    let decoded =
        jsonwebtoken::decode::<JoinClaims>(token, &DecodingKey::from_secret(secret), &validation())
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Malformed("algorithm is not HS256")
                }
                ErrorKind::Json(_) => TokenError::Malformed("claims are not valid"),
                ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    TokenError::Malformed("not base64url JSON")
                }
                _ => TokenError::Malformed("not a JWT"),
            })?;
    let claims = decoded.claims;
    if claims.purpose.is_some() && claims.role != Role::Bot {
        return Err(TokenError::Malformed("only bot tokens carry a purpose"));
    }
    if now_unix >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// `verify`, then checks that the token was minted for `call_id`.
pub fn verify_for_call(
    secret: &[u8],
    token: &str,
    call_id: &str,
    now_unix: u64,
) -> Result<JoinClaims, TokenError> {
    let claims = verify(secret, token, now_unix)?;
    if claims.call_id != call_id {
        return Err(TokenError::WrongCall);
    }
    Ok(claims)
}

/// Unix seconds of `time`, 0 before the epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Builds and signs the claims for one participant, valid for `ttl` from `now`.
pub fn mint(
    secret: &[u8],
    call_id: &str,
    name: &str,
    role: Role,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, TokenError> {
    mint_with_purpose(secret, call_id, name, role, None, ttl, now)
}

/// [`mint`] for a bot that says what it is there for (`purpose` needs `role` bot).
pub fn mint_with_purpose(
    secret: &[u8],
    call_id: &str,
    name: &str,
    role: Role,
    purpose: Option<BotPurpose>,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, TokenError> {
    if purpose.is_some() && role != Role::Bot {
        return Err(TokenError::InvalidRequest(
            "only bots have a purpose (add --role bot)".into(),
        ));
    }
    if call_id.trim().is_empty() {
        return Err(TokenError::InvalidRequest("call id is empty".into()));
    }
    if name.trim().is_empty() {
        return Err(TokenError::InvalidRequest("name is empty".into()));
    }
    if ttl.is_zero() {
        return Err(TokenError::InvalidRequest("ttl must be positive".into()));
    }
    let claims = JoinClaims {
        call_id: call_id.to_owned(),
        name: name.to_owned(),
        role,
        purpose,
        exp: unix_seconds(now).saturating_add(ttl.as_secs().max(1)),
        iat: Some(unix_seconds(now)),
    };
    Ok(sign(secret, &claims))
}

/// Arguments of `calls-sfu token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Call the token lets its holder join.
    #[arg(long)]
    pub call: String,
    /// Display name shown to the other participants.
    #[arg(long)]
    pub name: String,
    /// Role of the holder.
    #[arg(long, value_parser = parse_role, default_value = "participant")]
    pub role: Role,
    /// For bots: what the bot does in the call (recording, transcribing). Everyone in the call
    /// is shown that the call is being recorded or transcribed while such a bot is present.
    #[arg(long, value_parser = parse_purpose)]
    pub purpose: Option<BotPurpose>,
    /// Print a join link to the demo page served at this base URL (e.g.
    /// `http://127.0.0.1:8045`) instead of the bare token.
    #[arg(long, value_name = "BASE_URL")]
    pub link: Option<String>,
    /// How long the token stays valid (humantime: 90s, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

/// Runs `calls-sfu token`: mints a token with the configured secret and returns it for printing
/// (or, with `--link`, the join link that carries it).
pub fn token_command(
    config: &Config,
    args: &TokenArgs,
    now: SystemTime,
) -> Result<String, TokenError> {
    let token = mint_with_purpose(
        config.token_secret.as_bytes(),
        &args.call,
        &args.name,
        args.role,
        args.purpose,
        args.ttl,
        now,
    )?;
    match &args.link {
        Some(base) => join_link(base, &token),
        None => Ok(token),
    }
}

/// The demo page's join link for `token`: `<base>/#token=<token>&join=1`. The token travels in
/// the fragment, which browsers never send to a server, so it stays out of access logs and
/// `Referer` headers. Tokens (JWTs) are base64url and '.', so they need no escaping.
pub fn join_link(base_url: &str, token: &str) -> Result<String, TokenError> {
    let base = base_url.trim().trim_end_matches('/');
    let valid = (base.starts_with("http://") || base.starts_with("https://"))
        && base.len() > "https://".len()
        && !base.contains(['#', '?', ' ']);
    if !valid {
        return Err(TokenError::InvalidRequest(format!(
            "--link needs an http(s) base URL without query or fragment, got {base_url:?}"
        )));
    }
    Ok(format!("{base}/#token={token}&join=1"))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    /// The three parts of a JWT as sent.
    fn parts(token: &str) -> [&str; 3] {
        let mut parts = token.split('.');
        let header = parts.next().expect("header");
        let payload = parts.next().expect("payload");
        let signature = parts.next().expect("signature");
        assert!(parts.next().is_none(), "a JWT has three parts");
        [header, payload, signature]
    }

    /// A JWT signed by hand (HMAC-SHA256 over `header.payload`), as any other library would.
    fn hand_signed(header_json: &str, payload_json: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(header_json);
        let payload = URL_SAFE_NO_PAD.encode(payload_json);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
        mac.update(format!("{header}.{payload}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{signature}")
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> JoinClaims {
        JoinClaims {
            call_id: "call-1".into(),
            name: "Alice".into(),
            role: Role::Participant,
            purpose: None,
            exp: 1_000,
            iat: None,
        }
    }

    #[test]
    fn signed_token_verifies_to_the_same_claims() {
        let token = sign(SECRET, &claims());
        assert_eq!(verify(SECRET, &token, 999), Ok(claims()));
        assert_eq!(verify_for_call(SECRET, &token, "call-1", 0), Ok(claims()));
    }

    #[test]
    fn expired_at_and_after_exp() {
        let token = sign(SECRET, &claims());
        assert_eq!(verify(SECRET, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(SECRET, &token, 5_000), Err(TokenError::Expired));
    }

    #[test]
    fn other_secret_is_a_bad_signature() {
        let token = sign(SECRET, &claims());
        let other = b"another-secret-another-secret-xx";
        assert_eq!(verify(other, &token, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_claims_are_a_bad_signature() {
        let token = sign(SECRET, &claims());
        let [header, _, signature] = parts(&token);
        let mut forged = claims();
        forged.role = Role::Bot;
        forged.exp = u64::MAX;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let forged_token = format!("{header}.{forged_payload}.{signature}");
        assert_eq!(
            verify(SECRET, &forged_token, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let token = sign(SECRET, &claims());
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let token = String::from_utf8(bytes).expect("ascii");
        assert!(matches!(
            verify(SECRET, &token, 0),
            Err(TokenError::BadSignature | TokenError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_call_is_refused() {
        let token = sign(SECRET, &claims());
        assert_eq!(
            verify_for_call(SECRET, &token, "call-2", 0),
            Err(TokenError::WrongCall)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in [
            "",
            "abc",
            "a.b.c",
            "!!!.???",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let result = verify(SECRET, garbage, 0);
            assert!(
                matches!(
                    result,
                    Err(TokenError::Malformed(_) | TokenError::BadSignature)
                ),
                "{garbage:?} gave {result:?}"
            );
        }
        assert_eq!(verify(SECRET, "", 0), Err(TokenError::Malformed("empty")));
    }

    #[test]
    fn validly_signed_non_claims_are_malformed() {
        let token = hand_signed(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"hello":1}"#);
        assert_eq!(
            verify(SECRET, &token, 0),
            Err(TokenError::Malformed("claims are not valid"))
        );
    }

    #[test]
    fn a_jwt_from_another_library_verifies() {
        // What a backend writes with any JWT library: header and claim order of its own, `iat` set.
        let token = hand_signed(
            r#"{"typ":"JWT","alg":"HS256"}"#,
            r#"{"exp":1000,"iat":400,"name":"Alice","role":"participant","call_id":"call-1"}"#,
        );
        let expected = JoinClaims {
            iat: Some(400),
            ..claims()
        };
        assert_eq!(verify(SECRET, &token, 999), Ok(expected));
    }

    #[test]
    fn only_hs256_is_accepted() {
        let payload = r#"{"call_id":"call-1","name":"Alice","role":"participant","exp":1000}"#;
        // `alg: none` with no signature, and the same claims correctly signed but labelled HS512 or
        // RS256 (algorithm confusion) are all refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        for token in [
            none,
            hand_signed(r#"{"alg":"HS512","typ":"JWT"}"#, payload),
            hand_signed(r#"{"alg":"RS256","typ":"JWT"}"#, payload),
        ] {
            assert!(verify(SECRET, &token, 0).is_err(), "{token} accepted");
        }
        assert!(verify(SECRET, &hand_signed(r#"{"alg":"HS256"}"#, payload), 0).is_ok());
    }

    #[test]
    fn unknown_claims_are_refused() {
        let payload =
            r#"{"call_id":"call-1","name":"Alice","role":"participant","exp":1000,"admin":true}"#;
        assert_eq!(
            verify(SECRET, &hand_signed(r#"{"alg":"HS256"}"#, payload), 0),
            Err(TokenError::Malformed("claims are not valid"))
        );
    }

    #[test]
    fn mint_sets_expiry_from_ttl() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let token = mint(
            SECRET,
            "c",
            "Bot",
            Role::Bot,
            Duration::from_secs(3600),
            now,
        )
        .expect("valid request");
        let claims = verify(SECRET, &token, 10_000).expect("fresh token");
        assert_eq!(claims.exp, 13_600);
        assert_eq!(claims.iat, Some(10_000));
        assert_eq!(claims.role, Role::Bot);
        assert_eq!(verify(SECRET, &token, 13_600), Err(TokenError::Expired));
    }

    #[test]
    fn bot_purpose_is_signed_and_only_bots_have_one() {
        let now = UNIX_EPOCH;
        let ttl = Duration::from_secs(60);
        let token = mint_with_purpose(
            SECRET,
            "c",
            "Recorder",
            Role::Bot,
            Some(BotPurpose::Recording),
            ttl,
            now,
        )
        .expect("a bot may have a purpose");
        let bot_claims = verify(SECRET, &token, 0).expect("valid");
        assert_eq!(bot_claims.purpose, Some(BotPurpose::Recording));
        assert!(matches!(
            mint_with_purpose(
                SECRET,
                "c",
                "Eve",
                Role::Participant,
                Some(BotPurpose::Recording),
                ttl,
                now
            ),
            Err(TokenError::InvalidRequest(_))
        ));
        // A correctly signed participant token claiming a purpose is refused too.
        let forged = JoinClaims {
            purpose: Some(BotPurpose::Transcribing),
            ..claims()
        };
        assert_eq!(
            verify(SECRET, &sign(SECRET, &forged), 0),
            Err(TokenError::Malformed("only bot tokens carry a purpose"))
        );
        // A token without a purpose has no `purpose` key at all, and verifies.
        let plain = sign(SECRET, &claims());
        assert!(
            !String::from_utf8(URL_SAFE_NO_PAD.decode(parts(&plain)[1]).expect("b64"))
                .expect("utf8")
                .contains("purpose")
        );
        assert_eq!(verify(SECRET, &plain, 0), Ok(claims()));
    }

    #[test]
    fn join_links_carry_the_token_in_the_fragment() {
        assert_eq!(
            join_link("http://127.0.0.1:8045/", "abc.def").as_deref(),
            Ok("http://127.0.0.1:8045/#token=abc.def&join=1")
        );
        assert_eq!(
            join_link("https://calls.example.com", "t.s").as_deref(),
            Ok("https://calls.example.com/#token=t.s&join=1")
        );
        for bad in [
            "",
            "127.0.0.1:8045",
            "ftp://x",
            "http://x/?a=1",
            "http://x/#y",
            "http://",
        ] {
            assert!(join_link(bad, "t.s").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mint_rejects_empty_fields() {
        let now = UNIX_EPOCH;
        let ttl = Duration::from_secs(60);
        assert!(mint(SECRET, " ", "n", Role::Bot, ttl, now).is_err());
        assert!(mint(SECRET, "c", "", Role::Bot, ttl, now).is_err());
        assert!(mint(SECRET, "c", "n", Role::Bot, Duration::ZERO, now).is_err());
    }

    #[test]
    fn token_args_parse_role_and_ttl() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            token: TokenArgs,
        }
        let cli = Cli::try_parse_from([
            "t", "--call", "X", "--name", "Y", "--role", "bot", "--ttl", "2h",
        ])
        .expect("valid arguments");
        assert_eq!(cli.token.role, Role::Bot);
        assert_eq!(cli.token.ttl, Duration::from_secs(7200));
        let cli = Cli::try_parse_from([
            "t",
            "--call",
            "X",
            "--name",
            "Y",
            "--role",
            "bot",
            "--purpose",
            "transcribing",
            "--link",
            "http://h:8045",
        ])
        .expect("valid arguments");
        assert_eq!(cli.token.purpose, Some(BotPurpose::Transcribing));
        assert_eq!(cli.token.link.as_deref(), Some("http://h:8045"));
        assert!(
            Cli::try_parse_from(["t", "--call", "X", "--name", "Y", "--purpose", "spying"])
                .is_err()
        );
        let cli = Cli::try_parse_from(["t", "--call", "X", "--name", "Y"]).expect("defaults");
        assert_eq!(cli.token.role, Role::Participant);
        assert_eq!(cli.token.ttl, Duration::from_secs(3600));
    }
}
