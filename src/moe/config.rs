//! The MoE++ routing configuration and its validation.

use crate::error::{Error, Result};

/// How many experts of each kind, in index order: FFN experts first, then
/// constant, copy and zero experts (the reference code's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertLayout {
    /// FFN experts, indices `[0, n_ffn)`.
    pub n_ffn: u32,
    /// Constant experts: `a1 x + a2 v`, `[a1, a2] = softmax(W_c x)`.
    pub n_const: u32,
    /// Copy experts: output `x`.
    pub n_copy: u32,
    /// Zero experts: output 0.
    pub n_zero: u32,
}

/// What kind of expert an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertKind {
    /// A feed-forward expert (dispatched).
    Ffn,
    /// A constant expert, with its index among constant experts.
    Constant(u32),
    /// A copy expert.
    Copy,
    /// A zero expert.
    Zero,
}

impl ExpertLayout {
    /// The layouts of the MoE++ paper: 8 FFN + 4 (N = 12), 16 + 4 (N = 20),
    /// both with 1 zero, 1 copy, 2 constant; and 32 + 8 (N = 40) with 1 zero,
    /// 1 copy, 6 constant.
    pub fn paper(n: u32) -> Option<Self> {
        match n {
            12 => Some(ExpertLayout { n_ffn: 8, n_const: 2, n_copy: 1, n_zero: 1 }),
            20 => Some(ExpertLayout { n_ffn: 16, n_const: 2, n_copy: 1, n_zero: 1 }),
            40 => Some(ExpertLayout { n_ffn: 32, n_const: 6, n_copy: 1, n_zero: 1 }),
            _ => None,
        }
    }

    /// Total experts N.
    pub fn experts(&self) -> u32 {
        self.n_ffn + self.n_const + self.n_copy + self.n_zero
    }

    /// Zero-computation experts (constant, copy, zero).
    pub fn n_zero_computation(&self) -> u32 {
        self.n_const + self.n_copy + self.n_zero
    }

    /// The kind of expert `e`.
    pub fn kind(&self, e: u32) -> ExpertKind {
        if e < self.n_ffn {
            ExpertKind::Ffn
        } else if e < self.n_ffn + self.n_const {
            ExpertKind::Constant(e - self.n_ffn)
        } else if e < self.n_ffn + self.n_const + self.n_copy {
            ExpertKind::Copy
        } else {
            ExpertKind::Zero
        }
    }
}

/// How the top-k gates become weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renorm {
    /// The reference code: zero experts' gates set to 0, then the top-k gates
    /// divided by their sum (all zero when the sum is 0).
    ReferenceCode,
    /// The paper (Eq. 1): the softmax probabilities as they are.
    Paper,
}

/// The most experts the kernels route over.
pub const MAX_EXPERTS: u32 = 256;
/// The largest top-k.
pub const MAX_TOP_K: u32 = 8;

/// Everything the routing needs besides the tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeConfig {
    /// The experts.
    pub layout: ExpertLayout,
    /// Experts per token (k).
    pub top_k: u32,
    /// Gate renormalization.
    pub renorm: Renorm,
    /// Divide each row of logits by its unbiased std and multiply by this
    /// target std before the softmax (`moe_use_logits_norm`); `None` skips it.
    pub logits_norm_std: Option<f32>,
    /// Load-balance weight η of zero-computation experts (τ; 0.75 in the paper).
    pub tau: f32,
    /// Capacity factor γ: FFN experts keep at most `γ τ T / (τ N_FFN + N_ZC)`
    /// tokens each (Eq. 8); `None` keeps all.
    pub capacity_factor: Option<f32>,
    /// FFN row counts are padded to a multiple of this for grouped GEMM.
    pub pad_to: u32,
}

impl MoeConfig {
    /// The paper's defaults for `layout`: top-2, reference-code gates, τ = 0.75,
    /// no capacity limit, rows padded to 16.
    pub fn new(layout: ExpertLayout) -> Self {
        MoeConfig {
            layout,
            top_k: 2,
            renorm: Renorm::ReferenceCode,
            logits_norm_std: None,
            tau: 0.75,
            capacity_factor: None,
            pad_to: 16,
        }
    }

    /// Checks the configuration; errors name the offending value.
    pub fn validate(&self) -> Result<()> {
        let n = self.layout.experts();
        if self.layout.n_ffn == 0 {
            return Err(Error::invalid("n_ffn", 0, "MoE++ needs at least one FFN expert"));
        }
        if n > MAX_EXPERTS {
            return Err(Error::invalid("experts", n, format!("at most {MAX_EXPERTS}")));
        }
        if self.top_k == 0 || self.top_k > MAX_TOP_K || self.top_k > n {
            return Err(Error::invalid("top_k", self.top_k, format!("must be in 1..={} (N = {n})", MAX_TOP_K.min(n))));
        }
        if self.pad_to == 0 {
            return Err(Error::invalid("pad_to", 0, "must be at least 1"));
        }
        if !(self.tau.is_finite() && self.tau >= 0.0) {
            return Err(Error::invalid("tau", self.tau, "must be finite and >= 0"));
        }
        if let Some(s) = self.logits_norm_std {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid("logits_norm_std", s, "must be finite and > 0"));
            }
        }
        if let Some(g) = self.capacity_factor {
            if !(g.is_finite() && g > 0.0) {
                return Err(Error::invalid("capacity_factor", g, "must be finite and > 0"));
            }
        }
        Ok(())
    }

    /// Per-type capacities (Eq. 8) for `tokens` tokens:
    /// `(C_FFN, C_ZC) = (γ τ T, γ T) / (τ N_FFN + N_ZC)`, rounded up;
    /// `None` without a capacity factor.
    pub fn capacities(&self, tokens: u32) -> Option<(u32, u32)> {
        let g = f64::from(self.capacity_factor?);
        let tau = f64::from(self.tau);
        let denom = tau * f64::from(self.layout.n_ffn) + f64::from(self.layout.n_zero_computation());
        if denom <= 0.0 {
            return Some((u32::MAX, u32::MAX));
        }
        let t = f64::from(tokens);
        let cap = |x: f64| x.ceil().min(f64::from(u32::MAX)) as u32;
        Some((cap(g * tau * t / denom), cap(g * t / denom)))
    }

    /// Rows an FFN expert keeps (its capacity, or unlimited).
    pub fn ffn_capacity(&self, tokens: u32) -> u32 {
        self.capacities(tokens).map_or(u32::MAX, |c| c.0)
    }

    /// The most rows the dispatched (sorted, padded) order can need.
    pub fn max_rows(&self, tokens: u32) -> u64 {
        u64::from(tokens) * u64::from(self.top_k) + u64::from(self.layout.n_ffn) * u64::from(self.pad_to - 1)
    }
}
