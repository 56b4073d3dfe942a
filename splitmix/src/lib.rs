//! SplitMix64 (Steele, Lea and Flood, 2014; the variant Vigna recommends for seeding): a
//! 64-bit state advanced by a fixed odd increment, each step's output a bijective mix of the
//! state. The workspace's crates share this one implementation: loadgen's generator draws each
//! event's key, priority and payload from it, `reactive`'s retries their jitter, its workers
//! spread keys over workers with it, and sinkd its injected failures.
//!
//! ```
//! // The same state always gives the same value: seeded runs repeat exactly.
//! assert_eq!(splitmix::next(0), 0xE220_A839_7B1D_CDAF);
//! let mut state = 42;
//! let a = splitmix::step(&mut state);
//! let b = splitmix::step(&mut state);
//! assert_ne!(a, b);
//! assert!(splitmix::unit(a) < 1.0);
//! ```

#![no_std]

/// The increment: 2^64 divided by the golden ratio, made odd.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The output of the generator whose state is `state` before its step: advances the state by
/// [`GAMMA`] and mixes it. A pure function, so draws can be made at random positions (the
/// `i`-th value of a stream seeded `s` is `next(s + i * GAMMA)`).
#[inline]
pub const fn next(state: u64) -> u64 {
    let mut z = state.wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One step of the sequential generator: the next value, and the state advanced.
#[inline]
pub fn step(state: &mut u64) -> u64 {
    let out = next(*state);
    *state = state.wrapping_add(GAMMA);
    out
}

/// A draw as a number in `[0, 1)` (its top 53 bits).
#[inline]
pub fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // splitmix64.c seeded with 1234567: its first three outputs.
        let mut s = 1_234_567;
        assert_eq!(step(&mut s), 6_457_827_717_110_365_317);
        assert_eq!(step(&mut s), 3_203_168_211_198_807_973);
        assert_eq!(step(&mut s), 9_817_491_932_198_370_423);
    }

    #[test]
    fn unit_draws_stay_in_range() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
    }
}
