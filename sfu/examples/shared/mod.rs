//! What the SFU's load examples (`bench`, `listeners`) share.

/// A voice-like test signal: two tones under a syllable-rate envelope.
pub fn voice_signal(seconds: f64) -> Vec<i16> {
    let samples = (seconds * 48_000.0) as usize;
    (0..samples)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let envelope = 0.5 + 0.5 * (t * 4.0 * std::f64::consts::TAU).sin();
            let tone = (t * 220.0 * std::f64::consts::TAU).sin()
                + 0.5 * (t * 660.0 * std::f64::consts::TAU).sin();
            (envelope * tone * 6000.0) as i16
        })
        .collect()
}

/// utime + stime of process `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    use anyhow::Context as _;
    calls_participant::cpu::cpu_seconds(&pid.to_string())
        .with_context(|| format!("reading /proc/{pid}/stat"))
}

/// Resident memory of process `pid` in MiB (`VmRSS`), if it can be read.
pub fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
