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
