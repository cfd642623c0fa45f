//! AdamW: the hyperparameters, the multithreaded partition kernel the
//! offload streams, and a plain in-memory reference.
//!
//! The update is PyTorch's `torch.optim.AdamW` (decoupled weight decay,
//! bias correction), per element at step `t` (1-based):
//!
//! ```text
//! p = p * (1 - lr * weight_decay)
//! m = beta1 * m + (1 - beta1) * g
//! v = beta2 * v + (1 - beta2) * g * g
//! p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```

use super::super::{ClientError, Result};

/// AdamW's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight
    /// decay 0.01.
    fn default() -> Self {
        AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// The per-step constants of the update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coefficients {
    decay: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}

impl AdamW {
    /// Checks every value; the error names it.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("lr", self.lr, self.lr.is_finite() && self.lr >= 0.0, "must be finite and >= 0"),
            ("beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "must be in [0, 1)"),
            ("beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "must be in [0, 1)"),
            ("eps", self.eps, self.eps.is_finite() && self.eps > 0.0, "must be finite and > 0"),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                "must be finite and >= 0",
            ),
        ];
        for (what, value, ok, reason) in checks {
            if !ok {
                return Err(ClientError::invalid(what, value, reason));
            }
        }
        Ok(())
    }

    /// The constants of step `t` (1-based); bias corrections in f64.
    pub(crate) fn coefficients(&self, t: u64) -> Coefficients {
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - f64::from(self.beta1).powi(t);
        let bc2 = 1.0 - f64::from(self.beta2).powi(t);
        Coefficients {
            decay: 1.0 - self.lr * self.weight_decay,
            beta1: self.beta1,
            one_minus_beta1: 1.0 - self.beta1,
            beta2: self.beta2,
            one_minus_beta2: 1.0 - self.beta2,
            step_size: (f64::from(self.lr) / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: self.eps,
        }
    }
}

/// One partition's state, read side: `[master | m | v]`, `n` each.
pub(crate) struct StateIn<'a> {
    pub(crate) master: &'a [f32],
    pub(crate) m: &'a [f32],
    pub(crate) v: &'a [f32],
}

/// One partition's state, write side.
pub(crate) struct StateOut<'a> {
    pub(crate) master: &'a mut [f32],
    pub(crate) m: &'a mut [f32],
    pub(crate) v: &'a mut [f32],
}

/// Splits `[master | m | v]` of `n` elements each.
pub(crate) fn split_state(state: &[f32]) -> StateIn<'_> {
    let n = state.len() / 3;
    let (master, rest) = state.split_at(n);
    let (m, v) = rest.split_at(n);
    StateIn { master, m, v }
}

/// Splits `[master | m | v]` of `n` elements each, mutably.
pub(crate) fn split_state_mut(state: &mut [f32]) -> StateOut<'_> {
    let n = state.len() / 3;
    let (master, rest) = state.split_at_mut(n);
    let (m, v) = rest.split_at_mut(n);
    StateOut { master, m, v }
}

/// The update of one contiguous run of elements: reads `src`, writes `dst`
/// and `params` (the new master weights, for the device).
fn update_run(c: &Coefficients, src: StateIn<'_>, dst: StateOut<'_>, grads: &[f32], params: &mut [f32]) {
    let it = src.master.iter().zip(src.m).zip(src.v).zip(grads);
    let out = dst.master.iter_mut().zip(dst.m.iter_mut()).zip(dst.v.iter_mut()).zip(params.iter_mut());
    for ((((&p, &m), &v), &g), (((po, mo), vo), pp)) in it.zip(out) {
        let p = p * c.decay;
        let m = c.beta1 * m + c.one_minus_beta1 * g;
        let v = c.beta2 * v + c.one_minus_beta2 * g * g;
        let denom = v.sqrt() / c.bc2_sqrt + c.eps;
        let p = p - c.step_size * m / denom;
        *po = p;
        *mo = m;
        *vo = v;
        *pp = p;
    }
}

