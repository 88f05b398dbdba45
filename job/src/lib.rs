//! calls-job: the shell every job binary shares (the recorder, the transcriber, the offloader's test job).
//!
//! A job container gets its settings from the environment ([`settings`], names from
//! `calls_protocol::job_env`), talks to the offloader's job-side API with its own token ([`offloader`]:
//! status reports, counters, artifact uploads with retries), shows it is alive to the image's health check
//! ([`heartbeat`]), and decides when to stop ([`lifecycle`]: call end, `job_stop`, SIGTERM, alone timeout).
//! [`shell`] holds the few async steps around them (the signal future, reporting invalid settings and
//! `finished`). A job that sits in a call is a [`BotJob`]: [`driver`] joins the call, runs its loop
//! (roster, stop policy, timers, events), leaves and uploads. The jobs keep only their own media work.

pub mod driver;
pub mod error;
pub mod heartbeat;
pub mod lifecycle;
pub mod offloader;
pub mod secret;
pub mod settings;
pub mod shell;

pub use driver::{
    run_bot_job, AfterCall, BotJob, CallSettings, Finished, InCall, MediaChange, RosterChange,
    Uploaded,
};
pub use error::{Error, Result};
pub use heartbeat::{Heartbeat, HeartbeatPolicy};
pub use lifecycle::{Lifecycle, Roster, StopReason};
pub use offloader::{OffloaderClient, RetryPolicy};
pub use secret::Secret;
pub use settings::{CallTarget, JobIdentity, Settings};
