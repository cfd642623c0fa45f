//! The f64 reference: the same routing computed in double precision, the
//! oracle for the CPU path and the kernels.

use crate::dtype::Element;
use crate::error::Result;

use super::config::{ExpertKind, MoeConfig, Renorm};
use super::GateInputs;

/// The reference routing of all tokens: (next_logits, probs, ids, weights,
/// alpha, f, P, L_b), all in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingF64 {
    /// `G`, T x N.
    pub next_logits: Vec<f64>,
    /// Probabilities, T x N.
    pub probs: Vec<f64>,
    /// Top-k ids, T x k.
    pub ids: Vec<i32>,
    /// Weights, T x k.
    pub weights: Vec<f64>,
    /// `[a1, a2]` per slot.
    pub alpha: Vec<f64>,
    /// `f_i`.
    pub f: Vec<f64>,
    /// `P_i`.
    pub p: Vec<f64>,
    /// `L_b`.
    pub lb: f64,
}

/// Routes every token in f64.
pub fn route<L: Element, A: Element>(cfg: &MoeConfig, inp: &GateInputs<'_, L, A>) -> Result<RoutingF64> {
    inp.validate(cfg)?;
    let (t, n, k, d) = (inp.tokens as usize, cfg.layout.experts() as usize, cfg.top_k as usize, inp.hidden as usize);
    let mut r = RoutingF64 {
        next_logits: vec![0.0; t * n],
        probs: vec![0.0; t * n],
        ids: vec![0; t * k],
        weights: vec![0.0; t * k],
        alpha: vec![0.0; t * k * 2],
        f: vec![0.0; n],
        p: vec![0.0; n],
        lb: 0.0,
    };
    for tok in 0..t {
        let mut g: Vec<f64> = (0..n).map(|e| f64::from(inp.logits[tok * n + e].to_f32())).collect();
        if let Some(res) = &inp.residual {
            for (e, ge) in g.iter_mut().enumerate() {
                *ge +=
                    (0..n).map(|j| f64::from(res.wg[e * n + j]) * f64::from(res.prev_logits[tok * n + j])).sum::<f64>();
            }
        }
        r.next_logits[tok * n..(tok + 1) * n].copy_from_slice(&g);
        for v in g.iter_mut() {
            if v.is_nan() {
                *v = f64::NEG_INFINITY;
            }
        }
        if let Some(target) = cfg.logits_norm_std {
            let mean = g.iter().sum::<f64>() / n as f64;
            let sd = (g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64).sqrt();
            if sd > 0.0 && sd.is_finite() {
                g.iter_mut().for_each(|v| *v *= f64::from(target) / sd);
            }
        }
        let m = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = g
            .iter()
            .map(|&v| if m == f64::NEG_INFINITY || v == f64::NEG_INFINITY { 0.0 } else { (v - m).exp() })
            .collect();
        let s: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|v| if s > 0.0 { v / s } else { 0.0 }).collect();
        r.probs[tok * n..(tok + 1) * n].copy_from_slice(&p);
        // Stable sort by probability descending keeps lower indices first on ties.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let zero_start = (cfg.layout.experts() - cfg.layout.n_zero) as usize;
        let mut wsum = 0.0;
        for (s, &id) in order.iter().take(k).enumerate() {
            r.ids[tok * k + s] = id as i32;
            let w = if cfg.renorm == Renorm::ReferenceCode && id >= zero_start { 0.0 } else { p[id] };
            r.weights[tok * k + s] = w;
            wsum += w;
            if let ExpertKind::Constant(c) = cfg.layout.kind(id as u32) {
                let (mut d0, mut d1) = (0.0f64, 0.0f64);
                for i in 0..d {
                    let xv = f64::from(inp.x[tok * d + i].to_f32());
                    d0 += f64::from(inp.wc[(c as usize * 2) * d + i]) * xv;
                    d1 += f64::from(inp.wc[(c as usize * 2 + 1) * d + i]) * xv;
                }
                let mx = d0.max(d1);
                let (e0, e1) = ((d0 - mx).exp(), (d1 - mx).exp());
                r.alpha[(tok * k + s) * 2] = e0 / (e0 + e1);
                r.alpha[(tok * k + s) * 2 + 1] = e1 / (e0 + e1);
            }
        }
        if cfg.renorm == Renorm::ReferenceCode {
            for s in 0..k {
                r.weights[tok * k + s] = if wsum > 0.0 { r.weights[tok * k + s] / wsum } else { 0.0 };
            }
        }
    }
    if t > 0 {
        for &id in &r.ids {
            r.f[id as usize] += 1.0 / t as f64;
        }
        for e in 0..n {
            r.p[e] = (0..t).map(|tok| r.probs[tok * n + e]).sum::<f64>() / t as f64;
        }
    }
    r.lb = (0..n).map(|e| if (e as u32) < cfg.layout.n_ffn { 1.0 } else { f64::from(cfg.tau) } * r.f[e] * r.p[e]).sum();
    Ok(r)
}

/// The layer output in f64 given the routing and per-row FFN outputs:
/// `ffn(row_token, expert)` returns the expert's output row for a token.
pub fn combine<A: Element>(
    cfg: &MoeConfig,
    r: &RoutingF64,
    x: &[A],
    v: &[f32],
    hidden: u32,
    kept: impl Fn(usize, usize) -> bool,
    ffn: impl Fn(usize, usize, usize) -> f64,
) -> Vec<f64> {
    let (k, d) = (cfg.top_k as usize, hidden as usize);
    let t = r.ids.len() / k;
    let mut out = vec![0.0; t * d];
    for tok in 0..t {
        for i in 0..d {
            let xv = f64::from(x[tok * d + i].to_f32());
            let mut acc = 0.0;
            for s in 0..k {
                let a = tok * k + s;
                let e = r.ids[a] as usize;
                let w = r.weights[a];
                acc += match cfg.layout.kind(e as u32) {
                    ExpertKind::Ffn if kept(tok, s) => w * ffn(tok, e, i),
                    ExpertKind::Ffn | ExpertKind::Zero => 0.0,
                    ExpertKind::Copy => w * xv,
                    ExpertKind::Constant(c) => {
                        w * (r.alpha[2 * a] * xv + r.alpha[2 * a + 1] * f64::from(v[c as usize * d + i]))
                    }
                };
            }
            out[tok * d + i] = acc;
        }
    }
    out
}
