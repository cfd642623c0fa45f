//! Offline policy simulation over routing traces: an expert cache of
//! `capacity` experts (all the same size), empty at the start, replaying a
//! [`Trace`] under one [`SimPolicy`].
//!
//! Two rates per run. The *hit rate* counts the accesses that needed no
//! transfer of their own: `1 - (misses + useful prefetches) / accesses`.
//! Belady's policy (evict the expert used farthest in the future) maximises
//! it over every policy, prefetching ones included: any policy's used loads
//! can be replayed lazily as demand loads, which Belady minimises. The
//! *stall-free rate* counts the accesses that found their expert resident,
//! which is what prefetching buys: misses stall, prefetches overlap
//! compute ([`SimResult::stall`]).

use std::collections::HashMap;
use std::time::Duration;

use super::trace::{Trace, TraceEvent};

/// A replacement policy of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimPolicy {
    /// Demand fetch; evict the least recently used.
    Lru,
    /// Demand fetch; evict the least frequently used (uses counted over the
    /// whole trace so far), ties to the least recently used.
    Lfu,
    /// LRU, plus prefetch of the trace's predictions: predicted experts are
    /// loaded ahead of their layer and protected from eviction until used
    /// or until the next prediction for their layer.
    Predicted,
    /// Belady's offline optimum: demand fetch, evict the expert whose next
    /// use is farthest away (never used again first).
    Belady,
}

impl SimPolicy {
    /// Every policy.
    pub const ALL: [SimPolicy; 4] = [SimPolicy::Lru, SimPolicy::Lfu, SimPolicy::Predicted, SimPolicy::Belady];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            SimPolicy::Lru => "lru",
            SimPolicy::Lfu => "lfu",
            SimPolicy::Predicted => "predicted",
            SimPolicy::Belady => "belady",
        }
    }
}

/// The outcome of one simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResult {
    /// The policy.
    pub policy: SimPolicy,
    /// Experts the cache holds.
    pub capacity: usize,
    /// Accesses replayed.
    pub accesses: u64,
    /// Accesses that found their expert resident.
    pub resident: u64,
    /// Accesses that fetched on demand (stalled).
    pub misses: u64,
    /// Experts loaded by prefetches.
    pub prefetch_loads: u64,
    /// Prefetch loads used by an access before being evicted.
    pub useful_prefetches: u64,
    /// Prefetch loads evicted or left unused at the end.
    pub wasted_prefetches: u64,
}

impl SimResult {
    /// Experts moved into the cache: misses plus prefetch loads.
    pub fn fetches(&self) -> u64 {
        self.misses + self.prefetch_loads
    }

    /// Accesses needing no transfer of their own (see the module docs);
    /// Belady's is the ceiling. 0 for an empty trace.
    pub fn hit_rate(&self) -> f64 {
        ratio(self.accesses.saturating_sub(self.misses + self.useful_prefetches), self.accesses)
    }

    /// Accesses that found their expert resident.
    pub fn stall_free_rate(&self) -> f64 {
        ratio(self.resident, self.accesses)
    }

