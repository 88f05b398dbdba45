//! The capture file: what the capture writes during the call and the decoder reads after it.
//!
//! Format (little-endian), written by [`write_packet`] and read by [`CaptureReader`]: the magic
//! `CTXCAP01`, then per packet `u16 track, u64 at_us, u16 sequence, u32 rtp_timestamp, u16 length, payload`.
//! A record cut short (the job was killed mid-write) ends the file cleanly.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

/// The first bytes of a capture file.
pub const MAGIC: &[u8; 8] = b"CTXCAP01";

/// One captured voice packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// The speaker's track number (0 for the first track of a session, 1 after a re-publish...).
    pub track: u16,
    /// Placement on the call timeline, in microseconds since the bot joined.
    pub at_us: u64,
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// The Opus payload.
    pub payload: Vec<u8>,
}

/// Appends one packet record to `out`.
pub fn write_packet(out: &mut impl Write, packet: &CapturedPacket) -> io::Result<()> {
    let length = u16::try_from(packet.payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload over 64 KiB"))?;
    out.write_all(&packet.track.to_le_bytes())?;
    out.write_all(&packet.at_us.to_le_bytes())?;
    out.write_all(&packet.sequence.to_le_bytes())?;
    out.write_all(&packet.timestamp.to_le_bytes())?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(&packet.payload)
}

/// Reads a capture file packet by packet.
pub struct CaptureReader<R> {
    input: R,
}

impl CaptureReader<BufReader<File>> {
    /// Opens `path` and checks its magic.
    pub fn open(path: &Path) -> io::Result<Self> {
        CaptureReader::new(BufReader::new(File::open(path)?))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads from `input`, which must start with [`MAGIC`].
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a capture file (bad magic)",
            ));
        }
        Ok(CaptureReader { input })
    }

    fn read_record(&mut self) -> io::Result<Option<CapturedPacket>> {
        let mut header = [0u8; 18];
        match read_full(&mut self.input, &mut header)? {
            0 => return Ok(None),
            n if n < header.len() => return Ok(None),
            _ => {}
        }
        let field = |range: std::ops::Range<usize>| &header[range];
        let le16 = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        let track = le16(field(0..2));
        // Both slices are fixed ranges of the 18-byte header, so the conversions cannot fail.
        let at_us = u64::from_le_bytes(field(2..10).try_into().expect("8 bytes"));
        let sequence = le16(field(10..12));
        let timestamp = u32::from_le_bytes(field(12..16).try_into().expect("4 bytes"));
        let length = usize::from(le16(field(16..18)));
        let mut payload = vec![0u8; length];
        if read_full(&mut self.input, &mut payload)? < length {
            return Ok(None);
        }
        Ok(Some(CapturedPacket {
            track,
            at_us,
            sequence,
            timestamp,
            payload,
        }))
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = io::Result<CapturedPacket>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_record().transpose()
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
