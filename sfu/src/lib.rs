//! calls-sfu: the Selective Forwarding Unit that hosts calls.
