//! Shapes, strides and validation of attention calls.

use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Element strides of a `[batch, seq, heads, head_dim]` tensor (head_dim is
/// contiguous). With variable-length batches the batch stride is unused and
/// rows are packed across the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strides {
    /// Elements between batches.
    pub batch: i64,
    /// Elements between consecutive sequence positions.
    pub row: i64,
    /// Elements between heads.
    pub head: i64,
}

impl Strides {
    /// The dense `[batch, seq, heads, head_dim]` layout.
    pub fn dense(seq: u32, heads: u32, head_dim: u32) -> Self {
        let row = i64::from(heads) * i64::from(head_dim);
        Strides { batch: i64::from(seq) * row, row, head: i64::from(head_dim) }
    }

    /// Elements a tensor with these strides spans (1 past the last element).
    pub(crate) fn span(&self, batch: u32, rows: u32, heads: u32, head_dim: u32) -> i128 {
        if batch == 0 || rows == 0 || heads == 0 {
            return 0;
        }
        i128::from(batch - 1) * i128::from(self.batch)
            + i128::from(rows - 1) * i128::from(self.row)
            + i128::from(heads - 1) * i128::from(self.head)
            + i128::from(head_dim)
    }
}

/// Variable-length batches: cumulative sequence offsets (`batch + 1`
/// entries starting at 0) of queries and keys.
#[derive(Debug, Clone, Copy)]
pub struct Varlen<'a> {
    /// Query offsets.
    pub cu_seqlens_q: &'a [i32],
    /// Key offsets.
    pub cu_seqlens_k: &'a [i32],
}

/// One prefill (forward) attention call.
#[derive(Debug, Clone, Copy)]
pub struct PrefillShape<'a> {
    /// Sequences.
    pub batch: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads (divides `heads`: GQA, or 1: MQA).
    pub kv_heads: u32,
    /// Head dimension: 64, 128 or 256.
    pub head_dim: u32,
    /// Query length (fixed-length batches; the longest with `varlen`).
    pub seqlen_q: u32,
    /// Key length (fixed-length batches; the longest with `varlen`).
    pub seqlen_k: u32,
    /// Causal masking, bottom-right aligned: query `i` sees keys `j <= i + seqlen_k - seqlen_q`.
    pub causal: bool,
    /// Softmax scale, usually `1 / sqrt(head_dim)`.
    pub softmax_scale: f32,
    /// f16 or bf16.
    pub dtype: Dtype,
    /// Strides of Q, K, V and O.
    pub q: Strides,
    /// Strides of K.
    pub k: Strides,
    /// Strides of V.
    pub v: Strides,
    /// Strides of O.
    pub o: Strides,
    /// Variable-length batches.
    pub varlen: Option<Varlen<'a>>,
}

/// Checks that the element type `T` is the shape's dtype.
pub(crate) fn check_element<T: crate::dtype::Element>(dtype: Dtype) -> Result<()> {
    if T::DTYPE != dtype {
        return Err(Error::invalid("element type", format!("{:?}", T::DTYPE), format!("the shape says {dtype:?}")));
    }
    Ok(())
}

/// Head dimensions the prefill kernels are built for.
pub const PREFILL_HEAD_DIMS: [u32; 3] = [64, 128, 256];

impl<'a> PrefillShape<'a> {
    /// A dense, fixed-length call with the default scale.
    pub fn dense(
        batch: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        seqlen_q: u32,
        seqlen_k: u32,
        dtype: Dtype,
    ) -> Self {
        PrefillShape {
            batch,
            heads,
            kv_heads,
            head_dim,
            seqlen_q,
            seqlen_k,
            causal: false,
            softmax_scale: 1.0 / (head_dim as f32).sqrt(),
            dtype,
            q: Strides::dense(seqlen_q, heads, head_dim),
            k: Strides::dense(seqlen_k, kv_heads, head_dim),
            v: Strides::dense(seqlen_k, kv_heads, head_dim),
            o: Strides::dense(seqlen_q, heads, head_dim),
            varlen: None,
        }
    }

    /// Total query rows and key rows (packed rows with `varlen`).
    pub fn rows(&self) -> (u32, u32) {
        match &self.varlen {
            Some(v) => (*v.cu_seqlens_q.last().unwrap_or(&0) as u32, *v.cu_seqlens_k.last().unwrap_or(&0) as u32),
            None => (self.seqlen_q, self.seqlen_k),
        }
    }

