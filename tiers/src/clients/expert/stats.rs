//! What the expert cache counts.

use std::fmt;
use std::time::Duration;

/// Counters of an [`super::ExpertCache`] since it was made (or
/// [`super::ExpertCache::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpertStats {
    /// Calls to [`super::ExpertCache::get`] that pinned an expert.
    pub accesses: u64,
    /// Accesses that found the expert in the cache's tier without waiting.
    pub hits: u64,
    /// Of the hits, those whose copy a prefetch brought.
    pub prefetch_hits: u64,
    /// Accesses that waited for a prefetch of the expert still in flight.
    pub late_prefetches: u64,
    /// Accesses that fetched the expert on demand.
    pub misses: u64,
    /// Prefetches issued.
    pub prefetches: u64,
    /// Prefetches dropped without an access (a new prediction for the layer
    /// left them out).
    pub wasted_prefetches: u64,
    /// Prefetches that failed (the access then fetched on demand).
    pub prefetch_errors: u64,
    /// Time `get` blocked: waiting for prefetches and pinning.
    pub stall: Duration,
    /// Of `stall`, the time spent on misses and late prefetches.
    pub miss_stall: Duration,
}

impl ExpertStats {
    /// hits / accesses (0 before any access).
    pub fn hit_rate(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.hits as f64 / self.accesses as f64
        }
    }
}

impl fmt::Display for ExpertStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accesses: {} hits ({:.1}%, {} prefetched), {} late prefetches, {} misses; {} prefetches \
             ({} wasted, {} failed); stall {:.3} ms ({:.3} ms on misses)",
            self.accesses,
            self.hits,
            100.0 * self.hit_rate(),
            self.prefetch_hits,
            self.late_prefetches,
            self.misses,
            self.prefetches,
            self.wasted_prefetches,
            self.prefetch_errors,
            self.stall.as_secs_f64() * 1e3,
            self.miss_stall.as_secs_f64() * 1e3,
        )
    }
}
