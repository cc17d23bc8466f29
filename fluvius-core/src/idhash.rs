//! A keyed hasher for the in-process maps keyed by ids (aggregate ids, command ids).
//!
//! The standard `RandomState` (SipHash-1-3) costs more than the map operation itself for a
//! 16-byte UUID, and the command path hashes ids several times per command (the aggregate's
//! turn, the aggregate cache, the memory store's streams and command records). This hasher
//! folds each 8-byte word into the state with one 64×64→128-bit multiply by a per-process
//! random key: a few nanoseconds per id, and, being keyed, ids chosen by a client cannot be
//! made to collide on purpose without knowing the key.

use std::hash::{BuildHasher, Hasher};

/// Builds [`IdHasher`]s with a key drawn once per map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHashing {
    seed: u64,
    key: u64,
}

impl IdHashing {
    /// A fresh random key.
    pub(crate) fn new() -> Self {
        let random = uuid::Uuid::new_v4().as_u128();
        Self {
            seed: random as u64,
            // An odd key, so the multiply never loses the low bit of the word.
            key: ((random >> 64) as u64) | 1,
        }
    }
}

impl Default for IdHashing {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for IdHashing {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.seed,
            key: self.key,
        }
    }
}

/// The hasher built by [`IdHashing`].
#[derive(Clone, Debug)]
pub(crate) struct IdHasher {
    state: u64,
    key: u64,
}

/// Multiply into 128 bits and fold the halves together.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl IdHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, self.key).rotate_left(23);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.state, self.key ^ 0x9E37_79B9_7F4A_7C15)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::AggregateId;

    /// Pearson's chi-square of `counts` against a uniform spread.
    fn chi_square(counts: &[u32], total: usize) -> f64 {
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&n| (f64::from(n) - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn equal_ids_hash_equal_and_distinct_ids_spread() {
        let hashing = IdHashing::new();
        let id = AggregateId::new();
        assert_eq!(hashing.hash_one(id), hashing.hash_one(id));
        // 100 000 fresh ids over 1 024 buckets, by the low bits (the turns' stripes) and by the
        // high bits (hashbrown's control bytes). For a uniform spread the chi-square has mean
        // 1 023 and standard deviation ~45: the bound is 10 deviations out, which a uniform
        // hash never reaches, and a hash that ignores part of the id (all ids of one
        // millisecond share their first 48 bits) far exceeds.
        const IDS: usize = 100_000;
        let (mut low, mut high) = (vec![0u32; 1024], vec![0u32; 1024]);
        for _ in 0..IDS {
            let h = hashing.hash_one(AggregateId::new());
            low[(h % 1024) as usize] += 1;
            high[(h >> 54) as usize] += 1;
        }
        let bound = 1023.0 + 10.0 * (2.0f64 * 1023.0).sqrt();
        assert!(
            chi_square(&low, IDS) < bound,
            "low bits: chi-square {}",
            chi_square(&low, IDS)
        );
        assert!(
            chi_square(&high, IDS) < bound,
            "high bits: chi-square {}",
            chi_square(&high, IDS)
        );
    }

    #[test]
    fn sequential_ids_do_not_collide() {
        // Ids differing only in a counter (as a client might pick them) still hash apart.
        let hashing = IdHashing::new();
        let hashes: HashSet<u64> = (0..100_000u128)
            .map(|n| hashing.hash_one(uuid::Uuid::from_u128(n)))
            .collect();
        assert_eq!(hashes.len(), 100_000);
    }

    #[test]
    fn keys_differ_between_hashers() {
        let id = AggregateId::new();
        assert_ne!(IdHashing::new().hash_one(id), IdHashing::new().hash_one(id));
    }

    #[test]
    fn strings_of_different_lengths_differ() {
        let hashing = IdHashing::new();
        assert_ne!(
            hashing.hash_one(b"ab".as_slice()),
            hashing.hash_one(b"ab\0".as_slice())
        );
    }
}
