//! Randomness without a global generator: the shell seeds each state machine through its
//! options (as quinn-proto does), so the core stays deterministic under test.

/// SplitMix64 (Steele, Lea and Flood): a tiny generator whose every output is a strong mix
/// of its seed, enough for ids that must not be guessable across restarts. Not for keys.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is below 2⁻³⁴ for the bounds
    /// used here (under 2³⁰).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_reference_one() {
        // The first outputs for seed 1234567, from the reference implementation.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn nearby_seeds_give_unrelated_streams_and_bounds_hold() {
        let a = SplitMix64::new(0).next_u64();
        let b = SplitMix64::new(1).next_u64();
        assert_ne!(a, b);
        assert!((a ^ b).count_ones() > 16);
        let mut rng = SplitMix64::new(7);
        assert!((0..1000).all(|_| rng.below(10) < 10));
    }
}
