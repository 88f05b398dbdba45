//! Router tests with `oneshot`: no socket, no Docker.
