//! Wire types shared by every program of the stack: signalling messages between the SFU and its
//! participants, and the REST bodies of the offloader. Nothing here does I/O; each module is the
//! single definition of one protocol, so a change to the wire shows up in exactly one place.

pub mod job_env;
pub mod job_metrics;
pub mod jobs;
pub mod join_token;
pub mod signalling;
