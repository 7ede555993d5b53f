//! What Linux's `/proc` says about a process: for `/metrics`, and for tests and benchmarks
//! that watch a server from outside.

/// Resident memory (`VmRSS` in `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Open file descriptors (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(super::rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(super::open_fds(me).is_some_and(|n| n >= 3));
        assert_eq!(super::rss_kib(u32::MAX), None);
    }
}
