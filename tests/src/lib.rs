//! Helpers for the end-to-end tests: start the real stack (SFU, offloader, containers) and make test speech.
