//! Capacity load generator for calls-sfu (not a test): one call, 2 speakers and N listeners, the
//! listeners all in this one process and cheap enough that the SFU, not the generator, is what
//! runs out.
//!
//! A listener is a real WebRTC peer (webrtc-rs, ICE + DTLS-SRTP with the SFU over our signalling
//! WebSocket) whose UDP socket is wrapped: datagrams that are SRTP media (RTP version 2, a payload
//! type outside the RTCP range) are counted and dropped before the peer connection sees them, so
//! a listener never decrypts, never runs interceptors and never wakes its connection's task for
//! media. The RTP header of SRTP is plaintext, so each stream's sequence numbers still give the
//! packets lost at the listener. STUN, DTLS and RTCP go through untouched (ICE consent and RTCP
//! reports keep working). The speakers are `calls-participant` clients sending a voice signal as
//! 20 ms Opus frames (50 packets/s each).
//!
//! The SFU runs elsewhere (its pid is given, for CPU and memory from `/proc`); with
//! `--spawn-sfu BIN` this starts `BIN serve` itself on ephemeral ports. Prints one JSON line:
//! listeners, join seconds, forwarded packets/s at the listeners, expected, loss, SFU cores,
//! SFU CPU-µs per forwarded packet, SFU RSS and RSS per session, load average.
//!
//! ```text
//! cargo build --release -p calls-sfu --bin calls-sfu --example listeners
//! target/release/examples/listeners --spawn-sfu target/release/calls-sfu --listeners 100 --seconds 20
//! ```

mod shared;

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, BufRead, BufReader, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use calls_participant::{JoinOptions, Participant, Role};
use calls_protocol::signalling::{ClientMessage, IceCandidate, ServerMessage, PROTOCOL_VERSION};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use shared::{cpu_seconds, resident_mib, voice_signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCSessionDescription, Registry,
};
use webrtc::runtime::{
    AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, RecvMeta, Runtime, TokioRuntime, Transmit,
};

const SECRET: &str = "listeners-secret-listeners-secret-0123456";

#[derive(Parser)]
struct Args {
    /// Listeners in the call (besides the 2 speakers).
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// Length of the measured window in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Start this calls-sfu binary (`serve`, ephemeral ports, loopback) instead of using --url.
    #[arg(long)]
    spawn_sfu: Option<String>,
    /// Signalling URL of a running SFU (ws://host:port/ws); needs --pid and --secret.
    #[arg(long)]
    url: Option<String>,
    /// Pid of the running SFU.
    #[arg(long)]
    pid: Option<u32>,
    /// Its token secret.
    #[arg(long, default_value = SECRET)]
    secret: String,
    /// Listeners joining at once.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
}

/// One media stream seen by a listener: packets counted and the highest extended sequence number.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    packets: u64,
    first: u64,
    highest: u64,
}

/// Packets counted by every listener, by (listener, ssrc).
#[derive(Debug, Default)]
struct Counts {
    streams: Mutex<HashMap<(u32, u32), Stream>>,
}

impl Counts {
    fn count(&self, listener: u32, ssrc: u32, sequence: u16) {
        let mut streams = self.streams.lock().expect("counts lock is never poisoned");
        let stream = streams.entry((listener, ssrc)).or_insert_with(|| Stream {
            packets: 0,
            first: u64::from(sequence) + (1 << 16),
            highest: u64::from(sequence) + (1 << 16),
        });
        stream.packets += 1;
        // Extend the 16-bit sequence number to the one nearest the highest seen.
        let base = stream.highest & !0xffff;
        let candidates = [base.saturating_sub(1 << 16), base, base + (1 << 16)];
        let extended = candidates
            .iter()
            .map(|b| b + u64::from(sequence))
            .min_by_key(|e| e.abs_diff(stream.highest))
            .unwrap_or(stream.highest);
        stream.highest = stream.highest.max(extended);
    }

    /// (streams, packets, packets the sequence numbers say were sent)
    fn totals(&self) -> (usize, u64, u64) {
        let streams = self.streams.lock().expect("counts lock is never poisoned");
        let packets = streams.values().map(|s| s.packets).sum();
        let span = streams.values().map(|s| s.highest - s.first + 1).sum();
        (streams.len(), packets, span)
    }
}

/// A listener's UDP socket: SRTP media is counted and dropped, everything else is passed on.
#[derive(Debug)]
struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    listener: u32,
    counts: Arc<Counts>,
}

/// The SSRC and sequence number of an RTP (not RTCP) datagram.
fn rtp_media(packet: &[u8]) -> Option<(u32, u16)> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || (192..=223).contains(&packet[1]) {
        return None;
    }
    let sequence = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Some((ssrc, sequence))
}

