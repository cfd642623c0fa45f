//! Freed DDR blocks kept for reuse. Fresh memory is slow to fill: every page
//! faults (and zeroes) on first touch, which for O_DIRECT reads happens
//! inside the I/O and cuts throughput several times; pinned memory is slower
//! still to allocate. The pager counts kept blocks against the DDR capacity
//! and trims them before it evicts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::block::HostBlock;

/// Idle blocks by padded length.
#[derive(Default)]
pub(crate) struct FreeBlocks {
    by_len: Mutex<HashMap<usize, Vec<HostBlock>>>,
    bytes: AtomicU64,
}

impl FreeBlocks {
    /// An idle block of `padded` bytes, if one is kept.
    pub(crate) fn take(&self, padded: usize) -> Option<HostBlock> {
        let mut by_len = self.by_len.lock();
        let list = by_len.get_mut(&padded)?;
        let block = list.pop()?;
        if list.is_empty() {
            by_len.remove(&padded);
        }
        self.bytes.fetch_sub(padded as u64, Ordering::Relaxed);
        Some(block)
    }

    /// Keeps `block` for reuse.
    pub(crate) fn put(&self, block: HostBlock) {
        let padded = block.padded_len();
        self.by_len.lock().entry(padded).or_default().push(block);
        self.bytes.fetch_add(padded as u64, Ordering::Relaxed);
    }

    /// Bytes kept.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Frees kept blocks until at most `keep` bytes remain, sparing blocks
    /// of `spare` padded bytes while others exist.
    pub(crate) fn trim(&self, keep: u64, spare: usize) {
        let mut by_len = self.by_len.lock();
        let mut lens: Vec<usize> = by_len.keys().copied().collect();
        // Other sizes first, largest first; the spared size last.
        lens.sort_by_key(|&l| (l == spare, std::cmp::Reverse(l)));
        for len in lens {
            while self.bytes.load(Ordering::Relaxed) > keep {
                let Some(list) = by_len.get_mut(&len) else { break };
                let Some(block) = list.pop() else { break };
                self.bytes.fetch_sub(block.padded_len() as u64, Ordering::Relaxed);
                drop(block);
            }
            if by_len.get(&len).is_some_and(Vec::is_empty) {
                by_len.remove(&len);
            }
        }
    }
}
