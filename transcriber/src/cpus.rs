//! How many CPUs this process may use: its cgroup's CPU quota (`cpu.max`, what `docker run --cpus` and the
//! offloader's per-job CPU limit set), else the CPUs it may run on. Whisper's thread count follows it: more
//! threads than the quota only make ggml's threads wait for each other at every barrier.

use std::path::Path;

/// The CPUs this process may use, at least 1: the cgroup v2 quota rounded up, at most the CPUs in its
/// affinity mask.
pub fn available() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let quota = std::fs::read_to_string(Path::new("/sys/fs/cgroup/cpu.max"))
        .ok()
        .and_then(|text| quota_cpus(&text));
    quota.map_or(cpus, |quota| quota.min(cpus)).max(1)
}

/// The CPUs a cgroup v2 `cpu.max` line allows (`"150000 100000"` → 2, rounded up); `None` for `max`
/// (no limit) or a line it cannot read.
pub fn quota_cpus(cpu_max: &str) -> Option<u32> {
    let mut fields = cpu_max.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if period == 0 {
        return None;
    }
    Some(quota.div_ceil(period).clamp(1, u64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_rounded_up_to_whole_cpus() {
        assert_eq!(quota_cpus("200000 100000\n"), Some(2));
        assert_eq!(quota_cpus("150000 100000"), Some(2));
        assert_eq!(quota_cpus("50000 100000"), Some(1));
        assert_eq!(quota_cpus("max 100000"), None);
        assert_eq!(quota_cpus(""), None);
        assert!(available() >= 1);
    }
}
