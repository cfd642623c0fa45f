//! A small MoE++ decoder stack with synthetic weights: attention over a
//! paged KV cache, MoE++ gating with zero-computation experts and gating
//! residuals, FFN experts fetched through an [`ExpertSource`].
//!
//! Everything is deterministic given the seed, so a paged run and a
//! non-paged run of the same model produce identical tokens.

use half::bf16;
use memwall::dtype::Dtype;
use memwall::moe::{ExpertLayout, GateInputs, MoeConfig, Residual, Routing};
use memwall::Result;

use super::backend::{Backend, MoeLayer};
use memwall_tiers::clients::kv::{KvCache, KvShape, SeqId};

/// A tier-client error as a memwall error, for the model's `Result`.
pub fn kv_err(e: memwall_tiers::clients::ClientError) -> memwall::Error {
    memwall::Error::invalid("KV cache", "tier client", e.to_string())
}

/// Model sizes (from the demo's flags).
#[derive(Debug, Clone, Copy)]
pub struct ModelConfig {
    /// Vocabulary (bytes).
    pub vocab: usize,
    /// Hidden size D = heads x 64.
    pub d_model: usize,
    /// Attention heads (head dim 64).
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Expert FFN hidden size.
    pub ffn: usize,
    /// Experts: a MoE++ paper layout (12, 20 or 40).
    pub experts: u32,
    /// Tokens per KV page.
    pub page_size: usize,
    /// Weight seed.
    pub seed: u64,
}

impl ModelConfig {
    /// Head dimension.
    pub const HEAD_DIM: usize = 64;

    /// The MoE++ routing configuration.
    pub fn moe(&self) -> MoeConfig {
        MoeConfig::new(ExpertLayout::paper(self.experts).expect("12, 20 or 40 experts"))
    }

    /// Bytes of one expert's weights (W1 then W2, f32).
    pub fn expert_bytes(&self) -> usize {
        2 * self.d_model * self.ffn * 4
    }
}

