//! The demo's tier clients: FFN experts through `memwall_tiers`'
//! `ExpertCache` (DDR <- NVMe here; HBM on top on a GPU machine), and KV
//! caches of waiting sequences swapped out to the pager as one contiguous
//! object per sequence (FastSwitch's lesson: whole groups of blocks, not
//! block by block).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use half::bf16;
use memwall::trace;
use memwall_tiers::clients::expert::{ExpertCache, ExpertCacheConfig};
use memwall_tiers::clients::ClientError;
use memwall_tiers::{ObjectClass, ObjectId, ObjectSpec, Pager, Tier};

use super::model::{ExpertSource, InMemoryExperts, ModelConfig, SeqCache};

fn err(e: memwall_tiers::TierError) -> memwall::Error {
    memwall::Error::invalid("tier operation", "pager", e.to_string())
}

/// FFN experts through the tier client [`ExpertCache`]: pinned in the top
/// tier while used, the next layer's experts prefetched from the routing.
pub struct PagedExperts {
    cache: ExpertCache,
}

fn client_err(e: ClientError) -> memwall::Error {
    memwall::Error::invalid("expert cache", "pager", e.to_string())
}

impl PagedExperts {
    /// Registers and writes every expert (they spill to NVMe as DDR fills).
    pub fn new(pager: &Pager, cfg: &ModelConfig, weights: &InMemoryExperts) -> Result<Self, ClientError> {
        let cache = ExpertCache::new(pager.clone(), ExpertCacheConfig::new(cfg.layers, cfg.moe(), cfg.expert_bytes()))?;
        for (l, layer) in weights.0.iter().enumerate() {
            for (e, w) in layer.iter().enumerate() {
                cache.load(l, e, bytemuck::cast_slice(w))?;
            }
        }
        cache.reset_stats();
        cache.start_recording();
        Ok(PagedExperts { cache })
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

    fn prefetch_next(&self, layer: usize, logits: &[f32], wg_next: &[f32], tokens: usize) -> memwall::Result<()> {
        let _span = trace::span(format!("prefetch for L{}", layer + 1), "fetch");
        self.cache.prefetch_next_layer(layer, logits, wg_next, tokens).map(drop).map_err(client_err)
    }
}

/// KV caches of waiting sequences, swapped to the pager whole.
pub struct KvSwap<'p> {
    pager: &'p Pager,
    stall: Mutex<Duration>,
    counts: Mutex<(u64, u64)>,
}

/// Object ids of swapped sequences start here (experts use low ids).
const KV_ID_BASE: u64 = 1 << 40;

impl<'p> KvSwap<'p> {
    /// A swapper over `pager`.
    pub fn new(pager: &'p Pager) -> Self {
        KvSwap { pager, stall: Mutex::new(Duration::ZERO), counts: Mutex::new((0, 0)) }
    }

    /// Time spent swapping.
    pub fn stall(&self) -> Duration {
        *self.stall.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swaps out.
    pub fn outs(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Swaps in.
    pub fn ins(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Writes sequence `s`'s cache as one object, written back to NVMe.
    pub fn swap_out(&self, s: usize, cache: SeqCache) -> memwall::Result<()> {
        let t = Instant::now();
        let mut bytes = Vec::with_capacity(16 + cache.bytes());
        bytes.extend_from_slice(&(cache.len as u64).to_le_bytes());
        bytes.extend_from_slice(&(cache.k.len() as u64).to_le_bytes());
        for layer in cache.k.iter().chain(&cache.v) {
            bytes.extend_from_slice(&(layer.len() as u64).to_le_bytes());
            bytes.extend_from_slice(bytemuck::cast_slice(layer));
        }
        let id = ObjectId(KV_ID_BASE + s as u64);
        self.pager.register(ObjectSpec::new(id.0, bytes.len(), ObjectClass::KvBlock)).map_err(err)?;
        self.pager.insert(id, &bytes).map_err(err)?;
        self.pager.evict(id, Tier::Ddr).map_err(err)?;
        *self.stall.lock().unwrap_or_else(|p| p.into_inner()) += t.elapsed();
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        Ok(())
    }

    /// Reads sequence `s`'s cache back and drops its object.
    pub fn swap_in(&self, s: usize, layers: usize) -> memwall::Result<SeqCache> {
        let t = Instant::now();
        let id = ObjectId(KV_ID_BASE + s as u64);
        let bytes = self.pager.read(id).map_err(err)?;
        self.pager.remove(id).map_err(err)?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
        let mut cache = SeqCache::new(layers);
        cache.len = word(0);
        let mut at = 16;
        for i in 0..2 * word(8) {
            let n = word(at);
            at += 8;
            let v: Vec<bf16> =
                bytemuck::cast_slice::<u8, u16>(&bytes[at..at + 2 * n]).iter().map(|&b| bf16::from_bits(b)).collect();
            at += 2 * n;
            if i < layers {
                cache.k[i] = v;
            } else {
                cache.v[i - layers] = v;
            }
        }
        *self.stall.lock().unwrap_or_else(|p| p.into_inner()) += t.elapsed();
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        Ok(cache)
    }
}