    /// Stall time when each miss waits `fetch` (one expert's transfer) and
    /// prefetches overlap compute.
    pub fn stall(&self, fetch: Duration) -> Duration {
        fetch.saturating_mul(u32::try_from(self.misses).unwrap_or(u32::MAX))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

type Key = (u32, u32);

/// One resident expert.
#[derive(Debug, Clone, Copy)]
struct Slot {
    last_use: u64,
    /// Loaded by a prefetch and not yet used.
    prefetched: bool,
    /// Predicted for its layer and not yet used.
    protected: bool,
}

/// Replays `trace` with a cache of `capacity` experts under `policy`.
/// `capacity` 0 makes every access a miss.
pub fn simulate(trace: &Trace, capacity: usize, policy: SimPolicy) -> SimResult {
    let mut sim = Sim {
        capacity,
        resident: HashMap::new(),
        uses: HashMap::new(),
        clock: 0,
        result: SimResult {
            policy,
            capacity,
            accesses: 0,
            resident: 0,
            misses: 0,
            prefetch_loads: 0,
            useful_prefetches: 0,
            wasted_prefetches: 0,
        },
    };
    let next_use = if policy == SimPolicy::Belady { next_uses(trace) } else { Vec::new() };
    let mut access_index = 0;
    for event in &trace.events {
        match event {
            TraceEvent::Access { layer, expert } => {
                let key = (*layer, *expert);
                let next = next_use.get(access_index).copied().unwrap_or(u64::MAX);
                sim.access(key, policy, next);
                access_index += 1;
            }
            TraceEvent::Predict { layer, experts } if policy == SimPolicy::Predicted => sim.predict(*layer, experts),
            TraceEvent::Predict { .. } => {}
        }
    }
    let unused = sim.resident.values().filter(|s| s.prefetched).count() as u64;
    sim.result.wasted_prefetches += unused;
    sim.result
}

/// For each access, the index of the next access of the same expert
/// (`u64::MAX` if none).
fn next_uses(trace: &Trace) -> Vec<u64> {
    let keys: Vec<Key> = trace.accesses().map(|(l, e)| (l as u32, e as u32)).collect();
    let mut next = vec![u64::MAX; keys.len()];
    let mut seen: HashMap<Key, u64> = HashMap::new();
    for (i, k) in keys.iter().enumerate().rev() {
        if let Some(&j) = seen.get(k) {
            next[i] = j;
        }
        seen.insert(*k, i as u64);
    }
    next
}

struct Sim {
    capacity: usize,
    resident: HashMap<Key, Slot>,
    /// Accesses so far per expert (LFU).
    uses: HashMap<Key, u64>,
    clock: u64,
    result: SimResult,
}

/// Belady keeps each resident expert's next use in `last_use`'s place.
impl Sim {
    fn access(&mut self, key: Key, policy: SimPolicy, next: u64) {
        self.clock += 1;
        self.result.accesses += 1;
        *self.uses.entry(key).or_default() += 1;
        let stamp = if policy == SimPolicy::Belady { next } else { self.clock };
        if let Some(slot) = self.resident.get_mut(&key) {
            self.result.resident += 1;
            if slot.prefetched {
                self.result.useful_prefetches += 1;
            }
            *slot = Slot { last_use: stamp, prefetched: false, protected: false };
            return;
        }
        self.result.misses += 1;
        if self.capacity == 0 {
            return;
        }
        if self.resident.len() >= self.capacity {
            let victim = match policy {
                SimPolicy::Lru | SimPolicy::Predicted => self.lru_victim(true).or_else(|| self.lru_victim(false)),
                SimPolicy::Lfu => self.lfu_victim(),
                SimPolicy::Belady => self.resident.iter().max_by_key(|(k, s)| (s.last_use, **k)).map(|(k, _)| *k),
            };
            if let Some(v) = victim {
                self.evict(v);
            }
        }
        self.resident.insert(key, Slot { last_use: stamp, prefetched: false, protected: false });
    }

    fn predict(&mut self, layer: u32, experts: &[u32]) {
        // A new prediction for the layer replaces the old one.
        for (k, s) in self.resident.iter_mut() {
            if k.0 == layer {
                s.protected = false;
            }
        }
        for &e in experts {
            let key = (layer, e);
            if let Some(slot) = self.resident.get_mut(&key) {
                slot.protected = true;
                continue;
            }
            if self.capacity == 0 {
                return;
            }
            if self.resident.len() >= self.capacity {
                match self.lru_victim(true) {
                    Some(v) => self.evict(v),
                    // Everything resident is predicted: no room to prefetch.
                    None => continue,
                }
            }
            self.clock += 1;
            self.result.prefetch_loads += 1;
            self.resident.insert(key, Slot { last_use: self.clock, prefetched: true, protected: true });
        }
    }

    fn evict(&mut self, key: Key) {
        if let Some(slot) = self.resident.remove(&key) {
            if slot.prefetched {
                self.result.wasted_prefetches += 1;
            }
        }
    }

    /// The least recently used resident expert, only unprotected ones when
    /// `unprotected_only`.
    fn lru_victim(&self, unprotected_only: bool) -> Option<Key> {
        self.resident
            .iter()
            .filter(|(_, s)| !(unprotected_only && s.protected))
            .min_by_key(|(k, s)| (s.last_use, **k))
            .map(|(k, _)| *k)
    }

    fn lfu_victim(&self) -> Option<Key> {
        self.resident
            .iter()
            .min_by_key(|(k, s)| (self.uses.get(k).copied().unwrap_or(0), s.last_use, **k))
            .map(|(k, _)| *k)
    }
}
