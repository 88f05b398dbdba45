//! calls-transcriber: will join a call as a bot, transcribe each speaker with whisper and publish live captions.
