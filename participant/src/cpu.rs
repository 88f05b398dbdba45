//! CPU time of a process as Linux reports it in `/proc/<pid>/stat`: what the load tools, benches and
//! tests that measure the cost of participants (or of the SFU they call) read.

/// Clock ticks per second of the times in `/proc/<pid>/stat` (Linux's `USER_HZ`, 100 on every
/// architecture we run on, whatever the kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds (all threads) of process `pid` (a number, or `self` for this
/// process); `None` when it is gone or its stat line cannot be read.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, seconds)| seconds)
}

/// The command name and user plus system CPU seconds from a `/proc/.../stat` line.
pub fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    // The command name may hold spaces and parentheses; the fields after its last `)` are plain:
    // state is field 3 of the line, utime and stime are fields 14 and 15.
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_gives_the_name_and_cpu() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194368 10 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("a (b) c".to_owned(), 1.75)));
        assert_eq!(parse_stat("42 (short) S 1"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spent = cpu_seconds("self").expect("/proc/self/stat is readable");
        assert!(spent >= 0.0);
    }
}
