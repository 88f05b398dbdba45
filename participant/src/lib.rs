//! Participant client library: join a call through the SFU, publish voice and screen, receive tracks.
