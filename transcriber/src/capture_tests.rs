use super::*;
use crate::capture_file::{write_packet, CaptureReader, CapturedPacket, MAGIC};

fn rtp_packet(sequence: u16, timestamp: u32, payload: &[u8]) -> rtp::Packet {
    let mut packet = rtp::Packet::default();
    packet.header.sequence_number = sequence;
    packet.header.timestamp = timestamp;
    packet.payload = payload.to_vec().into();
    packet
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn sink() -> CaptureSink {
    let (queue, _rx) = sync_channel(1);
    CaptureSink::new(
        0,
        0,
        tokio::time::Instant::now(),
        CaptureSender {
            queue,
            counters: Arc::default(),
        },
    )
}

fn packet(track: u16, at_ms: u64, sequence: u16) -> CapturedPacket {
    CapturedPacket {
        track,
        at_us: at_ms * 1000,
        sequence,
        timestamp: u32::from(sequence) * 960,
        payload: vec![sequence as u8; 3 + usize::from(sequence % 5)],
    }
}

#[test]
fn packets_are_placed_by_rtp_spacing_despite_jitter() {
    let mut sink = sink();
    let at = |sink: &mut CaptureSink, seq: u16, arrival: u64| {
        sink.place(
            &rtp_packet(seq, 1_000 + u32::from(seq) * 960, b"x"),
            ms(arrival),
        )
        .unwrap()
        .at_us
            / 1000
    };
    assert_eq!(at(&mut sink, 0, 5_000), 5_000, "first packet at arrival");
    assert_eq!(
        at(&mut sink, 1, 5_090),
        5_020,
        "late by 70 ms: keeps its rtp place"
    );
    assert_eq!(at(&mut sink, 3, 5_091), 5_060, "reordered: 3 before 2");
    assert_eq!(at(&mut sink, 2, 5_092), 5_040);
}

#[test]
fn a_pause_in_sending_reanchors_at_arrival() {
    // A sender that stops sending (mute, silence) resumes with timestamps right after the last packet;
    // its audio belongs at the time it arrives, not 20 ms after the last one.
    let mut sink = sink();
    sink.place(&rtp_packet(0, 0, b"x"), ms(1_000)).unwrap();
    sink.place(&rtp_packet(1, 960, b"x"), ms(1_020)).unwrap();
    let resumed = sink.place(&rtp_packet(2, 1_920, b"x"), ms(4_000)).unwrap();
    assert_eq!(resumed.at_us, 4_000_000);
    let next = sink.place(&rtp_packet(3, 2_880, b"x"), ms(4_021)).unwrap();
    assert_eq!(
        next.at_us, 4_020_000,
        "rtp spacing again after the re-anchor"
    );
}

#[test]
fn padding_only_packets_are_not_captured() {
    let mut sink = sink();
    assert!(sink.place(&rtp_packet(0, 0, b""), ms(0)).is_none());
}

#[test]
fn speakers_are_sessions_and_reconnects_are_new_tracks() {
    let mut speakers = Speakers::default();
    assert_eq!(speakers.handle_track("s1", "Alice"), (0, 0));
    assert_eq!(
        speakers.handle_track("s2", "Alice"),
        (1, 0),
        "same name, other person"
    );
    assert_eq!(
        speakers.handle_track("s1", "Alice"),
        (0, 1),
        "a re-published track"
    );
    let list = speakers.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[1].name.as_str(), list[1].session.as_str()),
        ("Alice", "s2")
    );
}

#[test]
fn records_round_trip_and_a_cut_record_ends_the_file() {
    let packets: Vec<CapturedPacket> = (0..20)
        .map(|i| packet(i % 2, 20 * u64::from(i), i))
        .collect();
    let mut bytes = MAGIC.to_vec();
    for packet in &packets {
        write_packet(&mut bytes, packet).unwrap();
    }
    let read: Vec<CapturedPacket> = CaptureReader::new(&bytes[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(read, packets);
    // The job was killed in the middle of a record: what was whole is still read.
    let cut = &bytes[..bytes.len() - 2];
    let read = CaptureReader::new(cut).unwrap().count();
    assert_eq!(read, 19);
    assert!(
        CaptureReader::new(&b"RIFF0000"[..]).is_err(),
        "not a capture file"
    );
}

#[test]
fn the_writer_thread_writes_one_file_per_speaker() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start(dir.path(), 64).unwrap();
    let sender = capture.sender();
    for i in 0..10u16 {
        sender.send(usize::from(i % 2) * 2, packet(0, u64::from(i) * 20, i));
    }
    drop(sender);
    let summary = capture.finish().unwrap();
    assert_eq!(summary.dropped, 0);
    assert_eq!(summary.files.len(), 3);
    assert!(summary.files[1].is_none(), "speaker 1 sent nothing");
    let (path, count) = summary.files[2].clone().unwrap();
    assert_eq!(count, 5);
    let sequences: Vec<u16> = CaptureReader::open(&path)
        .unwrap()
        .map(|p| p.unwrap().sequence)
        .collect();
    assert_eq!(sequences, [1, 3, 5, 7, 9]);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let (queue, rx) = sync_channel(2);
    let sender = CaptureSender {
        queue,
        counters: Arc::default(),
    };
    for i in 0..5 {
        sender.send(0, packet(0, 0, i));
    }
    assert_eq!(sender.counters.dropped.load(Ordering::Relaxed), 3);
    assert_eq!(rx.try_iter().count(), 2);
}
