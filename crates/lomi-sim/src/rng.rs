//! The simulator's seeded generator: `rand_xoshiro`'s xoshiro256++, seeded through
//! SplitMix64 (`SeedableRng::seed_from_u64`), wrapped with the few draws the data needs.
//!
//! The simulator promises "same seed, same data". xoshiro256++ and its SplitMix64
//! seeding are fixed, published algorithms (a new rand_xoshiro cannot change their
//! output), unlike `rand`'s distributions, whose sampling may change between minor
//! versions; so the draws below (`below`, `unit`, `weighted`, `geometric`,
//! `distinct`) stay spelled out over `next_u64`. Only integer arithmetic and IEEE
//! operations that are exactly rounded (multiplication, division) are used on the
//! results, so the output does not depend on the platform's libm either. A test pins
//! the first value of seed 42, which the hand-written generator this replaced also gave.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};

/// SplitMix64's output function: a bijection on `u64`.
///
/// Being a bijection matters: ids are made as `mix64(sequence ^ salt)`, which gives
/// random-looking ids that can never collide. (`rand_xoshiro::SplitMix64` is a
/// generator, not this function of one value.)
pub(super) fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The simulator's generator (see the module doc).
#[derive(Clone, Debug)]
pub(super) struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0). Uses the multiply-high method; its bias is
    /// below 2^-40 for every range used here, far below anything a test could notice.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a collection of length `n`.
    pub(super) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add(self.below(span) as i64)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Picks from `(item, weight)` pairs proportionally to the weights.
    pub(super) fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            let weight = u64::from(*weight);
            if roll < weight {
                return item;
            }
            roll -= weight;
        }
        &items[items.len() - 1].0
    }

    /// A geometric count with the given mean: the number of successes before the first
    /// failure, each trial succeeding with probability `mean / (1 + mean)`. Skewed like real
    /// activity (many small counts, a long tail) and computed without `ln`/`exp`.
    pub(super) fn geometric(&mut self, mean: f64) -> u32 {
        if mean.is_nan() || mean <= 0.0 {
            return 0;
        }
        let q = mean / (1.0 + mean);
        let mut n = 0;
        while n < 100_000 && self.chance(q) {
            n += 1;
        }
        n
    }

    /// `k` distinct indices from `0..n` (fewer when `n < k`), in random order.
    pub(super) fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        if k.saturating_mul(2) >= n {
            // Dense: partial Fisher-Yates over all indices.
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = i + self.index(n - i);
                all.swap(i, j);
            }
            all.truncate(k);
            all
        } else {
            // Sparse: rejection sampling; at most half the range is taken, so each draw
            // succeeds with probability >= 1/2.
            let mut seen = std::collections::HashSet::with_capacity(k);
            let mut out = Vec::with_capacity(k);
            while out.len() < k {
                let i = self.index(n);
                if seen.insert(i) {
                    out.push(i);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 10th output of seed 42 from the hand-written xoshiro256++ this crate replaced.
    const TENTH_OF_SEED_42: u64 = 0xeeef_d632_19b4_a0d4;

    #[test]
    fn same_seed_same_stream_and_known_first_value() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let first = a.next_u64();
        assert_eq!(first, b.next_u64());
        // Pinned so that an accidental change of the algorithm (and so of every generated
        // data set) is caught here rather than by a confused mirror test.
        assert_eq!(first, 0xd076_4d4f_4476_689f, "got {first:#x}");
        assert_ne!(Rng::new(43).next_u64(), first);
        // Further along too: the crate's stream is the hand-written one it replaced.
        let tenth = (0..9).map(|_| a.next_u64()).last().unwrap();
        assert_eq!(tenth, TENTH_OF_SEED_42, "got {tenth:#x}");
    }

    #[test]
    fn mix64_is_injective_on_a_sample() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(mix64).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.range(-3, 3);
            assert!((-3..=3).contains(&v));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(r.below(0), 0);
        let d = r.distinct(10, 4);
        assert_eq!(d.len(), 4);
        let d = r.distinct(1000, 10);
        let set: std::collections::HashSet<_> = d.iter().collect();
        assert_eq!(set.len(), 10);
        assert_eq!(r.distinct(3, 10).len(), 3);
    }

    #[test]
    fn geometric_has_the_requested_mean() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let total: u64 = (0..n).map(|_| u64::from(r.geometric(4.0))).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 4.0).abs() < 0.1, "mean {mean}");
        assert_eq!(r.geometric(0.0), 0);
    }
}
