//! Property tests over every parser of the SFU that takes network input: signalling messages
//! (client and server), join tokens, track ids, SDP and candidate rewriting, and the ICE mux's
//! STUN classification. Properties: no input makes a parser panic, and none accepts an invalid
//! input: a token verifies only if it is exactly what was signed, with consistent claims, before
//! its expiry; a message parses only if it re-serialises to itself; rewriting leaves every line
//! that is not a host candidate untouched. Issue 21 adds the remote-candidate policy (an admitted
//! candidate never names a refused address; SDP filtering drops only candidate lines), the
//! Origin parser (normalised origins are fixed points) and the SDP guard (an accepted offer is
//! within its section and byte limits).
//!
//! `cargo test` runs a bounded smoke run (`SMOKE_CASES` per property). The long run is
//! `SFU_PROPTEST_CASES=125000 cargo test --release -p calls-sfu --test parsers_proptest`: 13
//! properties × 125,000 = 1.6 million generated cases (docs/sfu-config.md).

use calls_protocol::signalling::{ClientMessage, ServerMessage, TrackId};
use calls_sfu::candidates::{first_mid, rewrite_candidate, rewrite_sdp, Advertise};
use calls_sfu::remote_candidates::{address_allowed, CandidatePolicy, RemoteCandidates};
use calls_sfu::sdp_guard::{media_sections, SdpGuard, MAX_SDP_BYTES_PER_SECTION};
use calls_sfu::token::{self, BotPurpose, JoinClaims, Role};
use calls_sfu::web_security::origin_of;
use proptest::prelude::*;

const SMOKE_CASES: u32 = 256;
/// Words candidates are made of, so that generated ones often look real.
const WORDS: [&str; 26] = [
    "candidate:1",
    "1",
    "2",
    "udp",
    "UDP",
    "tcp",
    "2130706431",
    "10.0.0.5",
    "::1",
    "5000",
    "typ",
    "host",
    "srflx",
    "tcptype",
    "passive",
    "active",
    "",
    "x",
    "127.0.0.1",
    "169.254.169.254",
    "fe80::1",
    "abc.local",
    "0",
    "224.0.0.1",
    "203.0.113.9",
    "[2001:db8::1]",
];
const SECRET: &[u8] = b"property-test-secret-0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("SFU_PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(SMOKE_CASES);
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Participant), Just(Role::Bot)]
}

fn purpose() -> impl Strategy<Value = Option<BotPurpose>> {
    prop_oneof![
        Just(None),
        Just(Some(BotPurpose::Recording)),
        Just(Some(BotPurpose::Transcribing)),
    ]
}

fn claims() -> impl Strategy<Value = JoinClaims> {
    (
        any::<String>(),
        any::<String>(),
        role(),
        purpose(),
        NOW - 10..NOW + 10,
        proptest::option::of(0..NOW),
    )
        .prop_map(|(call_id, name, role, purpose, exp, iat)| JoinClaims {
            call_id,
            name,
            role,
            purpose,
            exp,
            iat,
        })
}

/// A valid client message of every kind, with arbitrary field contents.
fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            any::<u32>(),
            any::<String>(),
            proptest::option::of(any::<String>())
        )
            .prop_map(|(version, token, call_id)| ClientMessage::Join {
                version,
                token,
                call_id
            }),
        any::<String>().prop_map(|sdp| ClientMessage::Offer { sdp }),
        any::<String>().prop_map(|sdp| ClientMessage::Answer { sdp }),
        Just(ClientMessage::Mute),
        Just(ClientMessage::ScreenOff),
        Just(ClientMessage::Leave),
    ]
}

/// `valid` with one of: a byte flipped, a byte removed, a byte inserted, or cut short.
fn mutate(valid: &str, choice: u8, position: usize, byte: u8) -> Vec<u8> {
    let mut bytes = valid.as_bytes().to_vec();
    if bytes.is_empty() {
        return vec![byte];
    }
    let at = position % bytes.len();
    match choice % 4 {
        0 => bytes[at] ^= byte.max(1),
        1 => {
            bytes.remove(at);
        }
        2 => bytes.insert(at, byte),
        _ => bytes.truncate(at),
    }
    bytes
}

