//! The `calls-participant` program: a connectivity check and test client for operators. It joins a
//! call, optionally sends a WAV file as voice and the moving test pattern as a screen share, and
//! with `--record-dir` writes one WAV per remote voice (named after the speaker), counts decoded
//! screen frames per sharer and writes `summary.json`.
//!
//! It lives in the library (not in the binary) so that tests can run it in-process; like a binary
//! it reports errors with `anyhow`. Each received track gets its own task that decodes as packets
//! arrive and streams voice straight into its WAV file, so memory stays flat on long calls.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audio::{read_wav, SAMPLE_RATE};
use crate::video::pattern_matches;
use crate::{
    receive_track, Event, JoinOptions, Participant, ReceiveOptions, RemoteTrack, TrackKind,
};

/// Size of the test pattern shared with `--send-screen`.
const SCREEN_SIZE: (u32, u32, u32) = (640, 360, 15);

/// Command line of `calls-participant`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "calls-participant",
    version,
    about = "Join a call on calls-sfu: send a voice or a screen, record what arrives"
)]
pub struct Args {
    /// SFU address: http(s)://host:8045 or the ws(s)://host:8045/ws signalling URL.
    #[arg(long)]
    pub sfu: String,
    /// Call to join (must match the token's call).
    #[arg(long)]
    pub call: String,
    /// Join token (`calls-sfu token --call ID --name NAME`).
    #[arg(long, env = "CALLS_PARTICIPANT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Display name, used in the summary (the SFU shows the token's name).
    #[arg(long)]
    pub name: String,
    /// WAV file (16-bit, 48 kHz) to send as this participant's voice.
    #[arg(long)]
    pub send_audio: Option<PathBuf>,
    /// Share the moving test pattern as a VP8 screen share.
    #[arg(long)]
    pub send_screen: bool,
    /// Directory for one WAV per remote voice, screen frame counts and summary.json.
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// How long to stay in the call (e.g. 10s, 2m); until Ctrl-C when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// PEM file of a CA to trust for an https:// SFU besides the public roots (the stack's
    /// local CA, e.g. `certs/ca.pem` of run-stack.sh).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Connect media only through the SFU's TURN servers (as a browser with relay=1).
    #[arg(long)]
    pub relay_only: bool,
    /// How long joining and connecting media may take.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// What one received track delivered.
#[derive(Debug, Clone)]
pub struct TrackReport {
    pub track_id: String,
    pub kind: TrackKind,
    pub owner_session: String,
    pub owner_name: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// Voice: decoded samples (48 kHz). Screen: 0.
    pub samples: u64,
    /// Screen: decoded frames, and how many of them show the test pattern.
    pub frames: u64,
    pub pattern_frames: u64,
    /// Voice with `--record-dir`: the WAV written.
    pub wav: Option<PathBuf>,
}

/// One caption message as it arrived: enough to follow an utterance's partials to its final (`id`) and to
/// measure caption latency from outside (`received_ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionReport {
    /// The speaker's display name, or their session id when the bot did not know the name.
    pub speaker: String,
    /// The utterance's caption id (its partials and final share it), when the bot sent one.
    pub id: Option<String>,
    /// The stable text (a final's whole text).
    pub text: String,
    /// A partial's tentative words after `text`.
    pub tail: String,
    /// Whether this is the utterance's final caption.
    pub is_final: bool,
    /// When it arrived, in milliseconds since this participant joined.
    pub received_ms: u64,
    /// The speech it covers, milliseconds since the bot joined (the bot's clock).
    pub start_ms: u64,
    /// See `start_ms`.
    pub end_ms: u64,
}