/// The crc32 of `[master | m | v]` as bytes, from per-thread pieces.
pub(crate) struct StateCrc {
    pieces: [Vec<crc32fast::Hasher>; 3],
}

impl StateCrc {
    /// The combined checksum.
    pub(crate) fn finish(self) -> u32 {
        let mut all = crc32fast::Hasher::new();
        for section in &self.pieces {
            for h in section {
                all.combine(h);
            }
        }
        all.finalize()
    }
}

/// AdamW over one partition on `threads` threads: `src` is the state before
/// the step, `dst` receives the state after it, `params` the new master
/// weights. Returns the crc32 of `dst`'s bytes. Every slice holds the
/// partition's `n` elements (`src`, `dst`: `3n`).
pub(crate) fn step_partition(
    c: &Coefficients,
    src: &[f32],
    dst: &mut [f32],
    grads: &[f32],
    params: &mut [f32],
    threads: usize,
) -> StateCrc {
    let n = grads.len();
    debug_assert!(src.len() == 3 * n && dst.len() == 3 * n && params.len() == n);
    let threads = threads.clamp(1, n.div_ceil(16 << 10).max(1));
    let chunk = n.div_ceil(threads).max(1);
    let src = split_state(src);
    let dst = split_state_mut(dst);
    let crc_of = |xs: &[f32]| {
        let mut h = crc32fast::Hasher::new();
        h.update(bytemuck::cast_slice(xs));
        h
    };
    let work = src
        .master
        .chunks(chunk)
        .zip(src.m.chunks(chunk))
        .zip(src.v.chunks(chunk))
        .zip(dst.master.chunks_mut(chunk))
        .zip(dst.m.chunks_mut(chunk))
        .zip(dst.v.chunks_mut(chunk))
        .zip(grads.chunks(chunk))
        .zip(params.chunks_mut(chunk));
    let mut hashes: Vec<[crc32fast::Hasher; 3]> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = work
            .map(|(((((((pm, m), v), dp), dm), dv), g), out)| {
                s.spawn(move || {
                    update_run(c, StateIn { master: pm, m, v }, StateOut { master: dp, m: dm, v: dv }, g, out);
                    [crc_of(dp), crc_of(dm), crc_of(dv)]
                })
            })
            .collect();
        for h in handles {
            // A panic in the arithmetic is a bug; surface it.
            hashes.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
    });
    let mut pieces: [Vec<crc32fast::Hasher>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for [a, b, c] in hashes {
        pieces[0].push(a);
        pieces[1].push(b);
        pieces[2].push(c);
    }
    StateCrc { pieces }
}

/// AdamW over plain in-memory vectors: the model the offload is checked
/// against (same formula, one element at a time, no partitions).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWReference {
    /// The hyperparameters.
    pub hyper: AdamW,
    /// Steps taken.
    pub step: u64,
    /// Master weights.
    pub params: Vec<f32>,
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
}

impl AdamWReference {
    /// Zero moments at step 0.
    pub fn new(hyper: AdamW, params: Vec<f32>) -> Self {
        let n = params.len();
        AdamWReference { hyper, step: 0, params, m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// One step with `grads` (as long as the parameters).
    pub fn step(&mut self, grads: &[f32]) {
        assert_eq!(grads.len(), self.params.len(), "one gradient per parameter");
        self.step += 1;
        let h = self.hyper;
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        let bias1 = 1.0 - f64::from(h.beta1).powi(t);
        let bias2 = 1.0 - f64::from(h.beta2).powi(t);
        let step_size = (f64::from(h.lr) / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;
        for (i, &g) in grads.iter().enumerate() {
            self.params[i] *= 1.0 - h.lr * h.weight_decay;
            self.m[i] = h.beta1 * self.m[i] + (1.0 - h.beta1) * g;
            self.v[i] = h.beta2 * self.v[i] + (1.0 - h.beta2) * g * g;
            let denom = self.v[i].sqrt() / bias2_sqrt + h.eps;
            self.params[i] -= step_size * self.m[i] / denom;
        }
    }
}