proptest! {
    #![proptest_config(config())]

    /// Any text: no panic; whatever parses is a message that serialises back to itself.
    #[test]
    fn client_messages_from_any_text(text in any::<String>()) {
        if let Ok(message) = ClientMessage::from_json(&text) {
            prop_assert_eq!(ClientMessage::from_json(&message.to_json()).ok(), Some(message));
        }
    }

    /// Valid messages with one byte changed: no panic, and a parse result is always a
    /// well-formed message (never a half-read one).
    #[test]
    fn client_messages_near_valid_ones(
        message in client_message(),
        choice in any::<u8>(),
        position in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let json = message.to_json();
        prop_assert_eq!(ClientMessage::from_json(&json).ok(), Some(message));
        let mutated = mutate(&json, choice, position, byte);
        if let Ok(text) = std::str::from_utf8(&mutated) {
            if let Ok(parsed) = ClientMessage::from_json(text) {
                prop_assert_eq!(ClientMessage::from_json(&parsed.to_json()).ok(), Some(parsed));
            }
        }
    }

    /// Server messages (what every client parses) from any text: no panic, round trip.
    #[test]
    fn server_messages_from_any_text(text in any::<String>()) {
        if let Ok(message) = ServerMessage::from_json(&text) {
            prop_assert_eq!(ServerMessage::from_json(&message.to_json()).ok(), Some(message));
        }
    }

    /// Any string as a token: refused (nothing but a signed token verifies).
    #[test]
    fn arbitrary_tokens_are_refused(text in any::<String>()) {
        prop_assert!(token::verify(SECRET, &text, NOW).is_err());
    }

    /// A signed token with one byte changed verifies only if it is unchanged.
    #[test]
    fn tampered_tokens_are_refused(
        claims in claims(),
        choice in any::<u8>(),
        position in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let signed = token::sign(SECRET, &claims);
        let mutated = mutate(&signed, choice, position, byte);
        if let Ok(text) = String::from_utf8(mutated) {
            if text != signed {
                prop_assert!(token::verify(SECRET, &text, NOW).is_err(), "{} accepted", text);
            }
        }
    }

    /// Correctly signed claims verify exactly when they are consistent and not yet expired.
    #[test]
    fn signed_claims_verify_only_when_valid(claims in claims()) {
        let signed = token::sign(SECRET, &claims);
        let valid = claims.exp > NOW
            && (claims.purpose.is_none() || claims.role == Role::Bot)
            && signed.len() <= token::MAX_TOKEN_LEN;
        let verified = token::verify(SECRET, &signed, NOW);
        prop_assert_eq!(verified.is_ok(), valid, "{:?}", verified);
        if let Ok(verified) = verified {
            prop_assert_eq!(verified, claims);
        }
    }

    /// Track ids: no panic; what parses formats back to the same text.
    #[test]
    fn track_ids_parse_only_their_own_format(text in any::<String>()) {
        if let Some(id) = TrackId::parse(&text) {
            prop_assert_eq!(id.to_string(), text);
        }
    }

    /// SDP rewriting: no panic; every line that is not a candidate is kept byte for byte, and
    /// the number of lines never changes.
    #[test]
    fn sdp_rewriting_touches_only_candidate_lines(lines in proptest::collection::vec(any::<String>(), 0..12)) {
        let sdp: String = lines
            .iter()
            .map(|line| format!("{}\r\n", line.replace(['\r', '\n'], "")))
            .collect();
        let advertise = Advertise {
            udp_port: 8443,
            tcp_port: Some(8443),
            host_override: Some("203.0.113.7".to_owned()),
        };
        let rewritten = rewrite_sdp(&sdp, &advertise);
        let before: Vec<&str> = sdp.split("\r\n").collect();
        let after: Vec<&str> = rewritten.split("\r\n").collect();
        prop_assert_eq!(before.len(), after.len());
        for (old, new) in before.iter().zip(&after) {
            if !old.starts_with("a=candidate:") {
                prop_assert_eq!(old, new);
            }
        }
        if let Some(mid) = first_mid(&sdp) {
            let needle = format!("a=mid:{mid}");
            prop_assert!(sdp.contains(&needle));
        }
    }

    /// Candidates: no panic; only host candidates change, and only their address and port.
    #[test]
    fn candidate_rewriting_changes_only_address_and_port(
        fields in proptest::collection::vec(proptest::sample::select(WORDS.to_vec()), 0..12),
    ) {
        let candidate = fields.join(" ");
        let advertise = Advertise { udp_port: 1, tcp_port: None, host_override: None };
        let rewritten = rewrite_candidate(&candidate, &advertise);
        let old: Vec<&str> = candidate.split(' ').collect();
        let new: Vec<&str> = rewritten.split(' ').collect();
        prop_assert_eq!(old.len(), new.len());
        for (index, (a, b)) in old.iter().zip(&new).enumerate() {
            if index != 5 {
                prop_assert_eq!(a, b);
            }
        }
    }

    /// STUN classification of any datagram: no panic; a ufrag is only found in a binding
    /// request (magic cookie present) and is a prefix of the bytes it came from.
    #[test]
    fn stun_datagrams_of_any_shape(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(ufrag) = calls_sfu::stun::local_ufrag(&packet) {
            prop_assert!(packet.len() >= 20);
            prop_assert_eq!(&packet[4..8], &[0x21, 0x12, 0xA4, 0x42]);
            let found = packet.windows(ufrag.len().max(1)).any(|w| w == ufrag.as_bytes()) || ufrag.is_empty();
            prop_assert!(found);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Remote candidates (issue 21, finding 8): no panic; a candidate that names an IP literal
    /// is admitted only if that address is allowed; SDP filtering keeps every other line.
    #[test]
    fn remote_candidates_never_admit_a_refused_address(
        fields in proptest::collection::vec(proptest::sample::select(WORDS.to_vec()), 0..12),
        lines in proptest::collection::vec(any::<String>(), 0..8),
    ) {
        let strict = CandidatePolicy { allow_loopback: false, allow_link_local: false };
        let mut session = RemoteCandidates::new(strict, 4);
        let candidate = fields.join(" ");
        let admitted = session.admit(&candidate).is_ok();
        let parts: Vec<&str> = candidate.split_ascii_whitespace().collect();
        let well_formed = parts.len() >= 8 && parts[0].starts_with("candidate:") && parts[6] == "typ"
            && parts[5].parse::<u16>().is_ok();
        let active = parts.windows(2).any(|pair| pair == ["tcptype", "active"]);
        if admitted && well_formed && !active {
            let address = parts[4].trim_start_matches('[').trim_end_matches(']');
            let ip = address.parse::<std::net::IpAddr>();
            prop_assert!(ip.is_ok(), "admitted a non-IP address {}", address);
            prop_assert!(address_allowed(ip.unwrap(), strict));
        }
        let sdp: String = lines
            .iter()
            .map(|line| format!("{}\r\n", line.replace(['\r', '\n'], "")))
            .chain(std::iter::once(format!("a={candidate}\r\n")))
            .collect();
        let (filtered, _) = session.filter_sdp(&sdp);
        let kept: Vec<&str> = sdp.split("\r\n").filter(|l| !l.starts_with("a=candidate:")).collect();
        let left: Vec<&str> = filtered.split("\r\n").filter(|l| !l.starts_with("a=candidate:")).collect();
        prop_assert_eq!(kept, left);
    }

    /// Origins (issue 21, finding 12): no panic; a normalised origin is http(s), has no path or
    /// user info, and normalises to itself.
    #[test]
    fn origins_of_any_text(text in any::<String>(), host in "[a-zA-Z0-9.-]{0,12}", port in any::<u16>()) {
        for input in [text.clone(), format!("https://{host}:{port}/{text}"), format!("http://{host}")] {
            if let Some(origin) = origin_of(&input) {
                prop_assert!(origin.starts_with("http://") || origin.starts_with("https://"));
                let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or_default();
                prop_assert!(!authority.contains(['/', '@', '?', '#']));
                prop_assert_eq!(origin_of(&origin), Some(origin.clone()));
            }
        }
    }

    /// The SDP guard (issue 21, finding 1): no panic on any text; an accepted offer holds at most
    /// the allowed sections and 16 KiB per section.
    #[test]
    fn sdp_guard_accepts_only_offers_within_limits(
        lines in proptest::collection::vec(prop_oneof![any::<String>(), Just("m=audio 9 UDP/TLS/RTP/SAVPF 111".to_owned())], 0..40),
    ) {
        let sdp: String = lines.iter().map(|line| format!("{}\r\n", line.replace(['\r', '\n'], ""))).collect();
        let mut guard = SdpGuard::new(60_000, 1000, 2, std::time::Instant::now());
        if guard.check_offer(&sdp, std::time::Instant::now()).is_ok() {
            let sections = media_sections(&sdp);
            prop_assert!(sections <= 2 + calls_sfu::sdp_guard::SPARE_NEW_SECTIONS);
            prop_assert!(sdp.len() <= MAX_SDP_BYTES_PER_SECTION * sections.max(1));
        }
    }
}

#[test]
fn the_smoke_run_is_bounded() {
    // `cargo test` must stay fast: the default case count is the smoke size.
    if std::env::var_os("SFU_PROPTEST_CASES").is_none() {
        assert_eq!(config().cases, SMOKE_CASES);
    }
}