/// Everything the run saw; also written as summary.json.
#[derive(Debug, Clone)]
pub struct Summary {
    pub call_id: String,
    pub session_id: String,
    pub name: String,
    pub seconds: f64,
    /// Session id → display name of everyone seen in the call (other than this participant).
    pub participants_seen: BTreeMap<String, String>,
    pub tracks: Vec<TrackReport>,
    /// Every caption message, in the order received.
    pub captions: Vec<CaptionReport>,
    /// Errors the SFU reported.
    pub errors: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let tracks: Vec<Value> = self
            .tracks
            .iter()
            .map(|track| {
                json!({
                    "track_id": track.track_id,
                    "kind": match track.kind { TrackKind::Voice => "voice", TrackKind::Screen => "screen" },
                    "owner_session": track.owner_session,
                    "owner_name": track.owner_name,
                    "packets": track.packets,
                    "bytes": track.bytes,
                    "decoded_samples": track.samples,
                    "decoded_frames": track.frames,
                    "pattern_frames": track.pattern_frames,
                    "wav": track.wav.as_ref().and_then(|path| path.file_name()).map(|name| name.to_string_lossy()),
                })
            })
            .collect();
        let mut screen_frames = BTreeMap::new();
        for track in self.tracks.iter().filter(|t| t.kind == TrackKind::Screen) {
            let sharer = track
                .owner_name
                .clone()
                .unwrap_or(track.owner_session.clone());
            *screen_frames.entry(sharer).or_insert(0u64) += track.frames;
        }
        json!({
            "call_id": self.call_id,
            "session_id": self.session_id,
            "name": self.name,
            "seconds": self.seconds,
            "participants_seen": self.participants_seen.iter()
                .map(|(session, name)| json!({"session_id": session, "name": name}))
                .collect::<Vec<_>>(),
            "tracks_received": tracks,
            "packets_received": self.tracks.iter().map(|t| t.packets).sum::<u64>(),
            "screen_frames_decoded": screen_frames,
            "captions_received": self.captions.iter()
                .map(|c| json!({
                    "speaker": c.speaker,
                    "id": c.id,
                    "text": c.text,
                    "tail": c.tail,
                    "final": c.is_final,
                    "received_ms": c.received_ms,
                    "start_ms": c.start_ms,
                    "end_ms": c.end_ms,
                }))
                .collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }
}

/// A file name made of the speaker's name: letters, digits, `-` and `_` kept, the rest `_`.
pub fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if stem.trim_matches('_').is_empty() {
        "speaker".to_owned()
    } else {
        stem
    }
}

/// Picks `<stem>.wav`, or `<stem>-<session>-<n>.wav` when that name is taken in this run.
fn unique_wav(dir: &Path, taken: &mut HashSet<PathBuf>, stem: &str, session: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}.wav"));
    let mut n = 1;
    while taken.contains(&path) {
        path = dir.join(format!("{stem}-{}-{n}.wav", file_stem(session)));
        n += 1;
    }
    taken.insert(path.clone());
    path
}

fn wav_writer(path: &Path) -> anyhow::Result<hound::WavWriter<std::io::BufWriter<std::fs::File>>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Streams decoded voice into a WAV file and counts screen frames that show the test pattern.
struct CliSink {
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    pattern_frames: u64,
}

impl crate::TrackSink for CliSink {
    type Error = anyhow::Error;

    fn voice(&mut self, pcm: Vec<i16>, _arrival: tokio::time::Instant) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            for sample in pcm {
                writer.write_sample(sample).context("cannot write wav")?;
            }
        }
        Ok(())
    }

    fn frame(
        &mut self,
        frame: crate::VideoFrame,
        _rtp_timestamp: u32,
        _arrival: tokio::time::Instant,
    ) -> anyhow::Result<()> {
        if pattern_matches(&frame) {
            self.pattern_frames += 1;
        }
        Ok(())
    }
}

/// Decodes one track until it ends or `stop` fires.
async fn receive(
    track: RemoteTrack,
    wav: Option<PathBuf>,
    stop: CancellationToken,
) -> anyhow::Result<TrackReport> {
    let mut sink = CliSink {
        writer: wav.as_deref().map(wav_writer).transpose()?,
        pattern_frames: 0,
    };
    let options = ReceiveOptions::decoded().until_cancelled(stop);
    let stats = receive_track(&track, &options, &mut sink).await?;
    if let Some(writer) = sink.writer {
        writer.finalize().context("cannot finish wav")?;
    }
    Ok(TrackReport {
        track_id: track.id.to_string(),
        kind: track.kind(),
        owner_session: track.owner().to_owned(),
        owner_name: track.owner_name.clone(),
        packets: stats.packets,
        bytes: stats.bytes,
        samples: stats.samples,
        frames: stats.frames,
        pattern_frames: sink.pattern_frames,
        wav,
    })
}

/// Runs the participant until `--duration` elapses, `interrupt` completes or the SFU closes the
/// connection, then leaves and (with `--record-dir`) writes the recordings and summary.json.
pub async fn run(args: Args, interrupt: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    let url = crate::signalling_url(&args.sfu).context("--sfu")?;
    let (outgoing_voice, options) = prepare(&args)?;
    let started = Instant::now();
    let mut me = join(&args, &url, options).await?;
    // Caption arrival times count from here: the moment this participant is in the call.
    let mut call = CallLog::new(&args, &me);
    let voice_task = outgoing_voice.map(|pcm| me.send_voice(pcm));
    if args.send_screen {
        let (width, height, fps) = SCREEN_SIZE;
        me.start_screen(width, height, fps)
            .await
            .context("cannot start the screen share")?;
    }
    let deadline = args
        .duration
        .map(|duration| tokio::time::Instant::now() + duration);
    tokio::pin!(interrupt);
    loop {
        let event = tokio::select! {
            _ = &mut interrupt => break,
            _ = sleep_until(deadline) => break,
            event = me.next_event() => match event { Some(event) => event, None => break },
        };
        if call.handle_event(&me, event).is_break() {
            break;
        }
    }
    if let Some(task) = voice_task {
        task.abort();
    }
    let left = me.leave().await;
    call.finish(left, started).await
}

