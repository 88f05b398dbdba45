//! recorder-bench: how much CPU and memory a recording costs, per profile, with and without a screen share.
//!
//! Records synthetic calls as fast as the machine allows: two voices taking turns, sent as 20 ms Opus packets,
//! and optionally a 1920×1080 VP8 screen share at 15 fps (fixed bars and a block that moves every frame). The
//! measurement covers what the job does with received media: Opus and VP8 decode, mixing, composing, H.264/AAC
//! encoding and MP4 muxing (not WebRTC transport). Each configuration runs in its own child process so peak
//! memory is per configuration. Prints a Markdown table of CPU-seconds per recorded minute, real-time factor
//! and peak RSS.
//!
//! Usage: `recorder-bench [--seconds N] [--profiles low,medium,high] [--out DIR]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use calls_recorder::test_signal::{bar_pattern, tone};
use calls_recorder::{Profile, ProfileName, Recording};

const PACKET: Duration = Duration::from_millis(20);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        return run_one(&args[1..]);
    }
    let mut seconds = 60u64;
    let mut profiles = ProfileName::ALL.to_vec();
    let mut out_dir = std::env::temp_dir();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds takes a whole number")?,
            "--profiles" => {
                profiles = value
                    .split(',')
                    .map(|name| name.parse::<ProfileName>())
                    .collect::<Result<_, _>>()?
            }
            "--out" => out_dir = PathBuf::from(value),
            other => bail!("unknown argument {other}; usage: recorder-bench [--seconds N] [--profiles low,medium,high] [--out DIR]"),
        }
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    println!("| profile | share | recorded s | wall s | x real time | CPU-s per recorded min | cores while recording live | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for profile in profiles {
        for share in [false, true] {
            let file = out_dir.join(format!("recorder-bench-{profile}-{share}.mp4"));
            let output = Command::new(&exe)
                .args([
                    "--one",
                    profile.as_str(),
                    &share.to_string(),
                    &seconds.to_string(),
                ])
                .arg(&file)
                .output()
                .context("running a benchmark child")?;
            if !output.status.success() {
                bail!(
                    "{profile} share={share} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let line = String::from_utf8_lossy(&output.stdout);
            let fields: Vec<f64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            let [wall, cpu, rss_kib] = fields[..] else {
                bail!("unexpected child output {line:?}");
            };
            let recorded = seconds as f64;
            println!(
                "| {profile} | {} | {recorded:.0} | {wall:.1} | {:.1} | {:.1} | {:.3} | {:.0} |",
                if share { "yes" } else { "no" },
                recorded / wall,
                cpu / (recorded / 60.0),
                cpu / recorded,
                rss_kib / 1024.0
            );
            let _ = std::fs::remove_file(&file);
        }
    }
    Ok(())
}

/// Child: records one configuration and prints `wall_seconds cpu_seconds peak_rss_kib`.
fn run_one(args: &[String]) -> anyhow::Result<()> {
    let [profile, share, seconds, path] = args else {
        bail!("--one takes: profile share seconds path");
    };
    let profile = Profile::named(profile.parse()?);
    let share: bool = share.parse().context("share is true or false")?;
    let end = Duration::from_secs(seconds.parse().context("seconds is a whole number")?);
    // What arrives over the network is prepared up front; decoding it is part of the measurement.
    let input = Input::prepare(share)?;
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    record(Path::new(path), &profile, &input, end)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    println!("{wall:.3} {cpu:.3} {}", peak_rss_kib()?);
    Ok(())
}

/// Encoded media as the SFU would deliver it: 20 ms Opus packets per voice and a VP8 screen share.
struct Input {
    /// Three seconds of speech-band tone per voice, looped.
    voices: [(&'static str, Vec<Vec<u8>>); 2],
    /// Four seconds of a 1920×1080 share at 15 fps (keyframe first), looped.
    share: Vec<Vec<u8>>,
}

impl Input {
    fn prepare(share: bool) -> anyhow::Result<Input> {
        let voice = |frequency: f64| -> anyhow::Result<Vec<Vec<u8>>> {
            let mut encoder =
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
            encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
            (0..150u64)
                .map(|index| Ok(encoder.encode_vec(&tone(frequency, 0.3, index * 960, 960), 1500)?))
                .collect()
        };
        Ok(Input {
            voices: [("alice", voice(440.0)?), ("bob", voice(620.0)?)],
            share: if share { encode_share()? } else { Vec::new() },
        })
    }
}

/// VP8-encodes the moving bar pattern with libvpx (realtime settings, like a browser).
fn encode_share() -> anyhow::Result<Vec<Vec<u8>>> {
    use ffmpeg_next::{codec, encoder, format, frame, Dictionary, Packet};
    ffmpeg_next::init()?;
    ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Warning);
    let vpx = encoder::find_by_name("libvpx").context("libvpx is missing from ffmpeg")?;
    let mut context = codec::context::Context::new_with_codec(vpx)
        .encoder()
        .video()?;
    context.set_width(1920);
    context.set_height(1080);
    context.set_format(format::Pixel::YUV420P);
    context.set_time_base((1, 15));
    context.set_bit_rate(1_500_000);
    context.set_gop(60);
    let mut options = Dictionary::new();
    options.set("deadline", "realtime");
    options.set("cpu-used", "8");
    let mut vp8 = context.open_with(options)?;
    let mut packets = Vec::new();
    let mut packet = Packet::empty();
    for index in 0..60u64 {
        let mut picture = frame::Video::new(format::Pixel::YUV420P, 1920, 1080);
        calls_recorder::compositor::copy_into_ffmpeg(&bar_pattern(1920, 1080, index), &mut picture);
        picture.set_pts(Some(index as i64));
        vp8.send_frame(&picture)?;
        while vp8.receive_packet(&mut packet).is_ok() {
            packets.push(packet.data().unwrap_or_default().to_vec());
        }
    }
    vp8.send_eof()?;
    while vp8.receive_packet(&mut packet).is_ok() {
        packets.push(packet.data().unwrap_or_default().to_vec());
    }
    Ok(packets)
}

/// Two voices taking turns (3 s each, then 2 s of silence) and, if given, a 15 fps share for the whole call:
/// Opus and VP8 are decoded here, as the recorder's job does.
fn record(path: &Path, profile: &Profile, input: &Input, end: Duration) -> anyhow::Result<()> {
    use ffmpeg_next::{codec, decoder, frame, Packet};
    let mut recording = Recording::create(path, profile)?;
    let mut opus_decoders = [
        opus::Decoder::new(48_000, opus::Channels::Mono)?,
        opus::Decoder::new(48_000, opus::Channels::Mono)?,
    ];
    let mut vp8 = codec::context::Context::new_with_codec(
        decoder::find(codec::Id::VP8).context("the vp8 decoder is missing from ffmpeg")?,
    )
    .decoder()
    .video()?;
    let mut decoded = frame::Video::empty();
    let mut pcm = vec![0i16; 960];
    let share_interval = Duration::from_secs(1) / 15;
    let mut next_share = Duration::ZERO;
    let mut share_index = 0usize;
    let mut now = Duration::ZERO;
    let mut packet_index = 0usize;
    while now < end {
        let phase = now.as_millis() % 8000;
        let speaker = match phase {
            0..3000 => Some(0),
            3000..6000 => Some(1),
            _ => None,
        };
        if let Some(voice) = speaker {
            let (name, packets) = &input.voices[voice];
            let packet = &packets[packet_index % packets.len()];
            let samples = opus_decoders[voice].decode(packet, &mut pcm, false)?;
            recording.handle_audio(name, now, &pcm[..samples])?;
        }
        while !input.share.is_empty() && next_share <= now {
            let packet = Packet::copy(&input.share[share_index % input.share.len()]);
            vp8.send_packet(&packet)?;
            while vp8.receive_frame(&mut decoded).is_ok() {
                let frame = calls_recorder::compositor::copy_from_ffmpeg(&decoded)?;
                recording.handle_video("carol", next_share, frame);
            }
            share_index += 1;
            next_share += share_interval;
        }
        recording.tick(now)?;
        now += PACKET;
        packet_index += 1;
    }
    recording.finish(end)?;
    Ok(())
}

/// User plus system CPU time of this process (all threads), from /proc/self/stat in USER_HZ (100 on Linux).
fn cpu_seconds() -> anyhow::Result<f64> {
    calls_participant::cpu::cpu_seconds("self").context("reading /proc/self/stat")
}

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?)
}
