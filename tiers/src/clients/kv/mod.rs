//! A paged KV cache: a pool of pages in the top tier (HBM, or DDR on a
//! CPU-only machine) in the layout [`memwall::attention::decode`] reads
//! (per layer, `[num_pages, page_size, kv_heads, head_dim]` for K and for
//! V), per-sequence block tables of `i32` page indices, allocation and
//! free, prefix sharing ([`KvCache::fork`]) with copy-on-write when a
//! shared block is written, and swap out and in of whole sequences to DDR
//! or NVMe in groups of consecutive blocks, one pager object per group.
//!
//! ```no_run
//! use memwall_tiers::clients::kv::{KvCache, KvConfig, KvShape};
//! use memwall_tiers::memwall::dtype::Dtype;
//! use memwall_tiers::{Config, Pager, Tier};
//! let pager = Pager::new(Config::small(std::env::temp_dir().join("kv"), 64 << 20, 1 << 30))?;
//! let shape = KvShape { layers: 2, kv_heads: 2, head_dim: 64, page_size: 16, num_pages: 64, dtype: Dtype::BF16 };
//! let mut kv = KvCache::new(pager, KvConfig::new(shape))?;
//! let s = kv.add_sequence();
//! let token = vec![half::bf16::ZERO; 2 * 2 * 64];
//! kv.append(s, &token, &token)?;
//! let t = kv.fork(s)?;                 // shares s's blocks
//! kv.swap_out(s, Tier::Nvme)?;         // t keeps the shared page
//! kv.swap_in(s)?;
//! let batch = kv.batch(&[s, t])?;      // block tables for decode
//! let k0: &[half::bf16] = kv.k_cache(0)?;
//! # Ok::<(), memwall_tiers::clients::ClientError>(())
//! ```

mod cache;
mod pool;
mod shape;
mod stats;
mod swap;
mod tokens;

pub use cache::{KvCache, KvConfig, SeqId};
pub use shape::KvShape;
pub use stats::{BatchTables, KvStats, PoolStats, SwapReport};
