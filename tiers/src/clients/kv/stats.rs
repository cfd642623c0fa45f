//! What the KV cache reports: its pool's occupancy and its swap traffic.

use std::time::Duration;

use memwall::attention::DecodeShape;

use super::shape::KvShape;

/// The pool's occupancy, from [`super::KvCache::pool_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Pages in the pool.
    pub pages: usize,
    /// Pages no block table references.
    pub free: usize,
    /// Pages referenced by more than one block table (shared prefixes).
    pub shared: usize,
}

/// Swap and copy-on-write counters, from [`super::KvCache::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KvStats {
    /// Sequences swapped out.
    pub swaps_out: u64,
    /// Sequences swapped in.
    pub swaps_in: u64,
    /// Bytes swapped out (whole blocks).
    pub bytes_out: u64,
    /// Bytes swapped in.
    pub bytes_in: u64,
    /// Time in `swap_out`.
    pub time_out: Duration,
    /// Time in `swap_in`.
    pub time_in: Duration,
    /// Pager objects written by swaps (one per group of blocks).
    pub group_objects: u64,
    /// Shared blocks copied before a write (copy-on-write).
    pub cow_copies: u64,
}

impl KvStats {
    /// Swap-out GB/s (1e9 bytes); 0 before any.
    pub fn gbps_out(&self) -> f64 {
        gbps(self.bytes_out, self.time_out)
    }

    /// Swap-in GB/s; 0 before any.
    pub fn gbps_in(&self) -> f64 {
        gbps(self.bytes_in, self.time_in)
    }
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        bytes as f64 / t.as_secs_f64() / 1e9
    }
}

/// What one swap moved, from [`super::KvCache::swap_out`] and
/// [`super::KvCache::swap_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapReport {
    /// Blocks moved.
    pub blocks: usize,
    /// Pager objects (groups of consecutive blocks).
    pub groups: usize,
    /// Bytes moved.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Block tables and lengths of a batch of sequences, in the decode
/// kernel's layout, from [`super::KvCache::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTables {
    /// `batch x max_pages` page indices (unused entries 0).
    pub block_tables: Vec<i32>,
    /// Tokens per sequence.
    pub seq_lens: Vec<i32>,
    /// Width of each block-table row (at least 1).
    pub max_pages: u32,
}

impl BatchTables {
    /// The decode kernel's shape for this batch over a cache of `kv`'s
    /// shape, with `heads` query heads.
    pub fn decode_shape(&self, kv: &KvShape, heads: u32, softmax_scale: f32) -> DecodeShape<'_> {
        DecodeShape {
            batch: self.seq_lens.len() as u32,
            heads,
            kv_heads: kv.kv_heads as u32,
            head_dim: kv.head_dim as u32,
            page_size: kv.page_size as u32,
            num_pages: kv.num_pages as u32,
            max_pages: self.max_pages,
            softmax_scale,
            dtype: kv.dtype,
            block_tables: &self.block_tables,
            seq_lens: &self.seq_lens,
        }
    }
}
