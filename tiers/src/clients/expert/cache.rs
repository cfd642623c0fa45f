//! [`ExpertCache`]: experts as pager objects, pinned on access, prefetched
//! on prediction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use memwall::moe::MoeConfig;
use parking_lot::Mutex;

use super::super::{top_tier, ClientError, Result, EXPERT_ID_BASE};
use super::predict::{predict_experts_pregated, Pregate};
use super::stats::ExpertStats;
use super::trace::{Trace, TraceEvent};
use crate::object::{ObjectClass, ObjectId, ObjectSpec};
use crate::pager::{Pager, PinGuard, Ticket};
use crate::tier::Tier;

/// The shape and placement of an [`ExpertCache`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertCacheConfig {
    /// MoE layers.
    pub layers: usize,
    /// The routing: its layout's FFN experts are cached (the
    /// zero-computation experts have no weights) and its `top_k` drives
    /// prediction.
    pub moe: MoeConfig,
    /// Bytes of one expert's weights.
    pub expert_bytes: usize,
    /// The object id of (layer 0, expert 0); expert `(l, e)` is
    /// `id_base + l * n_ffn + e`.
    pub id_base: u64,
    /// The tier experts are pinned in for compute; `None`: the pager's top
    /// tier ([`top_tier`]).
    pub tier: Option<Tier>,
    /// Pager priority of the expert objects (see
    /// [`crate::policy::ClassPriority`]).
    pub priority: u8,
}

impl ExpertCacheConfig {
    /// `layers` layers of `moe`'s FFN experts, `expert_bytes` each, ids from
    /// [`EXPERT_ID_BASE`], pinned in the top tier, priority 0.
    pub fn new(layers: usize, moe: MoeConfig, expert_bytes: usize) -> Self {
        ExpertCacheConfig { layers, moe, expert_bytes, id_base: EXPERT_ID_BASE, tier: None, priority: 0 }
    }

    /// FFN experts per layer.
    pub fn experts(&self) -> usize {
        self.moe.layout.n_ffn as usize
    }
}

/// The expert cache over a pager. `Send + Sync`: layers on several threads
/// may `get` concurrently; counters are shared.
pub struct ExpertCache {
    pager: Pager,
    cfg: ExpertCacheConfig,
    tier: Tier,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ExpertCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpertCache").field("cfg", &self.cfg).field("tier", &self.tier).finish_non_exhaustive()
    }
}

struct Inner {
    /// Prefetches issued and not yet consumed by a `get`.
    inflight: HashMap<(usize, usize), Ticket>,
    stats: ExpertStats,
    recording: Option<Trace>,
}

/// How a `get` found its expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Hit { prefetched: bool },
    Late,
    Miss,
}

impl ExpertCache {
    /// Registers every (layer, FFN expert) object in `pager` (zero-filled
    /// until [`ExpertCache::load`]). Errors: a zero shape, a tier the pager
    /// lacks or cannot pin in, ids already registered.
    pub fn new(pager: Pager, cfg: ExpertCacheConfig) -> Result<Self> {
        cfg.moe.validate().map_err(|e| ClientError::invalid("moe", format!("{:?}", cfg.moe), e.to_string()))?;
        for (what, v) in [("layers", cfg.layers), ("expert_bytes", cfg.expert_bytes), ("n_ffn", cfg.experts())] {
            if v == 0 {
                return Err(ClientError::invalid(what, 0, "must be at least 1"));
            }
        }
        let tier = cfg.tier.unwrap_or_else(|| top_tier(&pager));
        if tier == Tier::Nvme || !pager.tiers().contains(&tier) {
            return Err(ClientError::invalid(
                "tier",
                tier,
                "experts are pinned in HBM or DDR, and the pager must have it",
            ));
        }
        let cache = ExpertCache {
            pager,
            cfg,
            tier,
            inner: Mutex::new(Inner { inflight: HashMap::new(), stats: ExpertStats::default(), recording: None }),
        };
        for layer in 0..cfg.layers {
            for e in 0..cfg.experts() {
                let spec = ObjectSpec::new(cache.id(layer, e).0, cfg.expert_bytes, ObjectClass::Expert)
                    .with_priority(cfg.priority);
                cache.pager.register(spec).map_err(|source| ClientError::Expert {
                    layer,
                    expert: e,
                    source: Box::new(source),
                })?;
            }
        }
        Ok(cache)
    }

