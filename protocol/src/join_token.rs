//! The claims of a join token: what a participant presents when it joins a call on the SFU.
//!
//! A join token is a standard JSON Web Token (RFC 7519) signed with HS256 and the SFU's token
//! secret, so any backend can mint one with an off-the-shelf JWT library. Its payload is exactly
//! [`JoinClaims`]; the SFU refuses a payload with other fields, an algorithm other than HS256, and a
//! token at or after its `exp`. See docs/protocol.md, "Join tokens".

use serde::{Deserialize, Serialize};

use crate::signalling::{BotPurpose, Role};

/// The signed content of a join token (the JWT payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinClaims {
    /// The call the holder may join.
    pub call_id: String,
    /// The display name shown to the other participants.
    pub name: String,
    pub role: Role,
    /// What a bot is there for; only bot tokens may carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<BotPurpose>,
    /// Expiry (JWT `exp`), unix seconds; the token is refused at and after this second.
    pub exp: u64,
    /// When the token was issued (JWT `iat`), unix seconds; informational, optional for tokens
    /// minted elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}
