//! A hash map keyed by MPI handles (as `u64`) with a cheap hash.
//!
//! Handles are pointers (Open MPI) or small integers (MPICH) chosen by the
//! library, not by an adversary, so the standard library's DoS-resistant
//! SipHash buys nothing on the per-message path; one multiply (Fibonacci
//! hashing) spreads both kinds of handle over the table.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` from handle to `V` using [`HandleHasher`].
pub type HandleMap<V> = HashMap<u64, V, BuildHasherDefault<HandleHasher>>;

/// Hashes one `u64` key with a multiply; other input folds in byte by byte.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        // Pointer handles share their low (alignment) and high bits; the
        // multiply moves the varying middle bits into the top, which
        // hashbrown uses for its control bytes, and xor-shift brings them
        // down for the bucket index.
        let h = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn map_works_for_pointer_and_integer_handles() {
        let mut m: HandleMap<u32> = HandleMap::default();
        for i in 0..1000u64 {
            m.insert(0x5555_0000_1000 + i * 64, i as u32);
            m.insert(0x4c00_0000 + i, i as u32 + 1);
        }
        assert_eq!(m.len(), 2000);
        assert_eq!(m.get(&(0x5555_0000_1000 + 7 * 64)), Some(&7));
        assert_eq!(m.get(&(0x4c00_0000 + 7)), Some(&8));
    }

    #[test]
    fn aligned_pointers_spread_over_low_bits() {
        let b = BuildHasherDefault::<HandleHasher>::default();
        let low: HashSet<u64> = (0..256u64).map(|i| b.hash_one(0x7f00_0000_0000 + i * 256) & 255).collect();
        assert!(low.len() > 128, "only {} of 256 low-byte values used", low.len());
    }
}