    /// The configuration.
    pub fn config(&self) -> &ExpertCacheConfig {
        &self.cfg
    }

    /// The tier experts are pinned in.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The pager.
    pub fn pager(&self) -> &Pager {
        &self.pager
    }

    /// The object id of expert `e` of `layer` (no range check).
    pub fn id(&self, layer: usize, e: usize) -> ObjectId {
        ObjectId(self.cfg.id_base + (layer * self.cfg.experts() + e) as u64)
    }

    fn check(&self, layer: usize, expert: usize) -> Result<()> {
        if layer >= self.cfg.layers || expert >= self.cfg.experts() {
            return Err(ClientError::NoSuchExpert {
                layer,
                expert,
                layers: self.cfg.layers,
                experts: self.cfg.experts(),
            });
        }
        Ok(())
    }

    /// Writes expert `e` of `layer`'s weights (exactly `expert_bytes`).
    pub fn load(&self, layer: usize, e: usize, weights: &[u8]) -> Result<()> {
        self.check(layer, e)?;
        self.pager.insert(self.id(layer, e), weights).map_err(|source| ClientError::Expert {
            layer,
            expert: e,
            source: Box::new(source),
        })
    }

    /// Pins expert `e` of `layer` in the cache's tier: waits for its
    /// prefetch if one is in flight, else fetches it on demand. Counts a
    /// hit, late prefetch or miss and the time it blocked. A failed
    /// prefetch is counted and the expert fetched on demand; a failed
    /// fetch is an error naming the expert (it stays where it was).
    pub fn get(&self, layer: usize, e: usize) -> Result<PinGuard> {
        self.check(layer, e)?;
        let id = self.id(layer, e);
        let start = Instant::now();
        let ticket = {
            let mut inner = self.inner.lock();
            if let Some(trace) = inner.recording.as_mut() {
                trace.events.push(TraceEvent::Access { layer: layer as u32, expert: e as u32 });
            }
            inner.inflight.remove(&(layer, e))
        };
        let mut prefetched = false;
        let mut late = false;
        let mut prefetch_failed = false;
        if let Some(t) = ticket {
            late = !t.is_done();
            match t.wait() {
                Ok(()) => prefetched = true,
                Err(_) => prefetch_failed = true,
            }
        }
        let resident = self.pager.status(id).map(|s| s.is_in(self.tier)).unwrap_or(false);
        let found = match (resident, late && prefetched) {
            (true, true) => Found::Late,
            (true, false) => Found::Hit { prefetched },
            (false, _) => Found::Miss,
        };
        let pinned = self.pager.pin(id, self.tier).map_err(|source| ClientError::Expert {
            layer,
            expert: e,
            source: Box::new(source),
        });
        let stall = start.elapsed();
        let mut inner = self.inner.lock();
        let s = &mut inner.stats;
        s.prefetch_errors += u64::from(prefetch_failed);
        s.stall += stall;
        let pin = pinned?;
        s.accesses += 1;
        match found {
            Found::Hit { prefetched } => {
                s.hits += 1;
                s.prefetch_hits += u64::from(prefetched);
            }
            Found::Late => {
                s.late_prefetches += 1;
                s.miss_stall += stall;
            }
            Found::Miss => {
                s.misses += 1;
                s.miss_stall += stall;
            }
        }
        Ok(pin)
    }

    /// Starts fetching `experts` of `layer` into the cache's tier (those not
    /// there and not already on their way); returns how many prefetches it
    /// issued. Earlier prefetches for `layer` that `experts` leaves out are
    /// dropped and counted as wasted. Records the prediction when
    /// recording.
    pub fn prefetch(&self, layer: usize, experts: &[usize]) -> Result<usize> {
        for &e in experts {
            self.check(layer, e)?;
        }
        let mut inner = self.inner.lock();
        if let Some(trace) = inner.recording.as_mut() {
            let experts = experts.iter().map(|&e| e as u32).collect();
            trace.events.push(TraceEvent::Predict { layer: layer as u32, experts });
        }
        let stale: Vec<(usize, usize)> =
            inner.inflight.keys().filter(|&&(l, e)| l == layer && !experts.contains(&e)).copied().collect();
        for key in stale {
            inner.inflight.remove(&key);
            inner.stats.wasted_prefetches += 1;
        }
        let mut issued = 0;
        for &e in experts {
            if inner.inflight.contains_key(&(layer, e)) {
                continue;
            }
            let id = self.id(layer, e);
            if self.pager.status(id).is_ok_and(|s| s.is_in(self.tier)) {
                continue;
            }
            inner.inflight.insert((layer, e), self.pager.prefetch(id, self.tier));
            issued += 1;
        }
        inner.stats.prefetches += issued as u64;
        Ok(issued)
    }

