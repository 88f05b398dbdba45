//! REST bodies of the offloader job API (see docs/offloader.md).
