//! The demo's expert source: FFN experts through `memwall_tiers`'
//! `ExpertCache` (HBM <- DDR <- NVMe on a GPU, DDR <- NVMe otherwise). The KV cache is the tier client
//! `KvCache` directly (see `mod.rs`).

use memwall::trace;
use memwall_tiers::clients::expert::{ExpertCache, ExpertCacheConfig, Pregate};
use memwall_tiers::clients::ClientError;
use memwall_tiers::Pager;

use super::model::{ExpertSource, InMemoryExperts, ModelConfig, NextLayer};

fn err(e: memwall_tiers::TierError) -> memwall::Error {
    memwall::Error::invalid("tier operation", "pager", e.to_string())
}

/// FFN experts through the tier client [`ExpertCache`]: pinned in the top
/// tier while used, the next layer's experts prefetched from the routing.
pub struct PagedExperts {
    cache: ExpertCache,
    predictor: Predictor,
}

/// How the next layer's experts are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Predictor {
    /// The gating residual alone: top-k of `W_g' G`.
    Residual,
    /// Pre-gating added: top-k of `R' h + W_g' G`.
    Pregated,
}

fn client_err(e: ClientError) -> memwall::Error {
    memwall::Error::invalid("expert cache", "pager", e.to_string())
}

impl PagedExperts {
    /// Registers and writes every expert (they spill to NVMe as DDR fills).
    pub fn new(
        pager: &Pager,
        cfg: &ModelConfig,
        weights: &InMemoryExperts,
        predictor: Predictor,
    ) -> Result<Self, ClientError> {
        let cache = ExpertCache::new(pager.clone(), ExpertCacheConfig::new(cfg.layers, cfg.moe(), cfg.expert_bytes()))?;
        for (l, layer) in weights.0.iter().enumerate() {
            for (e, w) in layer.iter().enumerate() {
                cache.load(l, e, bytemuck::cast_slice(w))?;
            }
        }
        cache.reset_stats();
        cache.start_recording();
        Ok(PagedExperts { cache, predictor })
    }

    /// The cache's counters (hits, prefetch hits, misses, stall).
    pub fn stats(&self) -> memwall_tiers::clients::expert::ExpertStats {
        self.cache.stats()
    }

    /// The routing trace recorded so far (accesses and predictions).
    pub fn take_trace(&self) -> Option<memwall_tiers::clients::expert::Trace> {
        self.cache.take_trace()
    }
}

impl ExpertSource for PagedExperts {
    fn with_expert(&self, layer: usize, e: usize, f: &mut dyn FnMut(&[f32])) -> memwall::Result<()> {
        let pin = {
            let _span = trace::span(format!("expert L{layer}E{e} pin"), "fetch");
            self.cache.get(layer, e).map_err(client_err)?
        };
        let w = pin.view::<f32>().map_err(err)?;
        f(w);
        Ok(())
    }

    fn with_expert_device(
        &self,
        layer: usize,
        e: usize,
        f: &mut dyn FnMut(&memwall::gpu::cuda::CudaSlice<u8>) -> memwall::Result<()>,
    ) -> memwall::Result<()> {
        let pin = {
            let _span = trace::span(format!("expert L{layer}E{e} pin"), "fetch");
            self.cache.get(layer, e).map_err(client_err)?
        };
        // The pin keeps the HBM copy in place until `f` (which waits for
        // its kernels) returns.
        f(pin.device().map_err(err)?.slice())
    }

    fn prefetch_next(&self, layer: usize, next: &NextLayer<'_>) -> memwall::Result<()> {
        let _span = trace::span(format!("prefetch for L{}", layer + 1), "fetch");
        let pregate = Pregate { router_next: next.router_next, hidden_states: next.hidden_states, hidden: next.hidden };
        let pregate = (self.predictor == Predictor::Pregated).then_some(&pregate);
        self.cache
            .prefetch_next_layer_pregated(layer, next.logits, next.wg_next, pregate, next.tokens)
            .map(drop)
            .map_err(client_err)
    }
}
