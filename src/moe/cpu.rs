//! The CPU path: the same routing, dispatch and combine as the kernels, in
//! f32, on all cores.

use crate::dtype::Element;
use crate::error::Result;
use crate::parallel::{parallel_ranges, SyncSlice};

use super::config::{ExpertKind, MoeConfig, Renorm};
use super::{CombineInputs, Dispatch, GateInputs, LoadStats, Routing};

/// Routing of one token: probabilities, top-k ids and weights, alpha.
/// `g` holds the token's logits (already with the residual) on entry.
#[inline(always)]
pub(crate) fn route_token(
    cfg: &MoeConfig,
    g: &mut [f32],
    const_alpha: impl Fn(u32) -> (f32, f32),
    ids: &mut [i32],
    w: &mut [f32],
    alpha: &mut [f32],
) {
    let n = g.len();
    for v in g.iter_mut() {
        if v.is_nan() {
            *v = f32::NEG_INFINITY;
        }
    }
    if let Some(target) = cfg.logits_norm_std {
        let mean = g.iter().sum::<f32>() / n as f32;
        let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / (n.max(2) - 1) as f32;
        let sd = var.sqrt();
        if sd > 0.0 && sd.is_finite() {
            let scale = target / sd;
            g.iter_mut().for_each(|v| *v *= scale);
        }
    }
    let m = g.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in g.iter_mut() {
        *v = if m == f32::NEG_INFINITY || *v == f32::NEG_INFINITY { 0.0 } else { (*v - m).exp() };
    }
    let s: f32 = g.iter().sum();
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    g.iter_mut().for_each(|v| *v *= inv);

    let mut taken = vec![false; n];
    let mut wsum = 0.0f32;
    let n_zero_start = cfg.layout.experts() - cfg.layout.n_zero;
    for r in 0..cfg.top_k as usize {
        let mut best = usize::MAX;
        for e in 0..n {
            if !taken[e] && (best == usize::MAX || g[e] > g[best]) {
                best = e;
            }
        }
        taken[best] = true;
        ids[r] = best as i32;
        let zero = best as u32 >= n_zero_start;
        w[r] = if cfg.renorm == Renorm::ReferenceCode && zero { 0.0 } else { g[best] };
        wsum += w[r];
        let (a1, a2) = match cfg.layout.kind(best as u32) {
            ExpertKind::Constant(c) => const_alpha(c),
            _ => (0.0, 0.0),
        };
        alpha[2 * r] = a1;
        alpha[2 * r + 1] = a2;
    }
    if cfg.renorm == Renorm::ReferenceCode {
        let winv = if wsum > 0.0 { 1.0 / wsum } else { 0.0 };
        w.iter_mut().for_each(|v| *v *= winv);
    }
}

/// `[a1, a2] = softmax(W_c x)` for constant expert `c` and token row `x`.
#[inline(always)]
pub(crate) fn const_alpha<A: Element>(wc: &[f32], c: u32, x: &[A]) -> (f32, f32) {
    let d = x.len();
    let w0 = &wc[c as usize * 2 * d..][..d];
    let w1 = &wc[(c as usize * 2 + 1) * d..][..d];
    let (mut d0, mut d1) = (0.0f32, 0.0f32);
    for i in 0..d {
        let xv = x[i].to_f32();
        d0 = w0[i].mul_add(xv, d0);
        d1 = w1[i].mul_add(xv, d1);
    }
    let mx = d0.max(d1);
    let (e0, e1) = ((d0 - mx).exp(), (d1 - mx).exp());
    (e0 / (e0 + e1), e1 / (e0 + e1))
}

/// Gating for all tokens, multithreaded.
pub fn route<L: Element, A: Element>(cfg: &MoeConfig, inputs: &GateInputs<'_, L, A>) -> Result<Routing> {
    inputs.validate(cfg)?;
    let (t, n, k) = (inputs.tokens as usize, cfg.layout.experts() as usize, cfg.top_k as usize);
    let mut out = Routing::zeroed(t, n, k);
    {
        let next = SyncSlice::new(&mut out.next_logits);
        let probs = SyncSlice::new(&mut out.probs);
        let ids = SyncSlice::new(&mut out.ids);
        let weights = SyncSlice::new(&mut out.weights);
        let alpha = SyncSlice::new(&mut out.alpha);
        parallel_ranges(t, |start, count| {
            for tok in start..start + count {
                // SAFETY: each token's ranges are disjoint from every other
                // token's, and each thread handles distinct tokens.
                let token_out = unsafe {
                    TokenOut {
                        next: next.slice(tok * n, n),
                        probs: probs.slice(tok * n, n),
                        ids: ids.slice(tok * k, k),
                        weights: weights.slice(tok * k, k),
                        alpha: alpha.slice(tok * 2 * k, 2 * k),
                    }
                };
                route_one_fast(cfg, inputs, tok, token_out);
            }
        });
    }
    out.stats = load_stats(cfg, t, &out.probs, &out.ids);
    Ok(out)
}

