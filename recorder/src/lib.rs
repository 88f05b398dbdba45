//! calls-recorder: joins a call as a bot and records it to MP4 (H.264 + AAC) without a browser.
