//! MoE++ gating with zero-computation experts (Jin et al., ICLR 2025):
//! routing with gating residuals, dispatch of FFN experts, and combine, on
//! the CPU ([`route`], [`dispatch`], [`combine`]), the GPU and the emulator
//! (`kernels/moe.cu`, [`plans`]), with an f64 [`mod@reference`]; and one FFN
//! expert's feed-forward over its dispatched rows ([`expert_ffn`],
//! `kernels/expert_ffn.cu`).
//!
//! Per token with logits `l` (N experts) and the previous layer's raw logits
//! `G'`: `G = l + W_g G'` is passed on to the next layer; the softmax over
//! all N gives `p`; the top-k experts (ties to the lower index, NaN as -inf)
//! get weights (see [`Renorm`]); FFN experts are dispatched, the others are
//! computed in [`combine`]: zero gives 0, copy gives `x`, constant expert `c`
//! gives `a1 x + a2 v_c` with `[a1, a2] = softmax(W_c x)`. Load balance:
//! `f_i` = share of tokens selecting `i`, `P_i` = mean of `p_i`,
//! `L_b = sum eta_i f_i P_i` with `eta = 1` for FFN and `tau` for the rest.

mod config;
mod cpu;
mod device;
mod ffn;
mod gpu;
pub mod reference;

#[cfg(test)]
mod test;

pub use config::{ExpertKind, ExpertLayout, MoeConfig, Renorm, MAX_EXPERTS, MAX_TOP_K};
pub use cpu::{combine, dispatch, route};
pub use device::DeviceMoe;
#[cfg(feature = "emu")]
pub use ffn::expert_ffn_emu;
pub use ffn::{expert_ffn, expert_ffn_gpu, ffn_plans, FfnShape};
#[cfg(feature = "emu")]
pub use gpu::{combine_emu, route_and_dispatch_emu};
pub use gpu::{plans, MoePlans, Slots, CHUNK_TOKENS};

pub(crate) fn sample_plans() -> Vec<crate::gpu::LaunchPlan> {
    let mut plans = gpu::sample_plans();
    plans.extend(ffn::sample_plans());
    plans
}

use crate::dtype::Element;
use crate::error::{Error, Result};

/// The previous layer's raw logits and this layer's gating-residual weight.
#[derive(Debug, Clone, Copy)]
pub struct Residual<'a> {
    /// `G'`, T x N, row-major.
    pub prev_logits: &'a [f32],
    /// `W_g`, N x N: row `e` holds the weights of output `e`.
    pub wg: &'a [f32],
}

/// The tensors of one routing call.
#[derive(Debug, Clone, Copy)]
pub struct GateInputs<'a, L, A> {
    /// Tokens T.
    pub tokens: u32,
    /// Hidden size D.
    pub hidden: u32,
    /// This layer's router logits, T x N.
    pub logits: &'a [L],
    /// The gating residual; `None` in the first MoE layer.
    pub residual: Option<Residual<'a>>,
    /// The tokens' hidden states, T x D (for the constant experts).
    pub x: &'a [A],
    /// `W_c` of every constant expert, n_const x 2 x D.
    pub wc: &'a [f32],
}

/// What combine reads besides the routing.
#[derive(Debug, Clone, Copy)]
pub struct CombineInputs<'a, A> {
    /// The tokens' hidden states, T x D.
    pub x: &'a [A],
    /// The FFN experts' output rows in dispatched order, at least
    /// `expert_offsets[n_ffn]` x D (the emulator and GPU plans want
    /// [`MoeConfig::max_rows`] x D).
    pub expert_out: &'a [A],
    /// `v` of every constant expert, n_const x D.
    pub v: &'a [f32],
    /// Hidden size D.
    pub hidden: u32,
}

pub(crate) fn check_len(what: &'static str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::invalid(what, format!("{got} elements"), format!("expected {want}")));
    }
    Ok(())
}

pub(crate) fn check_len_at_least(what: &'static str, got: usize, want: usize) -> Result<()> {
    if got < want {
        return Err(Error::invalid(what, format!("{got} elements"), format!("expected at least {want}")));
    }
    Ok(())
}

impl<L: Element, A: Element> GateInputs<'_, L, A> {
    /// Checks the config and every length against it.
    pub fn validate(&self, cfg: &MoeConfig) -> Result<()> {
        cfg.validate()?;
        let (t, n, d) = (self.tokens as usize, cfg.layout.experts() as usize, self.hidden as usize);
        check_len("logits", self.logits.len(), t * n)?;
        check_len("x", self.x.len(), t * d)?;
        check_len("wc", self.wc.len(), cfg.layout.n_const as usize * 2 * d)?;
        if let Some(r) = &self.residual {
            check_len("prev_logits", r.prev_logits.len(), t * n)?;
            check_len("wg", r.wg.len(), n * n)?;
        }
        Ok(())
    }
}

/// Load-balance statistics of one routing call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadStats {
    /// `f_i`: the share of tokens that selected expert `i`.
    pub f: Vec<f32>,
    /// `P_i`: the mean routing probability of expert `i`.
    pub p: Vec<f32>,
    /// `L_b = sum_i eta_i f_i P_i`.
    pub lb: f32,
}

/// The result of routing T tokens.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routing {
    /// `G`, T x N: the raw logits passed to the next layer.
    pub next_logits: Vec<f32>,
    /// Softmax probabilities, T x N.
    pub probs: Vec<f32>,
    /// Top-k expert ids, T x k, best first.
    pub ids: Vec<i32>,
    /// Their weights, T x k.
    pub weights: Vec<f32>,
    /// `[a1, a2]` per slot, T x k x 2 (zero for non-constant experts).
    pub alpha: Vec<f32>,
    /// Load-balance statistics.
    pub stats: LoadStats,
}

impl Routing {
    fn zeroed(t: usize, n: usize, k: usize) -> Self {
        Routing {
            next_logits: vec![0.0; t * n],
            probs: vec![0.0; t * n],
            ids: vec![0; t * k],
            weights: vec![0.0; t * k],
            alpha: vec![0.0; t * k * 2],
            stats: LoadStats::default(),
        }
    }
}

/// FFN experts' tokens, grouped by expert for grouped GEMM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dispatch {
    /// Row offset of each FFN expert's group; the last entry is the total
    /// (padded) row count.
    pub expert_offsets: Vec<u32>,
    /// Rows each FFN expert holds (after capacity, before padding).
    pub expert_counts: Vec<u32>,
    /// The token of each row, -1 for padding rows.
    pub sorted_tokens: Vec<i32>,
    /// The row of each (token, slot), T x k; -1 for zero-computation experts
    /// and assignments past an expert's capacity.
    pub slot_rows: Vec<i32>,
}
