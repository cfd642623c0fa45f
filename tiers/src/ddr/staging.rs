//! Reusable staging blocks: pinned allocations are slow (milliseconds), so
//! transfers that only pass through the host reuse a few.

use parking_lot::Mutex;

use super::block::HostBlock;

/// Up to `max` idle staging blocks.
pub(crate) struct StagingPool {
    idle: Mutex<Vec<HostBlock>>,
    max: usize,
}

impl StagingPool {
    /// An empty pool keeping at most `max` blocks.
    pub(crate) fn new(max: usize) -> Self {
        StagingPool { idle: Mutex::new(Vec::new()), max }
    }

    /// The smallest idle block of exactly `len` bytes' padding class.
    pub(crate) fn take(&self, len: usize) -> Option<HostBlock> {
        let mut idle = self.idle.lock();
        let want = super::padded_len(len);
        let i = idle.iter().position(|b| b.padded_len() == want && b.len() == len)?;
        Some(idle.swap_remove(i))
    }

    /// Keeps `block` for reuse, or frees it when the pool is full.
    pub(crate) fn put(&self, block: HostBlock) {
        let mut idle = self.idle.lock();
        if idle.len() < self.max {
            idle.push(block);
        }
    }
}
