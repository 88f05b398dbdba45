//! What a peer connection reports to the task that owns it. webrtc calls [`EventHandler`] from
//! its own tasks; the handler must not block them, so it queues each [`PeerEvent`] on a bounded
//! channel without waiting. The queue fills only when the owning task is stuck; what does not fit
//! is counted (and handed to an optional hook, e.g. a metric), and a lost track is logged every
//! time: its media would otherwise silently never be received or forwarded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState,
};

/// An event of the peer connection, for the task that owns it.
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the other side.
    Candidate(RTCIceCandidateInit),
    /// The other side started sending a track.
    Track(Arc<dyn TrackRemote>),
    /// The connection state changed.
    State(RTCPeerConnectionState),
}

impl PeerEvent {
    /// A short name of the event's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerEvent::Candidate(_) => "candidate",
            PeerEvent::Track(_) => "track",
            PeerEvent::State(_) => "state",
        }
    }
}

type DropHook = Box<dyn Fn(&PeerEvent) + Send + Sync>;

/// Queues a peer connection's events for its owning task, counting what does not fit.
pub struct EventHandler {
    events: mpsc::Sender<PeerEvent>,
    dropped: Arc<AtomicU64>,
    on_drop: Option<DropHook>,
}

impl EventHandler {
    /// A handler queueing on `events`, counting drops in `dropped` (which the owner may share
    /// with other counters of its own).
    pub fn new(events: mpsc::Sender<PeerEvent>, dropped: Arc<AtomicU64>) -> Self {
        Self {
            events,
            dropped,
            on_drop: None,
        }
    }

    /// Also calls `hook` with each dropped event (to count it in a metric, say).
    pub fn on_drop(mut self, hook: impl Fn(&PeerEvent) + Send + Sync + 'static) -> Self {
        self.on_drop = Some(Box::new(hook));
        self
    }

    /// Queues `event` without waiting; true if it was queued, false if it was dropped (counted,
    /// and logged when it is a track or the first drop).
    pub fn queue(&self, event: PeerEvent) -> bool {
        let Err(error) = self.events.try_send(event) else {
            return true;
        };
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let event = error.into_inner();
        match event {
            PeerEvent::Track(_) => {
                tracing::warn!(
                    dropped,
                    "the peer event queue is full: a remote track is lost"
                )
            }
            _ if dropped == 1 => {
                tracing::warn!(
                    kind = event.kind(),
                    "the peer event queue is full: dropping events (counted)"
                )
            }
            _ => {}
        }
        if let Some(hook) = &self.on_drop {
            hook(&event);
        }
        false
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for EventHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.queue(PeerEvent::Candidate(init));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.queue(PeerEvent::Track(track));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.queue(PeerEvent::State(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn what_does_not_fit_is_counted_and_handed_to_the_hook() {
        let (tx, mut rx) = mpsc::channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook_seen = Arc::clone(&seen);
        let handler = EventHandler::new(tx, Arc::clone(&dropped)).on_drop(move |event| {
            hook_seen.lock().unwrap().push(event.kind());
        });

        assert!(handler.queue(PeerEvent::State(RTCPeerConnectionState::Connecting)));
        assert!(!handler.queue(PeerEvent::State(RTCPeerConnectionState::Connected)));
        assert!(!handler.queue(PeerEvent::Candidate(RTCIceCandidateInit::default())));
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert_eq!(*seen.lock().unwrap(), ["state", "candidate"]);

        // The owner reads the one that fitted; the queue takes events again.
        assert!(matches!(
            rx.try_recv(),
            Ok(PeerEvent::State(RTCPeerConnectionState::Connecting))
        ));
        assert!(handler.queue(PeerEvent::State(RTCPeerConnectionState::Closed)));
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn drops_add_to_the_owners_counter() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let dropped = Arc::new(AtomicU64::new(5));
        let handler = EventHandler::new(tx, Arc::clone(&dropped));
        assert!(!handler.queue(PeerEvent::State(RTCPeerConnectionState::Failed)));
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
    }
}