/// Reads what the arguments name (the voice to send, the CA to trust) and makes the record
/// directory, before joining: a wrong path fails at once.
fn prepare(args: &Args) -> anyhow::Result<(Option<Vec<i16>>, JoinOptions)> {
    let outgoing_voice = match &args.send_audio {
        Some(path) => {
            Some(read_wav(path).with_context(|| format!("--send-audio {}", path.display()))?)
        }
        None => None,
    };
    if let Some(dir) = &args.record_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let ca_cert_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--ca-cert: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let options = JoinOptions {
        call_id: Some(args.call.clone()),
        timeout: args.connect_timeout,
        relay_only: args.relay_only,
        ca_cert_pem,
        ..JoinOptions::default()
    };
    Ok((outgoing_voice, options))
}

/// Joins the call and waits for the media connection.
async fn join(args: &Args, url: &str, options: JoinOptions) -> anyhow::Result<Participant> {
    let mut me = Participant::join(url, &args.token, options)
        .await
        .with_context(|| format!("cannot join call {} at {url}", args.call))?;
    me.wait_connected(args.connect_timeout)
        .await
        .context("media connection did not come up (check UDP/TCP 8443 reachability)")?;
    tracing::info!(
        session_id = me.session_id(),
        call_id = me.call_id(),
        "joined"
    );
    Ok(me)
}

/// What the run saw so far, and the tasks receiving its tracks.
struct CallLog {
    summary: Summary,
    record_dir: Option<PathBuf>,
    /// When this participant was in the call: caption arrival times count from here.
    joined: Instant,
    stop: CancellationToken,
    receivers: Vec<JoinHandle<anyhow::Result<TrackReport>>>,
    /// WAV paths given out in this run.
    taken: HashSet<PathBuf>,
}

impl CallLog {
    fn new(args: &Args, me: &Participant) -> Self {
        let summary = Summary {
            call_id: me.call_id().to_owned(),
            session_id: me.session_id().to_owned(),
            name: args.name.clone(),
            seconds: 0.0,
            participants_seen: me
                .initial_participants()
                .iter()
                .map(|p| (p.session_id.clone(), p.name.clone()))
                .collect(),
            tracks: Vec::new(),
            captions: Vec::new(),
            errors: Vec::new(),
        };
        Self {
            summary,
            record_dir: args.record_dir.clone(),
            joined: Instant::now(),
            stop: CancellationToken::new(),
            receivers: Vec::new(),
            taken: HashSet::new(),
        }
    }

    /// Notes one event; `Break` when the run is over (the SFU asked to stop, or disconnected).
    fn handle_event(&mut self, me: &Participant, event: Event) -> ControlFlow<()> {
        match event {
            Event::ParticipantJoined(info) => {
                self.summary
                    .participants_seen
                    .insert(info.session_id, info.name);
            }
            Event::Track(track) => self.receive(me, track),
            Event::Caption(caption) => {
                self.summary.captions.push(CaptionReport {
                    speaker: caption.speaker_name.unwrap_or(caption.speaker_session),
                    id: caption.id,
                    text: caption.text,
                    tail: caption.tail,
                    is_final: caption.is_final,
                    received_ms: self.joined.elapsed().as_millis() as u64,
                    start_ms: caption.start_ms,
                    end_ms: caption.end_ms,
                });
            }
            Event::Error { code, message } => {
                self.summary.errors.push(format!("{code:?}: {message}"))
            }
            Event::JobStop { reason } => {
                tracing::info!(reason, "the sfu asked us to stop");
                return ControlFlow::Break(());
            }
            Event::Disconnected => {
                self.summary.errors.push("disconnected by the sfu".into());
                return ControlFlow::Break(());
            }
            Event::ParticipantLeft { .. }
            | Event::MuteState { .. }
            | Event::ScreenState { .. }
            | Event::Connection(_) => {}
        }
        ControlFlow::Continue(())
    }

    /// Starts receiving a track (into a WAV named after its owner, for a voice with a record
    /// directory).
    fn receive(&mut self, me: &Participant, mut track: RemoteTrack) {
        if track.owner_name.is_none() {
            track.owner_name = me.name_of(track.owner());
        }
        let wav = match (&self.record_dir, track.kind()) {
            (Some(dir), TrackKind::Voice) => {
                let name = track
                    .owner_name
                    .clone()
                    .unwrap_or_else(|| track.owner().to_owned());
                Some(unique_wav(
                    dir,
                    &mut self.taken,
                    &file_stem(&name),
                    track.owner(),
                ))
            }
            _ => None,
        };
        self.receivers
            .push(tokio::spawn(receive(track, wav, self.stop.clone())));
    }

