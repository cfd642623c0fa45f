//! Predicting the next layer's experts from the MoE++ gating residual.

use memwall::moe::MoeConfig;

/// The next layer's likely FFN experts: per token, the top-k (the config's
/// `top_k`, ties to the lower index) of `W_g G` over all `N` experts, where
/// `G` is this layer's raw logits as passed on by the routing
/// ([`memwall::moe::Routing::next_logits`], `tokens x N`) and `W_g` the
/// next layer's gating-residual weight (`N x N`, row `e` for output `e`).
/// Zero-computation experts are dropped (they need no weights); the result
/// is deduplicated in first-seen order. Slices shorter than the shape asks
/// for predict from the tokens they hold.
pub fn predict_experts(moe: &MoeConfig, logits: &[f32], wg_next: &[f32], tokens: usize) -> Vec<usize> {
    let n = moe.layout.experts() as usize;
    let n_ffn = moe.layout.n_ffn as usize;
    let k = (moe.top_k as usize).min(n);
    if n == 0 || wg_next.len() < n * n {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut scores: Vec<(f32, usize)> = Vec::with_capacity(n);
    for g in logits.chunks_exact(n).take(tokens) {
        scores.clear();
        scores.extend(wg_next.chunks_exact(n).take(n).enumerate().map(|(e, row)| {
            let s = row.iter().zip(g).map(|(w, x)| w * x).sum::<f32>();
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
