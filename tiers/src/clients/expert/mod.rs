//! The MoE expert cache: `L` layers x `E` FFN experts as pager objects
//! (class [`crate::ObjectClass::Expert`]), pinned in the top tier (HBM, or
//! DDR on a CPU-only machine) while a layer computes, paged from DDR and
//! NVMe below.
//!
//! MoE++ passes each layer's raw gating logits `G` on to the next layer
//! through its gating-residual weight `W_g` (`G' = l' + W_g G`), so the
//! next layer's routing is predictable before it runs: the top-k of
//! `W_g G` per token ([`predict_experts`]), sharpened by pre-gating (the
//! next router on the current input, [`predict_experts_pregated`]).
//! [`ExpertCache::prefetch_next_layer`] (and `_pregated`) prefetches those
//! experts while the current layer computes, and
//! [`ExpertCache::get`] counts hits, misses, late prefetches and the time
//! it stalled ([`ExpertStats`]).
//!
//! Policies are compared offline on routing traces ([`Trace`]: accesses
//! and predictions, saved as text so a run can record one): [`simulate`]
//! replays a trace under LRU, LFU, prediction-driven prefetch and Belady's
//! offline optimum, the ceiling of every policy's hit rate.
//! [`synthetic_trace`] makes skewed traces; [`moe_routing_trace`] records
//! one from the real MoE++ gating ([`memwall::moe::route`]).

mod cache;
mod predict;
mod replay;
mod simulate;
mod stats;
mod synthetic;
mod trace;

pub use cache::{ExpertCache, ExpertCacheConfig};
pub use predict::{predict_experts, predict_experts_pregated, Pregate};
pub use replay::ReplayOptions;
pub use simulate::{simulate, SimPolicy, SimResult};
pub use stats::ExpertStats;
pub use synthetic::{moe_routing_trace, synthetic_trace, RoutingTraceSpec, SyntheticSpec};
pub use trace::{Trace, TraceEvent};