    /// After leaving (`left`): stops the receivers, collects their reports and writes
    /// summary.json.
    async fn finish(
        mut self,
        left: crate::Result<()>,
        started: Instant,
    ) -> anyhow::Result<Summary> {
        if let Err(error) = left {
            self.summary.errors.push(format!("leave: {error}"));
        }
        self.stop.cancel();
        for receiver in self.receivers {
            match receiver.await {
                Ok(Ok(report)) => self.summary.tracks.push(report),
                Ok(Err(error)) => self.summary.errors.push(format!("{error:#}")),
                Err(join) => self
                    .summary
                    .errors
                    .push(format!("receiver task failed: {join}")),
            }
        }
        let mut summary = self.summary;
        summary.seconds = started.elapsed().as_secs_f64();
        if let Some(dir) = &self.record_dir {
            let path = dir.join("summary.json");
            let text = serde_json::to_string_pretty(&summary.to_json())
                .expect("json values always serialise");
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(summary)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_url_accepts_http_and_ws_forms() {
        use crate::signalling_url;
        assert_eq!(signalling_url("http://h:8045").unwrap(), "ws://h:8045/ws");
        assert_eq!(signalling_url("https://h/").unwrap(), "wss://h/ws");
        assert_eq!(signalling_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert!(signalling_url("h:8045").is_err());
        assert!(signalling_url("ftp://h").is_err());
        assert!(signalling_url("http://").is_err());
        assert_eq!(
            signalling_url("https://calls.example.com/calls/ws").unwrap(),
            "wss://calls.example.com/calls/ws"
        );
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("Alice Smith"), "Alice_Smith");
        assert_eq!(file_stem("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_stem("///"), "speaker");
        assert_eq!(file_stem("Zoë"), "Zoë");
    }

    #[test]
    fn duplicate_names_get_distinct_files() {
        let dir = Path::new("/rec");
        let mut taken = HashSet::new();
        let first = unique_wav(dir, &mut taken, "Bob", "s1");
        let second = unique_wav(dir, &mut taken, "Bob", "s2");
        assert_eq!(first, dir.join("Bob.wav"));
        assert_eq!(second, dir.join("Bob-s2-1.wav"));
    }

    #[test]
    fn the_summary_keeps_each_captions_id_tail_and_arrival() {
        let summary = Summary {
            call_id: "c".into(),
            session_id: "me".into(),
            name: "listener".into(),
            seconds: 3.0,
            participants_seen: BTreeMap::new(),
            tracks: Vec::new(),
            captions: vec![
                CaptionReport {
                    speaker: "Alice".into(),
                    id: Some("u1".into()),
                    text: String::new(),
                    tail: "The data".into(),
                    is_final: false,
                    received_ms: 1_250,
                    start_ms: 400,
                    end_ms: 1_100,
                },
                CaptionReport {
                    speaker: "Alice".into(),
                    id: Some("u1".into()),
                    text: "The database upgrade finished.".into(),
                    tail: String::new(),
                    is_final: true,
                    received_ms: 2_900,
                    start_ms: 400,
                    end_ms: 2_300,
                },
            ],
            errors: Vec::new(),
        };
        let json = summary.to_json();
        let captions = json["captions_received"].as_array().unwrap();
        assert_eq!(captions.len(), 2);
        assert_eq!(captions[0]["id"], "u1");
        assert_eq!(captions[0]["text"], "");
        assert_eq!(captions[0]["tail"], "The data");
        assert_eq!(captions[0]["final"], false);
        assert_eq!(captions[0]["received_ms"], 1_250);
        assert_eq!(captions[1]["id"], captions[0]["id"]);
        assert_eq!(captions[1]["final"], true);
        assert_eq!(captions[1]["received_ms"], 2_900);
        assert_eq!(captions[1]["end_ms"], 2_300);
    }

    #[test]
    fn arguments_parse() {
        use clap::Parser;
        let args = Args::try_parse_from([
            "calls-participant",
            "--sfu",
            "http://h:8045",
            "--call",
            "c",
            "--token",
            "t",
            "--name",
            "n",
            "--send-screen",
            "--duration",
            "10s",
        ])
        .expect("valid arguments");
        assert!(args.send_screen);
        assert_eq!(args.duration, Some(Duration::from_secs(10)));
        assert_eq!(args.connect_timeout, Duration::from_secs(15));
    }
}