/// One token's slices of the routing outputs.
struct TokenOut<'a> {
    next: &'a mut [f32],
    probs: &'a mut [f32],
    ids: &'a mut [i32],
    weights: &'a mut [f32],
    alpha: &'a mut [f32],
}

/// Routes token `tok`: residual, softmax, top-k, weights, alpha.
#[inline(always)]
fn route_one<L: Element, A: Element>(cfg: &MoeConfig, inputs: &GateInputs<'_, L, A>, tok: usize, out: TokenOut<'_>) {
    let n = cfg.layout.experts() as usize;
    let d = inputs.hidden as usize;
    let g = out.next;
    for (v, l) in g.iter_mut().zip(&inputs.logits[tok * n..(tok + 1) * n]) {
        *v = l.to_f32();
    }
    if let Some(r) = &inputs.residual {
        let prev = &r.prev_logits[tok * n..(tok + 1) * n];
        for (e, v) in g.iter_mut().enumerate() {
            let row = &r.wg[e * n..(e + 1) * n];
            *v += row.iter().zip(prev).fold(0.0f32, |a, (w, p)| w.mul_add(*p, a));
        }
    }
    out.probs.copy_from_slice(g);
    let x = &inputs.x[tok * d..(tok + 1) * d];
    route_token(cfg, out.probs, |c| const_alpha(inputs.wc, c, x), out.ids, out.weights, out.alpha);
}

/// [`route_one`] compiled with hardware FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn route_one_fma<L: Element, A: Element>(
    cfg: &MoeConfig,
    inputs: &GateInputs<'_, L, A>,
    tok: usize,
    out: TokenOut<'_>,
) {
    route_one(cfg, inputs, tok, out)
}

/// [`route_one`] with hardware FMA where the CPU has it (same results).
fn route_one_fast<L: Element, A: Element>(
    cfg: &MoeConfig,
    inputs: &GateInputs<'_, L, A>,
    tok: usize,
    out: TokenOut<'_>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA (checked just above).
        unsafe { route_one_fma(cfg, inputs, tok, out) };
        return;
    }
    route_one(cfg, inputs, tok, out)
}

/// f_i, P_i and L_b from the probabilities and selections.
pub(crate) fn load_stats(cfg: &MoeConfig, tokens: usize, probs: &[f32], ids: &[i32]) -> LoadStats {
    let n = cfg.layout.experts() as usize;
    let inv = if tokens > 0 { 1.0 / tokens as f32 } else { 0.0 };
    let mut sel = vec![0u32; n];
    for &e in ids {
        sel[e as usize] += 1;
    }
    let f: Vec<f32> = sel.iter().map(|&c| c as f32 * inv).collect();
    let p: Vec<f32> = (0..n).map(|e| (0..tokens).map(|t| probs[t * n + e]).sum::<f32>() * inv).collect();
    let lb = (0..n).map(|e| if (e as u32) < cfg.layout.n_ffn { 1.0 } else { cfg.tau } * f[e] * p[e]).sum();
    LoadStats { f, p, lb }
}

/// Groups FFN assignments by expert, in token order within an expert,
/// keeping at most the FFN capacity per expert and padding each expert's rows.
pub fn dispatch(cfg: &MoeConfig, routing: &Routing, tokens: u32) -> Dispatch {
    let nf = cfg.layout.n_ffn as usize;
    let k = cfg.top_k as usize;
    let cap = cfg.ffn_capacity(tokens);
    let mut total = vec![0u32; nf];
    for &e in &routing.ids {
        if (e as usize) < nf {
            total[e as usize] += 1;
        }
    }
    let counts: Vec<u32> = total.iter().map(|&c| c.min(cap)).collect();
    let mut offsets = Vec::with_capacity(nf + 1);
    let mut off = 0u32;
    for &c in &counts {
        offsets.push(off);
        off += c.div_ceil(cfg.pad_to) * cfg.pad_to;
    }
    offsets.push(off);
    let mut sorted = vec![-1i32; off as usize];
    let mut slot_rows = vec![-1i32; routing.ids.len()];
    let mut next = vec![0u32; nf];
    for (a, &e) in routing.ids.iter().enumerate() {
        let e = e as usize;
        if e < nf {
            let pos = next[e];
            next[e] += 1;
            if pos < cap {
                let row = offsets[e] + pos;
                sorted[row as usize] = (a / k) as i32;
                slot_rows[a] = row as i32;
            }
        }
    }
    Dispatch { expert_offsets: offsets, expert_counts: counts, sorted_tokens: sorted, slot_rows }
}