impl AsyncUdpSocket for CountingSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // Keep the datagrams that are not media, compacted to the front.
            let mut kept = 0;
            for i in 0..n {
                let len = meta[i].len;
                if let Some((ssrc, sequence)) = rtp_media(&bufs[i][..len]) {
                    self.counts.count(self.listener, ssrc, sequence);
                    continue;
                }
                if kept != i {
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..len].copy_from_slice(&tail[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }
}

/// Tokio, except that every UDP socket is a [`CountingSocket`].
#[derive(Debug, Clone)]
struct CountingRuntime {
    inner: Arc<TokioRuntime>,
    listener: u32,
    counts: Arc<Counts>,
}

impl Runtime for CountingRuntime {
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(CountingSocket {
            inner: self.inner.wrap_udp_socket(socket)?,
            listener: self.listener,
            counts: Arc::clone(&self.counts),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    calls_sfu::delegate_runtime_to_inner!();

    fn name(&self) -> &'static str {
        "tokio-counting"
    }
}

struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(init);
        }
    }
}

fn token(secret: &str, call: &str, name: &str) -> anyhow::Result<String> {
    Ok(calls_sfu::token::mint(
        secret.as_bytes(),
        call,
        name,
        Role::Participant,
        Duration::from_secs(3600),
        SystemTime::now(),
    )?)
}

/// Joins one listener and keeps it in the call (answering the SFU's offers) until the process ends.
/// `joining` is held until the SFU answers the first offer (it bounds the listeners joining at once).
async fn listen(
    url: String,
    token: String,
    listener: u32,
    counts: Arc<Counts>,
    joining: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut joining = Some(joining);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let join = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        token,
        call_id: None,
    };
    socket.send(Message::Text(join.to_json().into())).await?;
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let (candidates_tx, mut candidates) = mpsc::unbounded_channel();
    let local: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_runtime(Arc::new(CountingRuntime {
            inner: Arc::new(TokioRuntime),
            listener,
            counts,
        }))
        .with_handler(Arc::new(Handler {
            candidates: candidates_tx,
        }))
        .with_udp_addrs(vec![local.to_string()])
        .build()
        .await?;
    // Like calls-participant: a send-only voice transceiver whose track never sends.
    let track = calls_rtc::codecs::local_track(
        RtpCodecKind::Audio,
        &format!("listener-{listener}"),
        &format!("voice-{listener}"),
        rand::random::<u32>(),
    );
    pc.add_transceiver_from_track(
        Arc::new(TrackLocalStaticRTP::new(track)) as Arc<dyn TrackLocal>,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![format!("listener-{listener}")],
            send_encodings: Vec::new(),
        }),
    )
    .await?;
    let offer = pc.create_offer(None).await?;
    let sdp = offer.sdp.clone();
    pc.set_local_description(offer).await?;
    socket
        .send(Message::Text(ClientMessage::Offer { sdp }.to_json().into()))
        .await?;
    let mut making_offer = true;
    let mut early: Vec<IceCandidate> = Vec::new();
    loop {
        tokio::select! {
            Some(init) = candidates.recv() => {
                if init.candidate.is_empty() {
                    continue;
                }
                let candidate = calls_rtc::candidate::wire_candidate(init);
                socket.send(Message::Text(ClientMessage::IceCandidate { candidate }.to_json().into())).await?;
            }
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => bail!("sfu closed the signalling socket"),
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => return Err(err.into()),
                };
                match ServerMessage::from_json(&text)? {
                    ServerMessage::Answer { sdp } => {
                        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
                        making_offer = false;
                        joining.take();
                        for candidate in early.drain(..) {
                            add_candidate(&pc, candidate).await;
                        }
                    }
                    ServerMessage::Offer { sdp } if !making_offer => {
                        pc.set_remote_description(RTCSessionDescription::offer(sdp)?).await?;
                        let answer = pc.create_answer(None).await?;
                        let sdp = answer.sdp.clone();
                        pc.set_local_description(answer).await?;
                        socket.send(Message::Text(ClientMessage::Answer { sdp }.to_json().into())).await?;
                    }
                    ServerMessage::IceCandidate { candidate } => {
                        if making_offer {
                            early.push(candidate);
                        } else {
                            add_candidate(&pc, candidate).await;
                        }
                    }
                    ServerMessage::Error { code, message } => eprintln!("listener {listener}: sfu error {code:?}: {message}"),
                    _ => {}
                }
            }
        }
    }
}

