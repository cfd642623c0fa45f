//! The DDR tier: host memory blocks (pinned when the HBM tier is on, so DMA
//! to and from the GPU runs at full speed) and a pool of staging blocks for
//! transfers that pass through the host without staying there.

mod block;
mod recycle;
mod staging;
#[cfg(test)]
mod test;

use std::sync::Arc;

use memwall::gpu::Gpu;

pub use block::{padded_len, HostBlock, HOST_ALIGN};
use recycle::FreeBlocks;
pub(crate) use staging::StagingPool;

use crate::error::Result;

/// Allocates the DDR tier's blocks.
pub(crate) struct DdrStore {
    pinned_on: Option<Arc<Gpu>>,
    staging: StagingPool,
    free: FreeBlocks,
}

impl DdrStore {
    /// Page-aligned blocks; pinned ones on `pinned_on`'s context when given.
    pub(crate) fn new(pinned_on: Option<Arc<Gpu>>) -> Self {
        DdrStore { pinned_on, staging: StagingPool::new(4), free: FreeBlocks::default() }
    }

    /// Whether blocks are page-locked.
    pub(crate) fn pinned(&self) -> bool {
        self.pinned_on.is_some()
    }

    /// A zeroed block of `len` bytes: a kept one cleared, or a fresh one.
    pub(crate) fn alloc(&self, len: usize) -> Result<HostBlock> {
        match self.free.take(padded_len(len)) {
            Some(mut b) => {
                b.set_len(len);
                b.padded_mut().fill(0);
                Ok(b)
            }
            None => self.fresh(len),
        }
    }

    /// A block of `len` bytes whose contents the caller overwrites: the
    /// bytes are unspecified, the padding past `len` is zero.
    pub(crate) fn alloc_for_overwrite(&self, len: usize) -> Result<HostBlock> {
        match self.free.take(padded_len(len)) {
            Some(mut b) => {
                b.set_len(len);
                b.clear_padding();
                Ok(b)
            }
            None => self.fresh(len),
        }
    }

    fn fresh(&self, len: usize) -> Result<HostBlock> {
        match &self.pinned_on {
            Some(gpu) => HostBlock::pinned(gpu, len),
            None => HostBlock::new(len),
        }
    }

    /// Keeps a dropped copy's block for reuse.
    pub(crate) fn recycle(&self, block: HostBlock) {
        self.free.put(block);
    }

    /// Bytes of kept blocks (counted against the DDR capacity).
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.free.bytes()
    }

    /// Frees kept blocks down to `keep` bytes, sparing `spare`-byte blocks
    /// (about to be reused) while others can go.
    pub(crate) fn trim(&self, keep: u64, spare: usize) {
        self.free.trim(keep, spare);
    }

    /// A staging block of at least `len` bytes (contents unspecified), from
    /// the pool when one fits. Give it back with [`DdrStore::give_back`].
    pub(crate) fn staging(&self, len: usize) -> Result<HostBlock> {
        match self.staging.take(len) {
            Some(b) => Ok(b),
            None => self.fresh(len),
        }
    }

    /// Returns a staging block to the pool.
    pub(crate) fn give_back(&self, block: HostBlock) {
        self.staging.put(block);
    }
}
