//! A call for the job end-to-end tests (recorder, transcriber): an in-process SFU and the real
//! `calls-offloader` binary, both on the Docker bridge address (where job containers reach the host),
//! an API client registered with the offloader, join tokens for the call, and participants that join
//! over the bridge; and the transcribing job with live captions that the caption tests start.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use calls_participant::{JoinOptions, Participant, Role};
use calls_protocol::jobs::{CreateJobRequest, Job, JobType};
use calls_sfu::RunningSfu;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::Client;
use crate::docker;
use crate::offloader::{bin_dir, Offloader, OffloaderSettings, TestTls};

/// The SFU and the offloader of one test, and a client of the offloader.
pub struct CallStack {
    /// The SFU, listening on the bridge address.
    pub sfu: RunningSfu,
    /// The offloader (stopped when dropped).
    pub offloader: Offloader,
    /// A client registered with the offloader.
    pub client: Client,
    /// The Docker bridge gateway: the host as containers see it.
    pub bridge: IpAddr,
    /// With [`CallStack::start_tls`]: the CA both servers' certificate comes from.
    pub tls: Option<TestTls>,
    secret: &'static str,
    call: &'static str,
}

impl CallStack {
    /// Builds the job image `image` (`recorder`, `transcriber`) from this build's binaries, starts the SFU
    /// (join tokens signed with `secret`) and an offloader (`tag`, `settings`), and registers the client
    /// `client_name`. Participants join the call `call`.
    pub async fn start(
        image: &str,
        tag: &str,
        secret: &'static str,
        call: &'static str,
        settings: OffloaderSettings,
        client_name: &str,
    ) -> anyhow::Result<CallStack> {
        Self::start_with(image, tag, secret, call, settings, client_name, false).await
    }

    /// Like [`CallStack::start`], but TLS only: the SFU (`https://`, `wss://`) and the offloader
    /// serve a certificate of a local CA for the bridge address, which jobs trust only because the
    /// offloader hands them the CA (`jobs.ca_cert_file`), as `run-stack.sh` sets it up.
    pub async fn start_tls(
        image: &str,
        tag: &str,
        secret: &'static str,
        call: &'static str,
        settings: OffloaderSettings,
        client_name: &str,
    ) -> anyhow::Result<CallStack> {
        Self::start_with(image, tag, secret, call, settings, client_name, true).await
    }

    async fn start_with(
        image: &str,
        tag: &str,
        secret: &'static str,
        call: &'static str,
        mut settings: OffloaderSettings,
        client_name: &str,
        tls: bool,
    ) -> anyhow::Result<CallStack> {
        docker::ensure_image(&bin_dir()?, image)?;
        let bridge: IpAddr = docker::bridge_gateway()
            .parse()
            .context("the bridge gateway is an IP address")?;
        let tls = match tls {
            true => Some(TestTls::new(&[bridge.to_string()])?),
            false => None,
        };
        let mut config = calls_sfu::Config::for_local_test(secret);
        config.http_listen_address = SocketAddr::new(bridge, 0);
        config.ice.host_addresses = vec![bridge];
        config.http_tls = tls.as_ref().map(|tls| calls_sfu::config::TlsFiles {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
        });
        let sfu = calls_sfu::start(config).await.context("the SFU starts")?;
        settings.tls = tls.clone();
        let offloader = Offloader::start(tag, settings).await?;
        let client = offloader.register(client_name).await?;
        Ok(CallStack {
            sfu,
            offloader,
            client,
            bridge,
            tls,
            secret,
            call,
        })
    }

    /// A join token for `name` in the call, valid for ten minutes.
    pub fn token(&self, name: &str, role: Role) -> String {
        calls_sfu::token::mint(
            self.secret.as_bytes(),
            self.call,
            name,
            role,
            Duration::from_secs(600),
            SystemTime::now(),
        )
        .expect("a token mints from a valid secret")
    }

    /// `name` joins the call over the bridge address; returns once their media connection is up.
    pub async fn join(&self, name: &str) -> anyhow::Result<Participant> {
        let options = JoinOptions {
            call_id: Some(self.call.to_owned()),
            bind_ip: Some(self.bridge),
            ca_cert_pem: self.tls.as_ref().map(|tls| tls.ca_pem.clone()),
            ..JoinOptions::default()
        };
        let token = self.token(name, Role::Participant);
        let url = self.sfu.ws_url();
        Ok(Participant::join_connected(&url, &token, options, Duration::from_secs(10)).await?)
    }

    /// Starts a transcribing job on the call with live captions on `live_model` (tiny.en for the
    /// post-call transcript, English; the live windows' debug lines in its logs). Its bot is called
    /// "Transcriber".
    pub async fn live_captions_job(&self, live_model: &str) -> anyhow::Result<Job> {
        self.create_job(
            JobType::Transcribing,
            &[
                ("live_captions", json!(true)),
                ("live_model", json!(live_model)),
                ("model", json!("tiny.en")),
                ("language", json!("en")),
                (
                    "log_filter",
                    json!("info,calls_transcriber::live_job=debug"),
                ),
            ],
        )
        .await
    }

    /// Asks the offloader to record the call with `profile`.
    pub async fn recording_job(&self, profile: &str) -> anyhow::Result<Job> {
        self.create_job(JobType::Recording, &[("profile", json!(profile))])
            .await
    }

    /// A job of `job_type` for this call: its bot joins with a fresh bot token, plus `inputs`.
    pub async fn create_job(
        &self,
        job_type: JobType,
        inputs: &[(&str, Value)],
    ) -> anyhow::Result<Job> {
        let bot = match job_type {
            JobType::Recording => "Recorder",
            JobType::Transcribing => "Transcriber",
        };
        let input_data: BTreeMap<String, Value> = [
            ("call_id", json!(self.call)),
            ("sfu_url", json!(self.sfu.http_url())),
            ("bot_token", json!(self.token(bot, Role::Bot))),
        ]
        .into_iter()
        .chain(inputs.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        self.client
            .create_job(&CreateJobRequest {
                job_type,
                runner: None,
                max_duration_sec: None,
                input_data,
            })
            .await
    }
}

/// Waits until the job reports that it joined the call (a job's media or call clock starts then); returns
/// that instant. Fails with the job's logs if the job ends first or does not join within 90 s.
pub async fn wait_joined(client: &Client, job: &Job) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view = client.job(&job.id).await?;
        if view.progress.as_deref() == Some("joined the call") {
            return Ok(Instant::now());
        }
        if view.state.is_final() || Instant::now() >= deadline {
            let logs = client.logs(&job.id).await.unwrap_or_default();
            bail!("the job never reported joining: {view:?}\nits logs:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