/// Deterministic pseudo-random weights.
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed` and a weight's identity.
    pub fn new(seed: u64, salt: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1)
    }

    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// `n` values uniform in [-scale, scale].
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// One expert's weights: W1 (ffn x d) and W2 (d x ffn), concatenated.
pub fn expert_weights(cfg: &ModelConfig, layer: usize, e: usize) -> Vec<f32> {
    let n = cfg.d_model * cfg.ffn;
    Rng::new(cfg.seed, 1000 + (layer * 1000 + e) as u64).vec(2 * n, 1.0 / (cfg.d_model as f32).sqrt())
}

/// Where the FFN experts' weights come from: memory, or the tier pager.
pub trait ExpertSource {
    /// Calls `f` with expert `e` of `layer` (W1 then W2, f32).
    fn with_expert(&self, layer: usize, e: usize, f: &mut dyn FnMut(&[f32])) -> Result<()>;
    /// After `layer`'s routing: what predicts the next layer's experts,
    /// which a paged source prefetches.
    fn prefetch_next(&self, layer: usize, next: &NextLayer<'_>) -> Result<()>;
    /// Calls `f` with expert `e` of `layer` in device memory (W1 then W2,
    /// f32 bytes), for the GPU backend. `f` must finish its device work
    /// before it returns (the copy may move once it is released).
    fn with_expert_device(
        &self,
        layer: usize,
        e: usize,
        f: &mut dyn FnMut(&memwall::gpu::cuda::CudaSlice<u8>) -> Result<()>,
    ) -> Result<()> {
        let _ = f;
        Err(memwall::Error::invalid(
            "expert source",
            format!("layer {layer} expert {e}"),
            "this source has no device copies (a GPU run needs HBM-backed experts)",
        ))
    }
}

/// What layer `j` knows of layer `j + 1`'s routing when it has routed.
#[derive(Debug, Clone, Copy)]
pub struct NextLayer<'a> {
    /// This layer's raw logits `G` as passed on (`tokens x N`).
    pub logits: &'a [f32],
    /// The next layer's gating-residual weight `W_g` (`N x N`).
    pub wg_next: &'a [f32],
    /// The next layer's router (`N x D`).
    pub router_next: &'a [f32],
    /// This layer's normalized MoE input (`tokens x D`).
    pub hidden_states: &'a [f32],
    /// D.
    pub hidden: usize,
    /// Tokens.
    pub tokens: usize,
}

/// All experts in memory: the non-paged reference run.
pub struct InMemoryExperts(pub Vec<Vec<Vec<f32>>>);

impl InMemoryExperts {
    /// Builds every expert of every layer.
    pub fn new(cfg: &ModelConfig) -> Self {
        let nf = cfg.moe().layout.n_ffn as usize;
        InMemoryExperts((0..cfg.layers).map(|l| (0..nf).map(|e| expert_weights(cfg, l, e)).collect()).collect())
    }
}

impl ExpertSource for InMemoryExperts {
    fn with_expert(&self, layer: usize, e: usize, f: &mut dyn FnMut(&[f32])) -> Result<()> {
        f(&self.0[layer][e]);
        Ok(())
    }
    fn prefetch_next(&self, _layer: usize, _next: &NextLayer<'_>) -> Result<()> {
        Ok(())
    }
}

struct Layer {
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    router: Vec<f32>,
    wg: Vec<f32>,
    wc: Vec<f32>,
    v: Vec<f32>,
}

/// The model's dense weights (everything but the FFN experts).
pub struct Model {
    /// Sizes.
    pub cfg: ModelConfig,
    embed: Vec<f32>,
    layers: Vec<Layer>,
}

/// `out[r] = sum_c w[r][c] x[c]` for a row-major `rows x cols` matrix.
fn matvec(w: &[f32], x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    for (r, o) in out.iter_mut().enumerate() {
        *o = w[r * cols..(r + 1) * cols].iter().zip(x).map(|(a, b)| a * b).sum();
    }
}

fn rmsnorm(x: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + 1e-6).sqrt();
    x.iter().map(|v| v * inv).collect()
}

/// What a decode step did, for the demo's accounting.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepStats {
    /// FFN expert evaluations.
    pub expert_calls: u64,
    /// Slots routed to zero-computation experts.
    pub zero_computation_slots: u64,
}

impl Model {
    /// Builds the dense weights from the seed.
    pub fn new(cfg: ModelConfig) -> Self {
        let d = cfg.d_model;
        let kvd = cfg.kv_heads * ModelConfig::HEAD_DIM;
        let moe = cfg.moe();
        let n = moe.layout.experts() as usize;
        let nc = moe.layout.n_const as usize;
        let s = 1.0 / (d as f32).sqrt();
        let layers = (0..cfg.layers)
            .map(|l| {
                let mut r = Rng::new(cfg.seed, l as u64);
                Layer {
                    wq: r.vec(d * d, s),
                    wk: r.vec(kvd * d, s),
                    wv: r.vec(kvd * d, s),
                    wo: r.vec(d * d, s),
                    router: r.vec(n * d, s * 4.0),
                    wg: r.vec(n * n, 0.3),
                    wc: r.vec(nc * 2 * d, s),
                    v: r.vec(nc * d, 1.0),
                }
            })
            .collect();
        let embed = Rng::new(cfg.seed, 999).vec(cfg.vocab * d, 1.0);
        Model { cfg, embed, layers }
    }

    /// The KV cache's shape for this model with `num_pages` pages.
    pub fn kv_shape(&self, num_pages: usize) -> KvShape {
        KvShape {
            layers: self.cfg.layers,
            kv_heads: self.cfg.kv_heads,
            head_dim: ModelConfig::HEAD_DIM,
            page_size: self.cfg.page_size,
            num_pages,
            dtype: Dtype::BF16,
        }
    }

    /// Runs one token per sequence through the stack and returns each
    /// sequence's next token (greedy). Appends the tokens to the sequences
    /// in `kv` (the paged KV cache of the tier clients), whose block tables
    /// the decode attention reads.
    pub fn step(
        &self,
        tokens: &[u8],
        seqs: &[SeqId],
        kv: &mut KvCache,
        experts: &dyn ExpertSource,
        backend: &dyn Backend,
    ) -> Result<(Vec<u8>, StepStats)> {
        let cfg = &self.cfg;
        let (d, hd, b) = (cfg.d_model, ModelConfig::HEAD_DIM, tokens.len());
        let kvd = cfg.kv_heads * hd;
        let moe_cfg = cfg.moe();
        let n = moe_cfg.layout.experts() as usize;
        let mut stats = StepStats::default();
        // A slot for this token in every layer; each layer writes its K/V
        // into it before its attention reads the cache.
        let zeros = vec![bf16::ZERO; cfg.layers * kvd];
        let mut positions = Vec::with_capacity(b);
        for &s in seqs {
            positions.push(kv.append(s, &zeros, &zeros).map_err(kv_err)?);
        }
        // Token embedding plus a sinusoidal position embedding.
        let mut x: Vec<f32> = Vec::with_capacity(b * d);
        for (s, &t) in tokens.iter().enumerate() {
            let pos = positions[s] as f32;
            for i in 0..d {
                let freq = 10000f32.powf(-((i / 2 * 2) as f32) / d as f32);
                let pe = if i % 2 == 0 { (pos * freq).sin() } else { (pos * freq).cos() };
                x.push(self.embed[t as usize * d + i] + pe);
            }
        }
        let mut prev_logits: Option<Vec<f32>> = None;
        for (li, layer) in self.layers.iter().enumerate() {
            // Attention over the paged cache, all sequences in one decode call.
            let mut q = vec![bf16::ZERO; b * d];
            for s in 0..b {
                let h = rmsnorm(&x[s * d..(s + 1) * d]);
                let (mut qs, mut ks, mut vs) = (vec![0f32; d], vec![0f32; kvd], vec![0f32; kvd]);
                matvec(&layer.wq, &h, &mut qs);
                matvec(&layer.wk, &h, &mut ks);
                matvec(&layer.wv, &h, &mut vs);
                for (dst, v) in q[s * d..(s + 1) * d].iter_mut().zip(&qs) {
                    *dst = bf16::from_f32(*v);
                }
                let kb: Vec<bf16> = ks.iter().map(|&v| bf16::from_f32(v)).collect();
                let vb: Vec<bf16> = vs.iter().map(|&v| bf16::from_f32(v)).collect();
                kv.write(seqs[s], li, positions[s], &kb, &vb).map_err(kv_err)?;
            }
            let batch = kv.batch(seqs).map_err(kv_err)?;
            let shape = batch.decode_shape(kv.shape(), cfg.heads as u32, 1.0 / (hd as f32).sqrt());
            let mut out = vec![bf16::ZERO; b * d];
            let mut lse = vec![0f32; b * cfg.heads];
            backend.attention(kv, li, &shape, &q, &mut out, &mut lse)?;
            for s in 0..b {
                let of: Vec<f32> = out[s * d..(s + 1) * d].iter().map(|v| v.to_f32()).collect();
                let mut proj = vec![0f32; d];
                matvec(&layer.wo, &of, &mut proj);
                for (xv, p) in x[s * d..(s + 1) * d].iter_mut().zip(&proj) {
                    *xv += p;
                }
            }

            // MoE++ layer.
            let h: Vec<f32> = (0..b).flat_map(|s| rmsnorm(&x[s * d..(s + 1) * d])).collect();
            let mut logits = vec![0f32; b * n];
            for s in 0..b {
                matvec(&layer.router, &h[s * d..(s + 1) * d], &mut logits[s * n..(s + 1) * n]);
            }
            let inputs = GateInputs {
                tokens: b as u32,
                hidden: d as u32,
                logits: &logits,
                residual: prev_logits.as_ref().map(|p| Residual { prev_logits: p, wg: &layer.wg }),
                x: &h,
                wc: &layer.wc,
            };
            // The next layer's routing is predictable from this layer's
            // logits through its W_g (the gating residual) and its router
            // applied to this layer's input (pre-gating): once routed,
            // prefetch those experts while this layer's experts compute.
            let mut prefetch = |routing: &Routing| -> Result<()> {
                if let Some(next) = self.layers.get(li + 1) {
                    let hint = NextLayer {
                        logits: &routing.next_logits,
                        wg_next: &next.wg,
                        router_next: &next.router,
                        hidden_states: &h,
                        hidden: d,
                        tokens: b,
                    };
                    experts.prefetch_next(li, &hint)?;
                }
                Ok(())
            };
            let mut moe_out = vec![0f32; b * d];
            let layer_moe = MoeLayer { cfg: &moe_cfg, layer: li, inputs: &inputs, v: &layer.v, ffn: cfg.ffn };
            let (routing, calls) = backend.moe(&layer_moe, experts, &mut prefetch, &mut moe_out)?;
            stats.expert_calls += calls;
            stats.zero_computation_slots +=
                routing.ids.iter().filter(|&&e| e as u32 >= moe_cfg.layout.n_ffn).count() as u64;
            for (xv, m) in x.iter_mut().zip(&moe_out) {
                *xv += m;
            }
            prev_logits = Some(routing.next_logits);
        }
        let next = (0..b)
            .map(|s| {
                let h = rmsnorm(&x[s * d..(s + 1) * d]);
                let mut best = (f32::NEG_INFINITY, 0u8);
                for t in 0..cfg.vocab {
                    let score: f32 = self.embed[t * d..(t + 1) * d].iter().zip(&h).map(|(a, b)| a * b).sum();
                    if score > best.0 {
                        best = (score, t as u8);
                    }
                }
                best.1
            })
            .collect();
        Ok((next, stats))
    }
}
