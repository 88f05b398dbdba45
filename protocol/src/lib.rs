//! Wire types shared by every program of the stack: signalling messages between the SFU and its
//! participants, the REST bodies of the offloader and of the SFU's API, and the two value types every
//! program's settings share ([`secret::Secret`], [`duration`]) with the environment pairs they are read
//! from ([`env`]). Nothing here does I/O; each module is the
//! single definition of one protocol, so a change to the wire shows up in exactly one place.

pub mod duration;
pub mod env;
pub mod job_env;
pub mod job_metrics;
pub mod jobs;
pub mod join_token;
pub mod secret;
pub mod sfu_api;
pub mod signalling;
