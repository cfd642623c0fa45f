//! Least recently used first.

use super::{Candidate, Policy};

/// Evicts the copy used longest ago.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lru;

impl Policy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn rank(&self, c: &Candidate, _now: u64) -> f64 {
        c.last_use as f64
    }
}
