//! Tier clients: the pager's three users in an LLM / MoE stack, each over a
//! [`Pager`] whose top tier is HBM where a GPU opens and DDR on a CPU-only
//! machine ([`top_tier`]).
//!
//! - [`expert`]: an MoE expert cache (L layers x E FFN experts paged
//!   HBM <- DDR <- NVMe) with next-layer prefetch predicted from MoE++
//!   gating residuals, hit/miss/stall statistics, routing traces and a
//!   policy simulator (LRU, LFU, prediction-driven, Belady).
//! - [`optimizer`]: ZeRO-Infinity-style AdamW offload: fp32 master weights
//!   and moments in pager objects on NVMe/DDR, a pipelined multithreaded CPU
//!   step, and restart from the NVMe files (manifest with checksums).
//! - [`kv`]: a paged KV cache: a page pool in the top tier in the layout
//!   [`memwall::attention::decode`] reads, per-sequence block tables,
//!   prefix sharing with copy-on-write, whole-sequence swap in contiguous
//!   groups of blocks.
//!
//! Each client names its pager objects from its own id range
//! ([`EXPERT_ID_BASE`], [`OPTIMIZER_ID_BASE`], [`KV_ID_BASE`]), so clients
//! can share one pager. Errors are [`ClientError`]s naming the expert,
//! partition or sequence involved, with the pager's [`crate::TierError`] as
//! the source.

mod error;
pub mod expert;
pub mod kv;
pub mod optimizer;
mod rng;

pub use error::ClientError;

use crate::pager::Pager;
use crate::tier::Tier;

/// Object ids of the expert cache start here by default.
pub const EXPERT_ID_BASE: u64 = 0;
/// Object ids of the optimizer offload start here by default.
pub const OPTIMIZER_ID_BASE: u64 = 1 << 56;
/// Object ids of the KV cache start here by default.
pub const KV_ID_BASE: u64 = 2 << 56;

/// Shorthand for client results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The fastest tier `pager` has: HBM where a device opened, else DDR.
pub fn top_tier(pager: &Pager) -> Tier {
    if pager.tiers().contains(&Tier::Hbm) {
        Tier::Hbm
    } else {
        Tier::Ddr
    }
}
