//! Routing traces without a model run: skewed synthetic traces, and traces
//! recorded from the real MoE++ gating over random logits.

use memwall::moe::{route, GateInputs, MoeConfig, Residual};

use super::super::rng::SplitMix;
use super::super::{ClientError, Result};
use super::predict::predict_experts;
use super::trace::{Trace, TraceEvent};

/// A skewed synthetic trace: per layer, experts ranked by a fixed random
/// permutation and drawn with Zipf probabilities `1 / rank^skew`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSpec {
    /// Layers.
    pub layers: usize,
    /// FFN experts per layer.
    pub experts: usize,
    /// Experts each token picks per layer (distinct).
    pub top_k: usize,
    /// Tokens per step (a layer accesses the union of their experts).
    pub tokens: usize,
    /// Forward steps.
    pub steps: usize,
    /// Zipf exponent: 0 is uniform, larger is more skewed.
    pub skew: f64,
    /// Share of each layer's experts its prediction names correctly (the
    /// rest are replaced by random wrong experts).
    pub accuracy: f64,
    /// Generator seed.
    pub seed: u64,
}

/// A trace drawn as [`SyntheticSpec`] describes: for each step and layer, a
/// prediction for the next layer, then the layer's accesses (each expert
/// once, in first-use order).
pub fn synthetic_trace(spec: &SyntheticSpec) -> Trace {
    let mut rng = SplitMix::new(spec.seed);
    let (l, n) = (spec.layers, spec.experts);
    let k = spec.top_k.min(n);
    let mut trace = Trace::new(l, n);
    if l == 0 || n == 0 {
        return trace;
    }
    let order: Vec<Vec<usize>> = (0..l).map(|_| rng.permutation(n)).collect();
    let mut cdf: Vec<f64> = (1..=n).map(|r| (r as f64).powf(-spec.skew)).collect();
    let total: f64 = cdf.iter().sum();
    let mut acc = 0.0;
    for c in cdf.iter_mut() {
        acc += *c / total;
        *c = acc;
    }
    let draw_layer = |rng: &mut SplitMix, layer: usize| -> Vec<usize> {
        let mut used = Vec::new();
        for _ in 0..spec.tokens {
            let mut mine: Vec<usize> = Vec::with_capacity(k);
            while mine.len() < k {
                let u = rng.unit();
                let rank = cdf.partition_point(|&c| c < u).min(n - 1);
                let e = order[layer][rank];
                if !mine.contains(&e) {
                    mine.push(e);
                }
            }
            for e in mine {
                if !used.contains(&e) {
                    used.push(e);
                }
            }
        }
        used
    };
    for _ in 0..spec.steps {
        let sets: Vec<Vec<usize>> = (0..l).map(|layer| draw_layer(&mut rng, layer)).collect();
        for layer in 0..l {
            if let Some(next) = sets.get(layer + 1) {
                let mut predicted: Vec<u32> = Vec::with_capacity(next.len());
                for &e in next {
                    let guess = if rng.unit() < spec.accuracy || next.len() >= n {
                        e
                    } else {
                        // A wrong expert: one the layer does not use.
                        loop {
                            let w = rng.below(n);
                            if !next.contains(&w) {
                                break w;
                            }
                        }
                    };
                    if !predicted.contains(&(guess as u32)) {
                        predicted.push(guess as u32);
                    }
                }
                trace.events.push(TraceEvent::Predict { layer: layer as u32 + 1, experts: predicted });
            }
            for &e in &sets[layer] {
                trace.events.push(TraceEvent::Access { layer: layer as u32, expert: e as u32 });
            }
        }
    }
    trace
}

/// A trace recorded from the MoE++ gating ([`memwall::moe::route`]) of a
/// stack of routers over random inputs: each layer's logits are a fixed
/// per-layer bias (skew) plus noise, the gating residual carries `G`
/// through each layer's `W_g`, and predictions are [`predict_experts`]
/// from `G` through the next layer's `W_g` — what
/// [`super::ExpertCache::prefetch_next_layer`] does in a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingTraceSpec {
    /// Layers.
    pub layers: usize,
    /// The MoE++ routing (expert layout, top-k).
    pub moe: MoeConfig,
    /// Tokens per step.
    pub tokens: usize,
    /// Forward steps.
    pub steps: usize,
    /// Scale of each layer's fixed logit bias (larger: more skewed).
    pub bias: f32,
    /// Scale of the per-token logit noise.
    pub noise: f32,
    /// Scale of `W_g`'s entries (larger: the residual dominates and the
    /// next layer's routing is more predictable).
    pub residual: f32,
    /// Generator seed.
    pub seed: u64,
}

/// Runs the routers of [`RoutingTraceSpec`] and records their FFN expert
/// accesses and the residual-based predictions.
pub fn moe_routing_trace(spec: &RoutingTraceSpec) -> Result<Trace> {
    let moe = spec.moe;
    moe.validate().map_err(|e| ClientError::invalid("moe", format!("{moe:?}"), e.to_string()))?;
    let n = moe.layout.experts() as usize;
    let n_ffn = moe.layout.n_ffn as usize;
    let t = spec.tokens;
    let tokens = u32::try_from(t).map_err(|_| ClientError::invalid("tokens", t, "must fit in u32"))?;
    let d = 4;
    let mut rng = SplitMix::new(spec.seed);
    let bias: Vec<Vec<f32>> = (0..spec.layers).map(|_| (0..n).map(|_| rng.normal() * spec.bias).collect()).collect();
    let wg: Vec<Vec<f32>> =
        (0..spec.layers).map(|_| (0..n * n).map(|_| rng.normal() * spec.residual).collect()).collect();
    let wc: Vec<f32> = (0..moe.layout.n_const as usize * 2 * d).map(|_| rng.normal()).collect();
    let mut trace = Trace::new(spec.layers, n_ffn);
    for _ in 0..spec.steps {
        let x: Vec<f32> = (0..t * d).map(|_| rng.normal()).collect();
        let mut prev: Option<Vec<f32>> = None;
        for layer in 0..spec.layers {
            let logits: Vec<f32> =
                (0..t * n).map(|i| bias[layer][i % n] + rng.normal() * spec.noise).collect::<Vec<f32>>();
            let inputs = GateInputs {
                tokens,
                hidden: d as u32,
                logits: &logits,
                residual: prev.as_deref().map(|p| Residual { prev_logits: p, wg: &wg[layer] }),
                x: &x,
                wc: &wc,
            };
            let routing = route(&moe, &inputs).map_err(|e| ClientError::invalid("routing", layer, e.to_string()))?;
            if layer + 1 < spec.layers {
                let predicted = predict_experts(&moe, &routing.next_logits, &wg[layer + 1], t);
                let experts = predicted.into_iter().map(|e| e as u32).collect();
                trace.events.push(TraceEvent::Predict { layer: layer as u32 + 1, experts });
            }
            let mut used: Vec<u32> = Vec::new();
            for &e in &routing.ids {
                if (e as usize) < n_ffn && !used.contains(&(e as u32)) {
                    used.push(e as u32);
                }
            }
            for expert in used {
                trace.events.push(TraceEvent::Access { layer: layer as u32, expert });
            }
            prev = Some(routing.next_logits);
        }
    }
    Ok(trace)
}