    /// Sequence `b`'s (query rows, key rows, first query row, first key row).
    pub fn sequence(&self, b: usize) -> (usize, usize, usize, usize) {
        match &self.varlen {
            Some(v) => {
                let (q0, k0) = (v.cu_seqlens_q[b] as usize, v.cu_seqlens_k[b] as usize);
                (v.cu_seqlens_q[b + 1] as usize - q0, v.cu_seqlens_k[b + 1] as usize - k0, q0, k0)
            }
            None => (self.seqlen_q as usize, self.seqlen_k as usize, 0, 0),
        }
    }

    /// Element offset of (batch, row, head, 0) for a tensor with `s`.
    pub fn offset(&self, s: &Strides, b: usize, row: usize, head: usize) -> usize {
        let batch = if self.varlen.is_some() { 0 } else { b as i64 * s.batch };
        (batch + row as i64 * s.row + head as i64 * s.head) as usize
    }

    /// Elements of the log-sum-exp output.
    pub fn lse_len(&self) -> usize {
        let (tq, _) = self.rows();
        match self.varlen {
            Some(_) => self.heads as usize * tq as usize,
            None => self.batch as usize * self.heads as usize * self.seqlen_q as usize,
        }
    }

    /// Index of row `i` of sequence `b`, head `h` in the log-sum-exp output.
    pub fn lse_index(&self, b: usize, h: usize, i: usize) -> usize {
        match &self.varlen {
            Some(v) => h * (*v.cu_seqlens_q.last().unwrap_or(&0) as usize) + v.cu_seqlens_q[b] as usize + i,
            None => (b * self.heads as usize + h) * self.seqlen_q as usize + i,
        }
    }

    /// Elements each of Q, K, V, O must hold.
    pub fn extents(&self) -> (usize, usize, usize, usize) {
        let (tq, tk) = self.rows();
        let (bq, bk) = if self.varlen.is_some() { (1, 1) } else { (self.batch, self.batch) };
        let e = |s: &Strides, b, r, h| s.span(b, r, h, self.head_dim).max(0) as usize;
        (
            e(&self.q, bq, tq, self.heads),
            e(&self.k, bk, tk, self.kv_heads),
            e(&self.v, bk, tk, self.kv_heads),
            e(&self.o, bq, tq, self.heads),
        )
    }

    /// Checks everything the kernels rely on; errors name the value.
    pub fn validate(&self) -> Result<()> {
        if !PREFILL_HEAD_DIMS.contains(&self.head_dim) {
            return Err(Error::invalid("head_dim", self.head_dim, format!("supported: {PREFILL_HEAD_DIMS:?}")));
        }
        if self.dtype == Dtype::F32 {
            return Err(Error::invalid("dtype", "F32", "attention takes f16 or bf16"));
        }
        if self.batch == 0 || self.heads == 0 || self.kv_heads == 0 {
            return Err(Error::invalid(
                "batch/heads/kv_heads",
                format!("{}/{}/{}", self.batch, self.heads, self.kv_heads),
                "must be positive",
            ));
        }
        if self.heads % self.kv_heads != 0 {
            return Err(Error::invalid("kv_heads", self.kv_heads, format!("must divide heads = {}", self.heads)));
        }
        if !(self.softmax_scale.is_finite() && self.softmax_scale > 0.0) {
            return Err(Error::invalid("softmax_scale", self.softmax_scale, "must be finite and positive"));
        }
        for (name, s) in [("q", &self.q), ("k", &self.k), ("v", &self.v), ("o", &self.o)] {
            for (what, x) in [("batch", s.batch), ("row", s.row), ("head", s.head)] {
                if x < 0 || x % 8 != 0 {
                    return Err(Error::invalid(
                        "stride",
                        format!("{name}.{what} = {x}"),
                        "strides must be non-negative multiples of 8 elements (16-byte rows for cp.async)",
                    ));
                }
            }
        }
        if let Some(v) = &self.varlen {
            for (name, cu, max) in
                [("cu_seqlens_q", v.cu_seqlens_q, self.seqlen_q), ("cu_seqlens_k", v.cu_seqlens_k, self.seqlen_k)]
            {
                if cu.len() != self.batch as usize + 1 || cu[0] != 0 {
                    return Err(Error::invalid(
                        name,
                        format!("{} entries starting {:?}", cu.len(), cu.first()),
                        format!("need {} entries starting at 0", self.batch + 1),
                    ));
                }
                for w in cu.windows(2) {
                    let len = i64::from(w[1]) - i64::from(w[0]);
                    if len < 0 || len > i64::from(max) {
                        return Err(Error::invalid(
                            name,
                            format!("{w:?}"),
                            format!("lengths must be in 0..={max} (the max seqlen given)"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
