//! Helpers for the end-to-end tests: start the real stack (SFU, offloader, containers) and make test speech.
//! The offloader side: [`offloader`] runs the real `calls-offloader` binary as a child process,
//! [`client`] wraps its REST API, [`docker`] inspects and cleans containers through the `docker`
//! CLI (the operator's view), [`test_job`] is the program of the `calls-test-job` image,
//! [`swarm`] gives the tests a single-node swarm and sees a job's container or service alike,
//! [`artifact`] makes the deterministic content it uploads, [`webhook_sink`] receives webhooks,
//! and [`bench`] measures job start latency. [`call`] starts an SFU and an offloader for the job tests
//! and lets participants join. [`mattermost`] makes requests exactly as Mattermost's own offloader client does and judges the answers as it does. For recordings and transcripts: [`speech`] makes test sentences and
//! finds them again in decoded audio, [`mp4`] reads a file with ffprobe and ffmpeg (and measures how close its
//! pictures are to what was sent), [`cpu`] measures where a job container spends its CPU.

pub mod artifact;
pub mod bench;
pub mod call;
pub mod client;
pub mod cpu;
pub mod docker;
pub mod mattermost;
pub mod mp4;
pub mod offloader;
pub mod speech;
pub mod swarm;
pub mod test_job;
pub mod webhook_sink;
