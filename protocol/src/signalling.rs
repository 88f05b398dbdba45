//! Signalling messages exchanged over the SFU WebSocket (see docs/protocol.md).
