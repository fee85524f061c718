//! How much memory the machine can still give, so that KV caches are checked against it before
//! they are allocated rather than failing (or being killed) halfway through.

use std::path::Path;

/// Bytes that can be allocated without swapping: Linux's `MemAvailable`, or less when this
/// process's control group (v2) has a memory limit. `None` when the system does not say.
pub fn available() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_available(&text));
    let group = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|text| group_room(&text));
    match (machine, group) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|line| line.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// What this process's control group may still allocate: its `memory.max` less its
/// `memory.current`, or `None` without a limit. `cgroup` is /proc/self/cgroup's text.
fn group_room(cgroup: &str) -> Option<u64> {
    // The v2 hierarchy is the line `0::/path`.
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok()?.trim().parse::<u64>().ok();
    // `memory.max` reads "max" when there is no limit, which does not parse.
    Some(read("memory.max")?.saturating_sub(read("memory.current")?))
}

/// `bytes` for people: `3.6 GiB`, `120 MiB`, `16 KiB`.
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = KIB * 1024.0;
    const GIB: f64 = MIB * 1024.0;
    match bytes as f64 {
        b if b >= GIB => format!("{:.1} GiB", b / GIB),
        b if b >= MIB => format!("{:.0} MiB", b / MIB),
        b => format!("{:.0} KiB", b / KIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if cfg!(target_os = "linux") {
            assert!(available().is_some_and(|bytes| bytes > 0));
        }
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human(3_865_470_566), "3.6 GiB");
        assert_eq!(human(120 << 20), "120 MiB");
        assert_eq!(human(16 << 10), "16 KiB");
    }
}
