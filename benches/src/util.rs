//! Small things every run needs: a runtime, and the server's memory and descriptors.

use std::future::Future;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

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
