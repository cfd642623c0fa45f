//! By class and priority, then least recently used.

use super::{Candidate, Policy};
use crate::object::ObjectClass;

/// Evicts the class with the lowest weight first, then the lowest object
/// priority, then the least recently used. The defaults evict optimizer
/// state (touched once a step) first and experts (reused every step) last.
#[derive(Debug, Clone, Copy)]
pub struct ClassPriority {
    /// Weight of [`ObjectClass::Expert`].
    pub expert: u8,
    /// Weight of [`ObjectClass::OptimizerState`].
    pub optimizer_state: u8,
    /// Weight of [`ObjectClass::KvBlock`].
    pub kv_block: u8,
    /// Weight of [`ObjectClass::Other`].
    pub other: u8,
}

impl Default for ClassPriority {
    fn default() -> Self {
        ClassPriority { optimizer_state: 0, other: 1, kv_block: 2, expert: 3 }
    }
}

impl ClassPriority {
    /// The weight of `class`.
    pub fn weight(&self, class: ObjectClass) -> u8 {
        match class {
            ObjectClass::Expert => self.expert,
            ObjectClass::OptimizerState => self.optimizer_state,
            ObjectClass::KvBlock => self.kv_block,
            ObjectClass::Other => self.other,
        }
    }
}

/// Clock values above this share one recency rank (2^36 uses is far beyond
/// any run); keeps the combined rank exact in an f64.
const RECENCY_LIMIT: u64 = 1 << 36;

impl Policy for ClassPriority {
    fn name(&self) -> &'static str {
        "class"
    }

    fn rank(&self, c: &Candidate, _now: u64) -> f64 {
        let level = u64::from(self.weight(c.class)) * 256 + u64::from(c.priority);
        (level * RECENCY_LIMIT + c.last_use.min(RECENCY_LIMIT - 1)) as f64
    }
}
