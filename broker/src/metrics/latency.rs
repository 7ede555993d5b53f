//! Delivery latency: a histogram with logarithmic buckets, written by one shard's writers
//! and summed by readers, and the quantiles read from it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of [`LatencyHistogram`]: four per doubling from 16 µs, the last one open.
pub const LATENCY_BUCKETS: usize = 96;

/// A latency histogram with logarithmic buckets (about 19% wide), written by one shard with
/// relaxed atomics and summed by readers. Bucket `i` holds latencies up to
/// [`latency_bucket_bound_us`]`(i)`; the last one everything longer (over about 70 s).
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    /// Counts `n` samples of `latency`.
    pub fn record(&self, latency: std::time::Duration, n: u64) {
        let us = latency.as_micros().max(1) as f64;
        // Bucket i's upper bound is 16 µs · 2^(i/4).
        let i = (4.0 * (us / 16.0).log2()).ceil().max(0.0) as usize;
        self.buckets[i.min(LATENCY_BUCKETS - 1)].fetch_add(n, Ordering::Relaxed);
    }

    /// The counts, bucket by bucket.
    pub fn counts(&self) -> [u64; LATENCY_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// The upper bound of latency bucket `i`, in microseconds.
pub fn latency_bucket_bound_us(i: usize) -> u64 {
    (16.0 * 2f64.powf(i as f64 / 4.0)).round() as u64
}

/// The `q` quantile (0..1) of bucket counts, as its bucket's upper bound in microseconds;
/// `None` without samples.
pub fn latency_quantile_us(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(latency_bucket_bound_us(i));
        }
    }
    Some(latency_bucket_bound_us(counts.len() - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latencies_land_in_buckets_about_a_fifth_wide() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(5), 1);
        h.record(Duration::from_millis(10), 98);
        h.record(Duration::from_secs(600), 1);
        let counts = h.counts();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!(latency_quantile_us(&counts, 0.0), Some(16));
        let p50 = latency_quantile_us(&counts, 0.5).unwrap();
        assert!((10_000..=12_000).contains(&p50), "{p50}");
        assert_eq!(
            latency_quantile_us(&counts, 1.0),
            Some(latency_bucket_bound_us(LATENCY_BUCKETS - 1))
        );
        assert_eq!(latency_quantile_us(&[0; 4], 0.5), None);
        for i in 1..LATENCY_BUCKETS {
            let (lo, hi) = (latency_bucket_bound_us(i - 1), latency_bucket_bound_us(i));
            assert!(hi > lo && (hi as f64) < lo as f64 * 1.2 + 1.0, "{lo} {hi}");
        }
    }
}
