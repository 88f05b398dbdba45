//! Capture during the call: every remote voice track's Opus packets go to disk as they arrive, one file per
//! speaker under the job's data directory, each packet stamped with its place on the call timeline.
//!
//! Memory stays flat however long the call: the track tasks hand packets to one writer thread through a
//! bounded queue ([`CaptureSender`]; a full queue drops the packet and counts it), and the thread writes them
//! through small buffers. Placement comes from RTP timestamps ([`RtpClock`]): the first packet of a track sits
//! at its arrival time, later ones at `anchor + Δrtp`, and a track whose sender paused (timestamps that fell
//! behind arrival) or restarted is re-anchored at arrival. So joins, leaves, mutes and reconnects land at the
//! right call time, and the decoder (`decode`) turns gaps into silence or piece boundaries.
//!
//! A speaker is a display name plus an SFU session ([`Speakers`]): two people with one name stay apart, and a
//! session's later tracks (a re-published microphone) append to the same speaker with a new track number.
//!
//! The file format is `capture_file`'s.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use calls_participant::clock::{RtpClock, OPUS_CLOCK_RATE};
use calls_participant::TrackSink;
use rtc::rtp;

use crate::capture_file::{write_packet, CapturedPacket, MAGIC};
use crate::transcript::Speaker;

/// Packets the writer thread may fall behind by (about 40 s of one voice at 50 packets/s).
pub const QUEUE_PACKETS: usize = 2048;
/// A placement this far behind arrival re-anchors a track (the sender paused; its timestamps stopped).
pub const MAX_BEHIND: Duration = Duration::from_millis(250);
/// A placement this far ahead of arrival re-anchors a track (the sender restarted with a new base).
pub const MAX_AHEAD: Duration = Duration::from_millis(250);

/// The speakers of a call, by session, in the order their first track arrived.
#[derive(Debug, Default)]
pub struct Speakers {
    list: Vec<(Speaker, u16)>,
    by_session: HashMap<String, usize>,
}

impl Speakers {
    /// A new voice track of `session` (display name `name`): its speaker index and track number.
    pub fn handle_track(&mut self, session: &str, name: &str) -> (usize, u16) {
        if let Some(&index) = self.by_session.get(session) {
            let entry = &mut self.list[index];
            entry.1 = entry.1.saturating_add(1);
            return (index, entry.1);
        }
        let index = self.list.len();
        self.list.push((
            Speaker {
                name: name.to_owned(),
                session: session.to_owned(),
            },
            0,
        ));
        self.by_session.insert(session.to_owned(), index);
        (index, 0)
    }

    /// Every speaker seen, by index.
    pub fn list(&self) -> Vec<Speaker> {
        self.list
            .iter()
            .map(|(speaker, _)| speaker.clone())
            .collect()
    }

    /// How many speakers were seen.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether nobody published a voice.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The capture file of speaker number `index` in `dir`.
pub fn capture_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("speaker-{index}.cap"))
}

struct Message {
    speaker: usize,
    packet: CapturedPacket,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// Hands packets to the writer thread without ever blocking; a full queue drops the packet and counts it.
#[derive(Clone)]
pub struct CaptureSender {
    queue: SyncSender<Message>,
    counters: Arc<Counters>,
}

impl CaptureSender {
    /// Queues `packet` for speaker `speaker`.
    pub fn send(&self, speaker: usize, packet: CapturedPacket) {
        match self.queue.try_send(Message { speaker, packet }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped == 0 {
                    tracing::warn!("capture writer is behind; dropping voice packets (counted)");
                }
            }
        }
    }
}

/// Per speaker index: the capture file and the packets in it (absent when no packet was written).
pub type CaptureFiles = Vec<Option<(PathBuf, u64)>>;

/// What the capture wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    /// Per speaker index: the file and the packets in it (absent when no packet was written).
    pub files: CaptureFiles,
    /// Packets dropped because the writer was behind.
    pub dropped: u64,
}

/// The writer thread and its queue.
pub struct Capture {
    sender: CaptureSender,
    thread: JoinHandle<io::Result<CaptureFiles>>,
}

