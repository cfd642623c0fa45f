//! Replaying a routing trace against a real [`ExpertCache`]: what the
//! simulator models, measured on the pager.

use std::time::Duration;

use super::super::Result;
use super::cache::ExpertCache;
use super::stats::ExpertStats;
use super::trace::{Trace, TraceEvent};

/// How [`ExpertCache::replay`] runs a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayOptions {
    /// Issue the trace's predictions as prefetches (the prediction-driven
    /// policy); otherwise only demand fetches happen.
    pub prefetch: bool,
    /// Simulated compute per access, with the expert pinned (sleeps, as a
    /// GPU kernel would leave the CPU idle); prefetches overlap it.
    pub compute_per_access: Duration,
}

impl ExpertCache {
    /// Zeroes the counters, replays `trace` (each access pins its expert
    /// for `compute_per_access`), and returns the counters. The trace's
    /// shape must fit the cache.
    pub fn replay(&self, trace: &Trace, opts: ReplayOptions) -> Result<ExpertStats> {
        self.reset_stats();
        for event in &trace.events {
            match event {
                TraceEvent::Access { layer, expert } => {
                    let pin = self.get(*layer as usize, *expert as usize)?;
                    if !opts.compute_per_access.is_zero() {
                        std::thread::sleep(opts.compute_per_access);
                    }
                    drop(pin);
                }
                TraceEvent::Predict { layer, experts } if opts.prefetch => {
                    let experts: Vec<usize> = experts.iter().map(|&e| e as usize).collect();
                    self.prefetch(*layer as usize, &experts)?;
                }
                TraceEvent::Predict { .. } => {}
            }
        }
        self.settle();
        Ok(self.stats())
    }
}
