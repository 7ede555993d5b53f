//! Small things every run needs: a runtime, and the server's memory and descriptors.

use std::future::Future;

use hdrhistogram::Histogram;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::report::Latency;

/// Runs `fut` on a monoio runtime: io_uring where the kernel has it, epoll otherwise.
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    match RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .with_entries(8192)
        .build()
    {
        Ok(mut rt) => Ok(rt.block_on(fut)),
        Err(_) => Ok(RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(fut)),
    }
}

pub use ringcast::metrics::process::{open_fds, rss_kib};

/// CPU time a process has used (user + system), in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The fields of a `stat` line from field 3 (state) on: the command name before them may
/// hold spaces and parentheses, so they start after its last `)`.
fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.get(stat.rfind(')')? + 2..)?.split_whitespace())
}

/// utime + stime of a `stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // utime and stime are fields 14 and 15.
    let mut fields = stat_fields(stat)?.skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// Page faults a process has taken (minor + major: every first touch of a page, and reads
/// from disk), from `/proc/PID/stat`; with [`cpu_seconds`] it shows whether a run was spent
/// growing the server's memory.
pub fn page_faults(pid: u32) -> Option<u64> {
    stat_page_faults(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// minflt + majflt (fields 10 and 12) of a `stat` line.
fn stat_page_faults(stat: &str) -> Option<u64> {
    let mut fields = stat_fields(stat)?.skip(7);
    let minor: u64 = fields.next()?.parse().ok()?;
    let major: u64 = fields.nth(1)?.parse().ok()?;
    Some(minor + major)
}

/// Page faults of every process in `pids`, summed; `None` if any is unreadable (or there
/// are none).
pub fn total_page_faults(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| page_faults(pid)).sum()
}

/// CPU time used by the threads of `pid` named `name` (the kernel keeps a thread name's
/// first 15 bytes, as `/proc/PID/task/*/comm` shows); `None` if there is no such thread.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> Option<f64> {
    let name = name.get(..15).unwrap_or(name);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = None;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            *total.get_or_insert(0.0) += stat_cpu_seconds(&stat)?;
        }
    }
    total
}

/// CPU time used by every process in `pids`, summed; `None` if any is unreadable (or
/// there are none).
pub fn total_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A latency histogram in microseconds, 1 µs .. 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// The percentiles reports show.
pub fn percentiles(h: &Histogram<u64>) -> Latency {
    Latency {
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_minor_and_major_faults_after_a_command_name_with_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt ...
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 1200 7 34 0 15 5 0 0 20 0";
        assert_eq!(super::stat_page_faults(stat), Some(1234));
        assert_eq!(super::stat_page_faults("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let spent = super::cpu_seconds(std::process::id()).expect("own /proc/PID/stat");
        assert!(spent >= 0.0);
        assert_eq!(super::cpu_seconds(u32::MAX), None);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        // The thread names itself when it starts, so wait until it has.
        let named = std::thread::Builder::new()
            .name("ringcast-long-thread-name".into())
            .spawn(move || {
                let _ = ready_tx.send(());
                rx.recv()
            })
            .unwrap();
        ready.recv().unwrap();
        let pid = std::process::id();
        assert!(super::thread_cpu_seconds(pid, "ringcast-long-thread-name").unwrap() >= 0.0);
        assert_eq!(super::thread_cpu_seconds(pid, "no-such-thread"), None);
        drop(tx);
        let _ = named.join();
        assert_eq!(super::total_cpu_seconds(&[]), None);
        assert_eq!(super::total_page_faults(&[]), None);
        assert!(super::total_page_faults(&[std::process::id()]).is_some_and(|f| f > 0));
        assert!(super::total_cpu_seconds(&[std::process::id()]).is_some());
    }
}