impl Capture {
    /// Starts the writer thread for files in `dir` (created if needed).
    pub fn start(dir: &Path, queue: usize) -> io::Result<Capture> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = sync_channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        let dir = dir.to_owned();
        let written = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || write_loop(&dir, rx, &written))?;
        Ok(Capture {
            sender: CaptureSender {
                queue: tx,
                counters,
            },
            thread,
        })
    }

    /// A sender for a track task.
    pub fn sender(&self) -> CaptureSender {
        self.sender.clone()
    }

    /// Packets written so far (the job's heartbeat counter during the call).
    pub fn packets_written(&self) -> u64 {
        self.sender.counters.written.load(Ordering::Relaxed)
    }

    /// Packets dropped so far.
    pub fn packets_dropped(&self) -> u64 {
        self.sender.counters.dropped.load(Ordering::Relaxed)
    }

    /// Stops accepting packets once every sender is gone, writes what is queued and closes the files.
    /// Call after the track tasks ended (their senders are dropped with them).
    pub fn finish(self) -> io::Result<CaptureSummary> {
        let Capture { sender, thread } = self;
        let counters = Arc::clone(&sender.counters);
        drop(sender);
        let files = thread
            .join()
            .map_err(|_| io::Error::other("the capture thread panicked"))??;
        Ok(CaptureSummary {
            files,
            dropped: counters.dropped.load(Ordering::Relaxed),
        })
    }
}

fn write_loop(
    dir: &Path,
    queue: Receiver<Message>,
    counters: &Counters,
) -> io::Result<CaptureFiles> {
    let mut files: Vec<Option<(PathBuf, BufWriter<File>, u64)>> = Vec::new();
    for Message { speaker, packet } in queue {
        if files.len() <= speaker {
            files.resize_with(speaker + 1, || None);
        }
        if files[speaker].is_none() {
            let path = capture_path(dir, speaker);
            let mut out = BufWriter::with_capacity(64 * 1024, File::create(&path)?);
            out.write_all(MAGIC)?;
            files[speaker] = Some((path, out, 0));
        }
        let Some((_, out, count)) = files[speaker].as_mut() else {
            unreachable!("opened just above");
        };
        write_packet(out, &packet)?;
        *count += 1;
        counters.written.fetch_add(1, Ordering::Relaxed);
    }
    files
        .into_iter()
        .map(|entry| {
            entry
                .map(|(path, out, count)| -> io::Result<(PathBuf, u64)> {
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    Ok((path, count))
                })
                .transpose()
        })
        .collect()
}

/// The receive-loop sink of one voice track: places each packet on the call timeline and queues it.
pub struct CaptureSink {
    speaker: usize,
    track: u16,
    origin: tokio::time::Instant,
    clock: RtpClock,
    sender: CaptureSender,
    /// Live captioning's copy of each placed packet, with the speaker's session and name.
    live: Option<(crate::live_job::LiveTap, String, String)>,
}

impl CaptureSink {
    /// A sink for track number `track` of speaker `speaker`; call time zero is `origin`.
    pub fn new(
        speaker: usize,
        track: u16,
        origin: tokio::time::Instant,
        sender: CaptureSender,
    ) -> CaptureSink {
        CaptureSink {
            speaker,
            track,
            origin,
            clock: RtpClock::new(OPUS_CLOCK_RATE, MAX_BEHIND, MAX_AHEAD),
            sender,
            live: None,
        }
    }

    /// Also hands each placed packet to live captioning, as `session`'s (`name`) voice.
    pub fn with_live(mut self, tap: crate::live_job::LiveTap, session: &str, name: &str) -> Self {
        self.live = Some((tap, session.to_owned(), name.to_owned()));
        self
    }

    /// The packet as stored, placed by its RTP timestamp given its arrival on the call clock; `None` for
    /// padding-only packets (bandwidth probes carry no audio).
    pub fn place(&mut self, packet: &rtp::Packet, arrival: Duration) -> Option<CapturedPacket> {
        if packet.payload.is_empty() {
            return None;
        }
        let at = self.clock.handle_packet(packet.header.timestamp, arrival);
        Some(CapturedPacket {
            track: self.track,
            at_us: u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
            sequence: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            payload: packet.payload.to_vec(),
        })
    }
}

impl TrackSink for CaptureSink {
    type Error = calls_participant::Error;

    fn packet(
        &mut self,
        packet: &rtp::Packet,
        arrival: tokio::time::Instant,
    ) -> Result<(), Self::Error> {
        if let Some(captured) = self.place(packet, arrival.duration_since(self.origin)) {
            if let Some((tap, session, name)) = &self.live {
                tap.send(session, name, self.track, &captured);
            }
            self.sender.send(self.speaker, captured);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
