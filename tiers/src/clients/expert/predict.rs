//! Predicting the next layer's experts from the MoE++ gating residual,
//! optionally sharpened by pre-gating.
//!
//! Layer `j + 1`'s raw logits are `G' = R' h' + W_g' G`: its router `R'` on
//! its own (normalized) input `h'`, plus its gating-residual weight `W_g'` on
//! this layer's logits `G`. When layer `j` routes, `G` and `W_g'` are known
//! exactly, but `h'` is not yet: it is this layer's input `h` plus what this
//! layer's experts and the next attention add to the residual stream. The
//! residual term alone ([`predict_experts`]) is what MoE++'s gating residual
//! offers. Pre-gating (as in Pre-gated MoE, Hwang et al., ISCA 2024, which
//! trains for it) also applies the next router to the current input,
//! `R' h + W_g' G` ([`predict_experts_pregated`]); in a residual stack `h'`
//! stays close to `h`, so the estimate is much closer to the real logits
//! (measured on the demo's model: see `tiers/README.md`).

use memwall::moe::MoeConfig;

/// The pre-gating term: the next layer's router applied to this layer's
/// normalized input.
#[derive(Debug, Clone, Copy)]
pub struct Pregate<'a> {
    /// The next layer's router `R'`, `N x hidden`, row `e` for expert `e`.
    pub router_next: &'a [f32],
    /// This layer's normalized input `h`, `tokens x hidden`.
    pub hidden_states: &'a [f32],
    /// The hidden size.
    pub hidden: usize,
}

/// The next layer's likely FFN experts: per token, the top-k (the config's
/// `top_k`, ties to the lower index) of `W_g G` over all `N` experts, where
/// `G` is this layer's raw logits as passed on by the routing
/// ([`memwall::moe::Routing::next_logits`], `tokens x N`) and `W_g` the
/// next layer's gating-residual weight (`N x N`, row `e` for output `e`).
/// Zero-computation experts are dropped (they need no weights); the result
/// is deduplicated in first-seen order. Slices shorter than the shape asks
/// for predict from the tokens they hold.
pub fn predict_experts(moe: &MoeConfig, logits: &[f32], wg_next: &[f32], tokens: usize) -> Vec<usize> {
    predict_experts_pregated(moe, logits, wg_next, None, tokens)
}

/// As [`predict_experts`], with the top-k taken of `R' h + W_g G` when
/// `pregate` is given (see the module docs). A `pregate` whose slices are
/// shorter than `N x hidden` / `tokens x hidden` is ignored.
pub fn predict_experts_pregated(
    moe: &MoeConfig,
    logits: &[f32],
    wg_next: &[f32],
    pregate: Option<&Pregate<'_>>,
    tokens: usize,
) -> Vec<usize> {
    let n = moe.layout.experts() as usize;
    let n_ffn = moe.layout.n_ffn as usize;
    let k = (moe.top_k as usize).min(n);
    if n == 0 || wg_next.len() < n * n {
        return Vec::new();
    }
    let pregate = pregate
        .filter(|p| p.hidden > 0 && p.router_next.len() >= n * p.hidden && p.hidden_states.len() >= tokens * p.hidden);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut out = Vec::new();
    let mut scores: Vec<(f32, usize)> = Vec::with_capacity(n);
    for (t, g) in logits.chunks_exact(n).take(tokens).enumerate() {
        scores.clear();
        scores.extend(wg_next.chunks_exact(n).take(n).enumerate().map(|(e, row)| {
            let mut s = dot(row, g);
            if let Some(p) = pregate {
                let h = &p.hidden_states[t * p.hidden..(t + 1) * p.hidden];
                s += dot(&p.router_next[e * p.hidden..(e + 1) * p.hidden], h);
            }
            (if s.is_nan() { f32::NEG_INFINITY } else { s }, e)
        }));
        scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, e) in &scores[..k] {
            if e < n_ffn && !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}