/// `out[t] = sum over slots of w * {expert_out row | 0 | x | a1 x + a2 v}`,
/// f32 accumulation in slot order, multithreaded over tokens.
pub fn combine<A: Element>(
    cfg: &MoeConfig,
    routing: &Routing,
    dispatch: &Dispatch,
    inputs: &CombineInputs<'_, A>,
    out: &mut [A],
) -> Result<()> {
    let CombineInputs { x, expert_out, v, hidden } = *inputs;
    let d = hidden as usize;
    let k = cfg.top_k as usize;
    let t = routing.ids.len() / k.max(1);
    super::check_len("x", x.len(), t * d)?;
    super::check_len("out", out.len(), t * d)?;
    super::check_len("v", v.len(), cfg.layout.n_const as usize * d)?;
    let rows = dispatch.expert_offsets.last().copied().unwrap_or(0) as usize;
    super::check_len_at_least("expert_out", expert_out.len(), rows * d)?;
    let out_s = SyncSlice::new(out);
    parallel_ranges(t, |start, count| {
        let mut terms = Vec::with_capacity(k);
        for tok in start..start + count {
            // One term per slot, decided once per token rather than per element.
            terms.clear();
            for s in 0..k {
                let a = tok * k + s;
                let w = routing.weights[a];
                terms.push(match cfg.layout.kind(routing.ids[a] as u32) {
                    ExpertKind::Ffn => match dispatch.slot_rows[a] {
                        row if row >= 0 => Term::Row(w, row as usize * d),
                        _ => Term::Nothing,
                    },
                    ExpertKind::Constant(c) => {
                        Term::Constant(w, routing.alpha[2 * a], routing.alpha[2 * a + 1], c as usize * d)
                    }
                    ExpertKind::Copy => Term::Copy(w),
                    ExpertKind::Zero => Term::Nothing,
                });
            }
            let xr = &x[tok * d..(tok + 1) * d];
            // SAFETY: token rows are disjoint, and each thread handles distinct tokens.
            let o = unsafe { out_s.slice(tok * d, d) };
            combine_token_fast(&terms, xr, expert_out, v, o);
        }
    });
    Ok(())
}

/// One token's output row: `o[i] = sum over terms`, fused multiply-adds in
/// slot order (as the kernel does, so the results are bit-identical). Term
/// by term over the whole row, so each pass vectorizes.
#[inline(always)]
fn combine_token<A: Element>(terms: &[Term], xr: &[A], expert_out: &[A], v: &[f32], o: &mut [A]) {
    let d = o.len();
    let mut acc = vec![0.0f32; d];
    let xf: Vec<f32> = xr.iter().map(|x| x.to_f32()).collect();
    for term in terms {
        match *term {
            Term::Row(w, base) => {
                for (a, e) in acc.iter_mut().zip(&expert_out[base..base + d]) {
                    *a = w.mul_add(e.to_f32(), *a);
                }
            }
            Term::Constant(w, a1, a2, vb) => {
                for ((a, xv), vv) in acc.iter_mut().zip(&xf).zip(&v[vb..vb + d]) {
                    *a = w.mul_add(a1 * xv + a2 * vv, *a);
                }
            }
            Term::Copy(w) => {
                for (a, xv) in acc.iter_mut().zip(&xf) {
                    *a = w.mul_add(*xv, *a);
                }
            }
            Term::Nothing => {}
        }
    }
    for (o, a) in o.iter_mut().zip(&acc) {
        *o = A::from_f32(*a);
    }
}

/// [`combine_token`] compiled with hardware FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn combine_token_fma<A: Element>(terms: &[Term], xr: &[A], expert_out: &[A], v: &[f32], o: &mut [A]) {
    combine_token(terms, xr, expert_out, v, o)
}

/// [`combine_token`] with hardware FMA where the CPU has it: `mul_add`
/// without it is a libm call, ~20x slower. Same results either way.
fn combine_token_fast<A: Element>(terms: &[Term], xr: &[A], expert_out: &[A], v: &[f32], o: &mut [A]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA (checked just above), the only
        // requirement of a target_feature function.
        unsafe { combine_token_fma(terms, xr, expert_out, v, o) };
        return;
    }
    combine_token(terms, xr, expert_out, v, o)
}

/// What one slot adds to a token's output.
#[derive(Clone, Copy)]
enum Term {
    /// `w * expert_out[row base + i]`.
    Row(f32, usize),
    /// `w * (a1 x + a2 v[base + i])`.
    Constant(f32, f32, f32, usize),
    /// `w * x`.
    Copy(f32),
    /// Zero experts and FFN slots dropped by capacity.
    Nothing,
}
