//! [`Secret`]: a value that must never reach logs or responses. The one definition is
//! `calls_protocol::secret::Secret`, shared by every program; jobs name it through this crate.

pub use calls_protocol::secret::Secret;
