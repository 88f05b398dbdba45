//! What a session sends its client: ordinary messages through the shared state (counted by type;
//! a full queue disconnects the session, whose client does not read), error replies and the error
//! that ends the session straight on the session's own queue, so they still go out while the
//! session is being torn down.

use std::sync::Arc;
use std::time::Duration;

use calls_protocol::signalling::{ErrorCode, ServerMessage};
use tokio::sync::mpsc;

use crate::state::Shared;

/// How long the error that ends a session may wait for room in the session's queue.
const FINAL_ERROR_WAIT: Duration = Duration::from_secs(1);

/// The outgoing signalling of one session.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    session_id: String,
    out: mpsc::Sender<ServerMessage>,
}

impl Outbox {
    /// The outbox of `session_id`, whose writer reads `out`.
    pub fn new(shared: Arc<Shared>, session_id: String, out: mpsc::Sender<ServerMessage>) -> Self {
        Self {
            shared,
            session_id,
            out,
        }
    }

    /// Queues a message to the client.
    pub fn send(&self, message: ServerMessage) {
        self.shared.send(&self.session_id, message);
    }

    /// Queues an error message to the client.
    pub fn send_error(&self, code: ErrorCode, message: impl Into<String>) {
        // A full queue means the client does not read what it is sent: it misses this reply as it
        // misses the others.
        if self
            .out
            .try_send(ServerMessage::error(code, message))
            .is_err()
        {
            tracing::debug!(session_id = %self.session_id, ?code, "an error reply was dropped: the session's queue is full");
        }
    }

    /// Sends the error that ends the session, waiting a little for room in the queue: a client
    /// disconnected for flooding has usually filled it with the replies to its flood, and must
    /// still learn why it was disconnected.
    pub async fn send_final_error(&self, code: ErrorCode, message: impl Into<String>) {
        let error = ServerMessage::error(code, message);
        if self
            .out
            .send_timeout(error, FINAL_ERROR_WAIT)
            .await
            .is_err()
        {
            tracing::debug!(session_id = %self.session_id, ?code, "the session's last error was not sent: its queue stayed full");
        }
    }
}
