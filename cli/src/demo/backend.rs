//! Where a decode step's attention and MoE++ layer run: [`CpuBackend`]
//! (memwall's CPU paths over a KV pool in DDR) or, on a GPU, the kernels
//! over HBM (`super::gpu::GpuBackend`).

use half::bf16;
use memwall::attention::{decode, DecodeShape};
use memwall::moe::{self, CombineInputs, FfnShape, GateInputs, MoeConfig, Routing};
use memwall::Result;
use memwall_tiers::clients::kv::KvCache;

use super::model::{kv_err, ExpertSource};

/// One MoE++ layer's inputs.
pub struct MoeLayer<'a> {
    /// The routing configuration.
    pub cfg: &'a MoeConfig,
    /// The layer index (experts are per layer).
    pub layer: usize,
    /// Router logits, residual, normalized hidden states `h`, `W_c`.
    pub inputs: &'a GateInputs<'a, f32, f32>,
    /// The constant experts' `v`.
    pub v: &'a [f32],
    /// The experts' FFN hidden size.
    pub ffn: usize,
}

/// Called with the routing as soon as it exists (before the experts run):
/// the model prefetches the next layer's experts from it.
pub type OnRouted<'a> = dyn FnMut(&Routing) -> Result<()> + 'a;

/// The compute of a decode step.
pub trait Backend {
    /// A name for the table ("CPU", or the GPU's).
    fn name(&self) -> String;

    /// Decode attention of layer `layer` for the batch `shape` describes,
    /// over `kv`'s cache: `q` `[batch, heads, 64]`, `out` likewise, `lse`
    /// `[batch, heads]`.
    fn attention(
        &self,
        kv: &KvCache,
        layer: usize,
        shape: &DecodeShape<'_>,
        q: &[bf16],
        out: &mut [bf16],
        lse: &mut [f32],
    ) -> Result<()>;

    /// The MoE++ layer: routing (handed to `on_routed` first), every FFN
    /// expert that received tokens (weights from `experts`), combine into
    /// `out` (`tokens x hidden`). Returns the routing and the FFN experts
    /// evaluated.
    fn moe(
        &self,
        layer: &MoeLayer<'_>,
        experts: &dyn ExpertSource,
        on_routed: &mut OnRouted<'_>,
        out: &mut [f32],
    ) -> Result<(Routing, u64)>;
}

/// The FFN experts `disp` gave tokens to, each with the shape of its call
/// (`ffn` hidden units, `t` tokens of hidden size `d`).
pub fn ffn_calls(disp: &moe::Dispatch, t: u32, d: u32, ffn: usize) -> impl Iterator<Item = (usize, FfnShape)> + '_ {
    let total = *disp.expert_offsets.last().unwrap_or(&0);
    disp.expert_counts.iter().enumerate().filter(|(_, &count)| count > 0).map(move |(e, _)| {
        let (row0, row1) = (disp.expert_offsets[e], disp.expert_offsets[e + 1]);
        (e, FfnShape { tokens: t, hidden: d, ffn: ffn as u32, total_rows: total, row0, rows: row1 - row0 })
    })
}

/// memwall's CPU paths; the KV pool must be in host memory (DDR).
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "CPU".into()
    }

    fn attention(
        &self,
        kv: &KvCache,
        layer: usize,
        shape: &DecodeShape<'_>,
        q: &[bf16],
        out: &mut [bf16],
        lse: &mut [f32],
    ) -> Result<()> {
        decode(shape, q, kv.k_cache(layer).map_err(kv_err)?, kv.v_cache(layer).map_err(kv_err)?, out, lse)
    }

    fn moe(
        &self,
        layer: &MoeLayer<'_>,
        experts: &dyn ExpertSource,
        on_routed: &mut OnRouted<'_>,
        out: &mut [f32],
    ) -> Result<(Routing, u64)> {
        let MoeLayer { cfg, inputs, v, ffn, .. } = *layer;
        let (t, d) = (inputs.tokens, inputs.hidden);
        let routing = moe::route(cfg, inputs)?;
        on_routed(&routing)?;
        let disp = moe::dispatch(cfg, &routing, t);
        let mut expert_out = vec![0f32; cfg.max_rows(t) as usize * d as usize];
        let mut calls = 0;
        for (e, s) in ffn_calls(&disp, t, d, ffn) {
            calls += 1;
            let mut result = Ok(());
            experts.with_expert(layer.layer, e, &mut |w| {
                result = moe::expert_ffn(&s, w, inputs.x, &disp.sorted_tokens, &mut expert_out);
            })?;
            result?;
        }
        let ci = CombineInputs { x: inputs.x, expert_out: &expert_out, v, hidden: d };
        moe::combine(cfg, &routing, &disp, &ci, out)?;
        Ok((routing, calls))
    }
}