    /// Predicts the experts of `layer + 1` from this layer's routing
    /// output `logits` (`G`, `tokens x N`, [`memwall::moe::Routing::next_logits`])
    /// through the next layer's gating-residual weight `wg_next` (`N x N`)
    /// with [`super::predict_experts`], and prefetches them. Returns the
    /// prediction (empty after the last layer).
    pub fn prefetch_next_layer(
        &self,
        layer: usize,
        logits: &[f32],
        wg_next: &[f32],
        tokens: usize,
    ) -> Result<Vec<usize>> {
        self.prefetch_next_layer_pregated(layer, logits, wg_next, None, tokens)
    }

    /// As [`ExpertCache::prefetch_next_layer`], adding the pre-gating term
    /// `R' h` when `pregate` is given ([`super::predict_experts_pregated`]).
    pub fn prefetch_next_layer_pregated(
        &self,
        layer: usize,
        logits: &[f32],
        wg_next: &[f32],
        pregate: Option<&Pregate<'_>>,
        tokens: usize,
    ) -> Result<Vec<usize>> {
        if layer >= self.cfg.layers {
            return Err(ClientError::NoSuchExpert {
                layer,
                expert: 0,
                layers: self.cfg.layers,
                experts: self.cfg.experts(),
            });
        }
        let n = self.cfg.moe.layout.experts() as usize;
        if logits.len() != tokens * n {
            return Err(ClientError::Length { what: "logits (tokens x N)", got: logits.len(), expected: tokens * n });
        }
        if wg_next.len() != n * n {
            return Err(ClientError::Length { what: "wg_next (N x N)", got: wg_next.len(), expected: n * n });
        }
        if let Some(p) = pregate {
            if p.router_next.len() != n * p.hidden {
                return Err(ClientError::Length {
                    what: "router_next (N x hidden)",
                    got: p.router_next.len(),
                    expected: n * p.hidden,
                });
            }
            if p.hidden_states.len() != tokens * p.hidden {
                return Err(ClientError::Length {
                    what: "hidden_states (tokens x hidden)",
                    got: p.hidden_states.len(),
                    expected: tokens * p.hidden,
                });
            }
        }
        if layer + 1 == self.cfg.layers {
            return Ok(Vec::new());
        }
        let predicted = predict_experts_pregated(&self.cfg.moe, logits, wg_next, pregate, tokens);
        self.prefetch(layer + 1, &predicted)?;
        Ok(predicted)
    }

    /// Waits until every prefetch in flight has finished. Their tickets
    /// stay, so a later [`ExpertCache::get`] still counts the expert as
    /// prefetched (or the prefetch as failed).
    pub fn settle(&self) {
        let tickets: Vec<((usize, usize), Ticket)> = self.inner.lock().inflight.drain().collect();
        for (_, t) in &tickets {
            while !t.wait_timeout(Duration::from_secs(1)) {}
        }
        self.inner.lock().inflight.extend(tickets);
    }

    /// The counters so far.
    pub fn stats(&self) -> ExpertStats {
        self.inner.lock().stats.clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.inner.lock().stats = ExpertStats::default();
    }

    /// Starts recording accesses and predictions into a fresh trace
    /// (dropping one being recorded).
    pub fn start_recording(&self) {
        self.inner.lock().recording = Some(Trace::new(self.cfg.layers, self.cfg.experts()));
    }

    /// Stops recording and returns the trace (`None` when not recording).
    pub fn take_trace(&self) -> Option<Trace> {
        self.inner.lock().recording.take()
    }
}
