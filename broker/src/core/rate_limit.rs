//! Token buckets with time as a parameter.
//!
//! A bucket holds its tokens in fixed point (1/1000 token) and the instant of its last
//! refill; the rate is passed in on every call so the per-connection state stays 24 bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Fixed-point scale: one token is this many units.
const UNIT: u64 = 1000;

/// `capacity` tokens refilled evenly over `period` (e.g. 10 per second, 30 per minute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Burst size and tokens per period.
    pub capacity: u32,
    /// The period over which `capacity` tokens are refilled.
    pub period: Duration,
}

/// A token bucket. Starts full.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    units: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens.
    pub fn new(capacity: u32, _period: Duration, now: Instant) -> Self {
        Self {
            units: u64::from(capacity) * UNIT,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let max = u64::from(rate.capacity) * UNIT;
        let elapsed = now.saturating_duration_since(self.last);
        let period_ns = rate.period.as_nanos().max(1);
        // Units earned: elapsed / period * capacity * UNIT, in u128 so long idle times cannot overflow.
        let earned = elapsed.as_nanos() * u128::from(max) / period_ns;
        self.units = u64::try_from(u128::from(self.units) + earned)
            .unwrap_or(u64::MAX)
            .min(max);
        self.last = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_acquire(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.units >= UNIT {
            self.units -= UNIT;
            return Ok(());
        }
        let missing = UNIT - self.units;
        let per_unit_ns =
            rate.period.as_nanos() / u128::from(u64::from(rate.capacity.max(1)) * UNIT);
        let wait = u64::try_from(per_unit_ns * u128::from(missing)).unwrap_or(u64::MAX);
        Err(Duration::from_nanos(wait.max(1)))
    }

    /// Whether the bucket is full (nothing to remember about its key).
    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.units >= u64::from(rate.capacity) * UNIT
    }
}

/// Buckets keyed by e.g. remote IP, with a bound on the number of keys.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter applying `rate` per key, remembering at most `max_keys` keys.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key`.
    ///
    /// When the table is full, keys whose buckets have refilled completely are forgotten
    /// first (they carry no state); if none has, the new key is refused for now, so an
    /// attacker cycling keys cannot grow memory or reset other keys' buckets.
    pub fn try_acquire(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.try_acquire(self.rate, now);
        }
        if self.buckets.len() >= self.max_keys {
            let rate = self.rate;
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            if self.buckets.len() >= self.max_keys {
                return Err(self.rate.period / self.rate.capacity.max(1));
            }
        }
        let mut bucket = TokenBucket::new(self.rate.capacity, self.rate.period, now);
        let result = bucket.try_acquire(self.rate, now);
        self.buckets.insert(key.clone(), bucket);
        result
    }

    /// The rate applied per key.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Changes the rate applied per key from now on (buckets keep their tokens, up to the
    /// new capacity at their next refill).
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    /// Whether `key` has a token, without taking it: `Err` says how long until it has.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.buckets.get(key) {
            None => Ok(()),
            Some(bucket) => {
                let mut probe = *bucket;
                probe.try_acquire(self.rate, now)
            }
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_SECOND: Rate = Rate {
        capacity: 10,
        period: Duration::from_secs(1),
    };

    #[test]
    fn allows_a_burst_of_capacity_then_refuses_with_retry_after() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(1), t0);
        for _ in 0..10 {
            assert!(bucket.try_acquire(TEN_PER_SECOND, t0).is_ok());
        }
        assert_eq!(
            bucket.try_acquire(TEN_PER_SECOND, t0),
            Err(Duration::from_millis(100))
        );
    }

    #[test]
    fn refills_evenly_over_the_period() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(1), t0);
        for _ in 0..10 {
            bucket.try_acquire(TEN_PER_SECOND, t0).unwrap();
        }
        assert!(
            bucket
                .try_acquire(TEN_PER_SECOND, t0 + Duration::from_millis(99))
                .is_err()
        );
        assert!(
            bucket
                .try_acquire(TEN_PER_SECOND, t0 + Duration::from_millis(100))
                .is_ok()
        );
    }

    #[test]
    fn never_holds_more_than_capacity_even_after_a_long_idle_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, Duration::from_secs(60), t0);
        let rate = Rate {
            capacity: 3,
            period: Duration::from_secs(60),
        };
        let later = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
        for _ in 0..3 {
            assert!(bucket.try_acquire(rate, later).is_ok());
        }
        assert!(bucket.try_acquire(rate, later).is_err());
    }

    #[test]
    fn capacity_one_allows_one_per_period() {
        let t0 = Instant::now();
        let rate = Rate {
            capacity: 1,
            period: Duration::from_secs(60),
        };
        let mut bucket = TokenBucket::new(1, rate.period, t0);
        assert!(bucket.try_acquire(rate, t0).is_ok());
        assert_eq!(bucket.try_acquire(rate, t0), Err(Duration::from_secs(60)));
        assert!(
            bucket
                .try_acquire(rate, t0 + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn bucket_is_compact() {
        assert!(std::mem::size_of::<TokenBucket>() <= 24);
    }

    #[test]
    fn keyed_limiter_never_grows_past_its_bound() {
        let t0 = Instant::now();
        let rate = Rate {
            capacity: 1,
            period: Duration::from_secs(60),
        };
        let mut limiter = KeyedLimiter::new(rate, 3);
        for key in 0..3 {
            assert!(limiter.try_acquire(&key, t0).is_ok());
        }
        assert!(limiter.try_acquire(&99, t0).is_err());
        assert_eq!(limiter.len(), 3);
        assert!(limiter.try_acquire(&0, t0).is_err());
        // Once the buckets have refilled they carry nothing and make room.
        assert!(
            limiter
                .try_acquire(&99, t0 + Duration::from_secs(60))
                .is_ok()
        );
        assert!(limiter.len() <= 3);
    }
}
