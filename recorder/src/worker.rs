//! The media thread: owns a [`Recording`] (whose FFmpeg contexts must stay on one thread) and takes inputs
//! from the async job shell through a bounded channel.
//!
//! Media must never stall the network side, so [`MediaWorker::send`] never blocks: when the thread falls
//! behind, inputs are dropped and counted (`inputs_dropped` in the progress). Time is still passed in: the
//! shell sends `Tick` with the media clock, and `finish(end)` names the end of the recording.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backdrop::Person;
use crate::encoder::EncodeSummary;
use crate::error::{Error, Result};
use crate::frame::I420Frame;
use crate::metrics::Progress;
use crate::mixer::MixerConfig;
use crate::profile::Profile;
use crate::recording::Recording;

/// One input for the media thread.
#[derive(Debug)]
pub enum MediaInput {
    /// Decoded 48 kHz mono PCM from a speaker at a media time.
    Audio {
        /// Who spoke (session or user id).
        speaker: String,
        /// Media time of the first sample.
        at: Duration,
        /// The samples.
        pcm: Vec<i16>,
    },
    /// A decoded screen-share frame.
    Video {
        /// Who shares.
        sharer: String,
        /// Media time of the frame.
        at: Duration,
        /// The picture.
        frame: I420Frame,
    },
    /// A share ended.
    ShareStopped {
        /// Who stopped.
        sharer: String,
        /// Media time of the stop.
        at: Duration,
    },
    /// Someone started a screen share (after an earlier one of theirs stopped).
    ShareStarted {
        /// Who started.
        sharer: String,
    },
    /// A speaker left the call.
    SpeakerLeft {
        /// Who left.
        speaker: String,
    },
    /// A speaker muted or unmuted.
    SpeakerMuted {
        /// Who.
        speaker: String,
        /// Muted now?
        muted: bool,
    },
    /// The people in the call now (their tiles show while nobody shares).
    Participants {
        /// Session ids (the key their voices arrive under) and display names.
        people: Vec<Person>,
    },
    /// The media clock advanced: encode what is due.
    Tick {
        /// Current media time.
        now: Duration,
    },
}

enum Command {
    Input(MediaInput),
    Finish(Duration),
}

/// A cloneable way to feed the media thread from several tasks (one per received track).
#[derive(Clone)]
pub struct MediaSender {
    sender: SyncSender<Command>,
    shared: Arc<Mutex<Shared>>,
}

impl MediaSender {
    /// Queues an input. Media (audio, video) never waits: when the thread is behind it is dropped and counted
    /// (`false`). Control inputs (share started or stopped, roster, mute, leave) are rare and change what every
    /// later frame means, so they wait for room instead of being dropped: a lost `ShareStopped` froze the share's
    /// last frame to the end of the file when the machine was loaded. The wait is short, because the media thread
    /// drains its queue on every tick; `false` only when the thread has stopped.
    pub fn send(&self, input: MediaInput) -> bool {
        let media = matches!(input, MediaInput::Audio { .. } | MediaInput::Video { .. });
        let queued = if media {
            match self.sender.try_send(Command::Input(input)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            }
        } else {
            self.sender.send(Command::Input(input)).is_ok()
        };
        if !queued {
            lock(&self.shared).inputs_dropped += 1;
        }
        queued
    }
}

/// Handle to the media thread.
pub struct MediaWorker {
    sender: SyncSender<Command>,
    shared: Arc<Mutex<Shared>>,
    thread: JoinHandle<Result<EncodeSummary>>,
}

#[derive(Default)]
struct Shared {
    progress: Progress,
    inputs_dropped: u64,
    inputs_rejected: u64,
}

impl MediaWorker {
    /// Starts the thread and opens the output file; errors opening the file are returned here.
    pub fn spawn(
        path: PathBuf,
        profile: Profile,
        mixer: MixerConfig,
        capacity: usize,
    ) -> Result<MediaWorker> {
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let (ready_sender, ready) = mpsc::sync_channel::<Result<()>>(1);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("recorder-media".to_owned())
            .spawn(move || {
                let recording = match Recording::with_mixer(&path, &profile, mixer) {
                    Ok(recording) => {
                        // The spawner waits for this message; if it is gone there is nobody to record for.
                        let _ = ready_sender.send(Ok(()));
                        recording
                    }
                    Err(error) => {
                        let _ = ready_sender.send(Err(error));
                        return Err(Error::MediaThread("the recording could not start"));
                    }
                };
                run(recording, &receiver, &thread_shared)
            })
            .map_err(|_| Error::MediaThread("could not start"))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(MediaWorker {
                sender,
                shared,
                thread,
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::MediaThread("stopped while starting")),
        }
    }

    /// Queues an input without blocking. `false` when it was dropped (thread behind, or stopped after an error).
    pub fn send(&self, input: MediaInput) -> bool {
        self.sender().send(input)
    }

    /// A handle for other tasks to send inputs with.
    pub fn sender(&self) -> MediaSender {
        MediaSender {
            sender: self.sender.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The latest progress (updated after every tick).
    pub fn progress(&self) -> Progress {
        let shared = lock(&self.shared);
        Progress {
            inputs_dropped: shared.inputs_dropped,
            inputs_rejected: shared.inputs_rejected,
            ..shared.progress
        }
    }

    /// Encodes up to `end`, finalises the file and stops the thread. Blocks until the file is complete (call it
    /// from `spawn_blocking` in async code).
    pub fn finish(self, end: Duration) -> Result<EncodeSummary> {
        // If the thread already ended with an error, the join below reports it.
        let _ = self.sender.send(Command::Finish(end));
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| Error::MediaThread("panicked"))?
    }
}

fn run(
    mut recording: Recording,
    receiver: &Receiver<Command>,
    shared: &Mutex<Shared>,
) -> Result<EncodeSummary> {
    let end = loop {
        let Ok(command) = receiver.recv() else {
            // The handle was dropped without finish: still leave a playable file up to what was encoded.
            break recording.progress().recorded;
        };
        let input = match command {
            Command::Finish(end) => break end,
            Command::Input(input) => input,
        };
        let rejected = match input {
            MediaInput::Audio { speaker, at, pcm } => {
                recording.handle_audio(&speaker, at, &pcm).is_err()
            }
            MediaInput::Video { sharer, at, frame } => {
                recording.handle_video(&sharer, at, frame);
                false
            }
            MediaInput::ShareStopped { sharer, at } => {
                recording.handle_share_stopped(&sharer, at);
                false
            }
            MediaInput::ShareStarted { sharer } => {
                recording.handle_share_started(&sharer);
                false
            }
            MediaInput::SpeakerLeft { speaker } => {
                recording.handle_speaker_left(&speaker);
                false
            }
            MediaInput::SpeakerMuted { speaker, muted } => {
                recording.handle_speaker_muted(&speaker, muted);
                false
            }
            MediaInput::Participants { people } => recording.handle_participants(&people).is_err(),
            MediaInput::Tick { now } => {
                recording.tick(now)?;
                lock(shared).progress = recording.progress();
                false
            }
        };
        if rejected {
            lock(shared).inputs_rejected += 1;
        }
    };
    let summary = recording.finish(end)?;
    Ok(summary)
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // The guarded data is plain counters; a panic elsewhere cannot leave them inconsistent.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