async fn add_candidate(pc: &impl PeerConnection, candidate: IceCandidate) {
    let _ = pc
        .add_ice_candidate(calls_rtc::candidate::candidate_init(candidate))
        .await;
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Starts `bin serve` on ephemeral loopback ports; returns the child and its signalling URL.
fn spawn_sfu(bin: &str) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bin)
        .arg("serve")
        .env("SFU_AUTH_TOKEN_SECRET", SECRET)
        .env("SFU_HTTP_LISTEN_ADDRESS", "127.0.0.1:0")
        .env("SFU_ICE_UDP_PORT", "0")
        .env("SFU_ICE_TCP_PORT", "0")
        .env("SFU_ICE_HOST_ADDRESSES", "127.0.0.1")
        .env("SFU_LIMITS_MAX_PARTICIPANTS_PER_CALL", "2000")
        .env("SFU_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {bin}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(line) = lines.next() else { break };
        let line = line?;
        // The listening line names the HTTP address: "... http listening ... 127.0.0.1:PORT".
        if let Some(addr) = line
            .split(|c: char| c == '"' || c.is_whitespace())
            .find(|word| word.starts_with("127.0.0.1:") && !word.ends_with(":0"))
        {
            if line.contains("calls-sfu listening") {
                let url = format!("ws://{addr}/ws");
                std::thread::spawn(move || for _ in lines {});
                return Ok((child, url));
            }
        }
    }
    let _ = child.kill();
    bail!("the sfu did not say where it listens")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (mut child, url, pid) = match (&args.spawn_sfu, &args.url, args.pid) {
        (Some(bin), _, _) => {
            let (child, url) = spawn_sfu(bin)?;
            let pid = child.id();
            (Some(child), url, pid)
        }
        (None, Some(url), Some(pid)) => (None, url.clone(), pid),
        _ => bail!("give --spawn-sfu BIN, or --url and --pid"),
    };
    let call = format!("capacity-{:x}", rand::random::<u32>());
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::new();
    for listener in 0..args.listeners as u32 {
        let token = token(&args.secret, &call, &format!("listener-{listener}"))?;
        let (url, counts) = (url.clone(), Arc::clone(&counts));
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            if let Err(err) = listen(url, token, listener, counts, permit).await {
                eprintln!("listener {listener}: {err:#}");
            }
        }));
    }
    let options = JoinOptions {
        timeout: Duration::from_secs(120),
        ..JoinOptions::default()
    };
    let mut speakers = Vec::new();
    for name in ["speaker-a", "speaker-b"] {
        let token = token(&args.secret, &call, name)?;
        let connect = Duration::from_secs(120);
        speakers.push(Participant::join_connected(&url, &token, options.clone(), connect).await?);
    }
    let total = 240.0 + args.seconds as f64;
    let senders: Vec<_> = speakers
        .iter()
        .map(|s| s.send_voice(voice_signal(total)))
        .collect();
    // Every listener has both voices when 2 x N streams are counted.
    let expected_streams = 2 * args.listeners;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (streams, _, _) = counts.totals();
        if streams >= expected_streams {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {streams} of {expected_streams} streams arrived");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let join_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let me = std::process::id();
    let own0 = cpu_seconds(me)?;
    let (cpu0, (_, packets0, span0), t0) = (cpu_seconds(pid)?, counts.totals(), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (cpu1, (_, packets1, span1), t1) = (cpu_seconds(pid)?, counts.totals(), Instant::now());
    let rss = resident_mib(pid);
    let own = cpu_seconds(me)? - own0;
    let elapsed = (t1 - t0).as_secs_f64();
    let packets = (packets1 - packets0) as f64;
    let span = (span1 - span0) as f64;
    let cpu = cpu1 - cpu0;
    let sessions = args.listeners + 2;
    let report = serde_json::json!({
        "listeners": args.listeners,
        "join_seconds": (join_seconds * 10.0).round() / 10.0,
        "received_pps": (packets / elapsed).round(),
        "expected_pps": 2 * args.listeners * 50,
        "loss": if span > 0.0 { ((1.0 - packets / span) * 10_000.0).round() / 10_000.0 } else { f64::NAN },
        "sfu_cores": (cpu / elapsed * 1000.0).round() / 1000.0,
        "sfu_cpu_us_per_packet": (cpu / packets.max(1.0) * 1e6 * 10.0).round() / 10.0,
        "sfu_rss_mib": rss.map(|mib| mib.round()),
        "sfu_rss_kib_per_session": rss.map(|mib| (mib * 1024.0 / sessions as f64).round()),
        // This process: the speakers and every listener (ICE, DTLS, RTCP; media only counted).
        "generator_cores": (own / elapsed * 1000.0).round() / 1000.0,
        "load_average": load_average(),
    });
    println!("{report}");
    for sender in senders {
        sender.abort();
    }
    for task in tasks {
        task.abort();
    }
    if let Some(child) = child.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}
