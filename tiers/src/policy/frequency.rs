//! Least frequently used first, with ageing so that once-hot copies cool.

use super::{Candidate, Policy};

/// Evicts the copy with the fewest uses, each use's weight halving every
/// `half_life` ticks of the pager's clock since the copy's last use; ties go
/// to the least recently used.
#[derive(Debug, Clone, Copy)]
pub struct FrequencyAware {
    /// Ticks after which a copy's use count weighs half.
    pub half_life: u64,
}

impl Default for FrequencyAware {
    fn default() -> Self {
        FrequencyAware { half_life: 1024 }
    }
}

impl Policy for FrequencyAware {
    fn name(&self) -> &'static str {
        "frequency"
    }

    fn rank(&self, c: &Candidate, now: u64) -> f64 {
        let age = now.saturating_sub(c.last_use) as f64;
        let decay = (-age / self.half_life.max(1) as f64 * std::f64::consts::LN_2).exp();
        // Uses dominate; recency (a fraction below 1) breaks ties.
        c.uses as f64 * decay + c.last_use as f64 / (now as f64 + 1.0)
    }
}
