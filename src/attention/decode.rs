//! Decode attention over a paged KV cache (`kernels/attention_decode.cu`):
//! shapes, validation, plans, the CPU path and the f64 reference.

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::gpu::{Access, Blob, BufferUse, Dim3, KernelArg, LaunchPlan};
use crate::parallel::{parallel_ranges, SyncSliceExt};

/// Head dimensions the decode kernels are built for.
pub const DECODE_HEAD_DIMS: [u32; 2] = [64, 128];

/// Query heads a decode block handles at once (they share one kv head).
pub const DECODE_HEAD_CHUNK: u32 = 8;

/// One decode step: one query token per sequence against its cached keys.
#[derive(Debug, Clone, Copy)]
pub struct DecodeShape<'a> {
    /// Sequences.
    pub batch: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads (divides `heads`).
    pub kv_heads: u32,
    /// Head dimension: 64 or 128.
    pub head_dim: u32,
    /// Tokens per cache page: any value >= 1.
    pub page_size: u32,
    /// Pages in the cache pool.
    pub num_pages: u32,
    /// Width of each block-table row.
    pub max_pages: u32,
    /// Softmax scale.
    pub softmax_scale: f32,
    /// f16 or bf16.
    pub dtype: Dtype,
    /// Block tables, `batch x max_pages` page indices.
    pub block_tables: &'a [i32],
    /// Cached tokens per sequence.
    pub seq_lens: &'a [i32],
}

impl DecodeShape<'_> {
    /// Elements of q and of the output: `batch x heads x head_dim`.
    pub fn q_len(&self) -> usize {
        (self.batch * self.heads * self.head_dim) as usize
    }

    /// Elements of each cache: `num_pages x page_size x kv_heads x head_dim`.
    pub fn cache_len(&self) -> usize {
        self.num_pages as usize * self.page_size as usize * (self.kv_heads * self.head_dim) as usize
    }

    /// Element offset of sequence `b`'s key `j`, kv head `kvh`, in a cache.
    pub fn cache_offset(&self, b: usize, j: usize, kvh: usize) -> usize {
        let ps = self.page_size as usize;
        let page = self.block_tables[b * self.max_pages as usize + j / ps] as usize;
        ((page * ps + j % ps) * self.kv_heads as usize + kvh) * self.head_dim as usize
    }

    /// Checks the shape and every block-table entry a sequence uses.
    pub fn validate(&self) -> Result<()> {
        if !DECODE_HEAD_DIMS.contains(&self.head_dim) {
            return Err(Error::invalid("head_dim", self.head_dim, format!("decode supports {DECODE_HEAD_DIMS:?}")));
        }
        if self.dtype == Dtype::F32 {
            return Err(Error::invalid("dtype", "F32", "attention takes f16 or bf16"));
        }
        if self.batch == 0 || self.heads == 0 || self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return Err(Error::invalid(
                "heads/kv_heads",
                format!("{}/{}", self.heads, self.kv_heads),
                "kv_heads must divide heads",
            ));
        }
        if self.page_size == 0 {
            return Err(Error::invalid("page_size", 0, "must be at least 1"));
        }
        if !(self.softmax_scale.is_finite() && self.softmax_scale > 0.0) {
            return Err(Error::invalid("softmax_scale", self.softmax_scale, "must be finite and positive"));
        }
        if self.block_tables.len() != (self.batch * self.max_pages) as usize {
            return Err(Error::invalid(
                "block_tables",
                format!("{} entries", self.block_tables.len()),
                format!("need batch x max_pages = {}", self.batch * self.max_pages),
            ));
        }
        if self.seq_lens.len() != self.batch as usize {
            return Err(Error::invalid(
                "seq_lens",
                format!("{} entries", self.seq_lens.len()),
                format!("need {}", self.batch),
            ));
        }
        for (b, &len) in self.seq_lens.iter().enumerate() {
            let capacity = i64::from(self.max_pages) * i64::from(self.page_size);
            if len < 0 || i64::from(len) > capacity {
                return Err(Error::invalid(
                    "seq_lens",
                    format!("sequence {b}: {len}"),
                    format!("must be in 0..={capacity}"),
                ));
            }
            let pages = (len as u32).div_ceil(self.page_size) as usize;
            for (i, &page) in self.block_tables[b * self.max_pages as usize..][..pages].iter().enumerate() {
                if page < 0 || page as u32 >= self.num_pages {
                    return Err(Error::invalid(
                        "block_tables",
                        format!("sequence {b}, page {i}: {page}"),
                        format!("out of range: the cache has {} pages", self.num_pages),
                    ));
                }
            }
        }
        Ok(())
    }

    /// KV splits per sequence so that one decode step fills the GPU: about
    /// 256 keys per split, at most 64 splits.
    pub fn default_splits(&self) -> u32 {
        let longest = self.seq_lens.iter().copied().max().unwrap_or(0).max(1) as u32;
        longest.div_ceil(256).clamp(1, 64)
    }
}

fn params(s: &DecodeShape<'_>, splits: u32) -> Blob {
    let u = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    let scale = (s.softmax_scale * std::f32::consts::LOG2_E).to_bits();
    let words = [
        u(s.batch, s.heads),
        u(s.kv_heads, s.head_dim),
        u(s.page_size, s.num_pages),
        u(s.max_pages, splits),
        u(scale, 0),
        0,
        0,
        0,
    ];
    Blob::from_words(&words).expect("8 words")
}

/// The two decode plans. Split slots: q, k_cache, v_cache, block_tables,
/// seq_lens (read), partial_o, partial_lse (write). Merge slots: partial_o,
/// partial_lse (read), out, lse (write). Partial buffers hold `splits x
/// batch x heads x head_dim` and `splits x batch x heads` f32.
pub fn decode_plans(s: &DecodeShape<'_>, splits: u32) -> Result<(LaunchPlan, LaunchPlan)> {
    s.validate()?;
    if splits == 0 || splits > 1024 {
        return Err(Error::invalid("splits", splits, "must be in 1..=1024"));
    }
    let sfx = match s.dtype {
        Dtype::F16 => "f16",
        _ => "bf16",
    };
    let split_kernel: &'static str = match (sfx, s.head_dim) {
        ("f16", 64) => "memwall_attn_decode_split_f16_hd64",
        ("bf16", 64) => "memwall_attn_decode_split_bf16_hd64",
        ("f16", _) => "memwall_attn_decode_split_f16_hd128",
        _ => "memwall_attn_decode_split_bf16_hd128",
    };
    let merge_kernel: &'static str =
        if sfx == "f16" { "memwall_attn_decode_merge_f16" } else { "memwall_attn_decode_merge_bf16" };
    let bh = u64::from(s.batch * s.heads);
    let part_o = u64::from(splits) * bh * u64::from(s.head_dim) * 4;
    let part_lse = u64::from(splits) * bh * 4;
    let p = KernelArg::Blob(params(s, splits));
    let buf = |slot| KernelArg::Buffer { slot, offset: 0 };
    let group = s.heads / s.kv_heads;
    let split = LaunchPlan {
        module: "attention_decode",
        kernel: split_kernel,
        grid: Dim3 { x: s.kv_heads * group.div_ceil(DECODE_HEAD_CHUNK), y: s.batch, z: splits },
        block: Dim3::x(128),
        dynamic_smem_bytes: 0,
        args: std::iter::once(p).chain((0..7).map(buf)).collect(),
        buffers: vec![
            BufferUse { name: "q", access: Access::Read, min_bytes: s.q_len() as u64 * 2, align: 2 },
            BufferUse { name: "k_cache", access: Access::Read, min_bytes: s.cache_len() as u64 * 2, align: 16 },
            BufferUse { name: "v_cache", access: Access::Read, min_bytes: s.cache_len() as u64 * 2, align: 16 },
            BufferUse {
                name: "block_tables",
                access: Access::Read,
                min_bytes: s.block_tables.len() as u64 * 4,
                align: 4,
            },
            BufferUse { name: "seq_lens", access: Access::Read, min_bytes: u64::from(s.batch) * 4, align: 4 },
            BufferUse { name: "partial_o", access: Access::Write, min_bytes: part_o, align: 4 },
            BufferUse { name: "partial_lse", access: Access::Write, min_bytes: part_lse, align: 4 },
        ],
    };
    let merge = LaunchPlan {
        module: "attention_decode",
        kernel: merge_kernel,
        grid: Dim3::x(s.batch * s.heads),
        block: Dim3::x(s.head_dim),
        dynamic_smem_bytes: 0,
        args: std::iter::once(p).chain((0..4).map(buf)).collect(),
        buffers: vec![
            BufferUse { name: "partial_o", access: Access::Read, min_bytes: part_o, align: 4 },
            BufferUse { name: "partial_lse", access: Access::Read, min_bytes: part_lse, align: 4 },
            BufferUse { name: "out", access: Access::Write, min_bytes: s.q_len() as u64 * 2, align: 2 },
            BufferUse { name: "lse", access: Access::Write, min_bytes: bh * 4, align: 4 },
        ],
    };
    Ok((split, merge))
}

fn check_tensors<T: Element>(s: &DecodeShape<'_>, q: &[T], k: &[T], v: &[T], out: &[T], lse: &[f32]) -> Result<()> {
    s.validate()?;
    super::shape::check_element::<T>(s.dtype)?;
    for (name, got, need) in [
        ("q", q.len(), s.q_len()),
        ("k_cache", k.len(), s.cache_len()),
        ("v_cache", v.len(), s.cache_len()),
        ("out", out.len(), s.q_len()),
        ("lse", lse.len(), (s.batch * s.heads) as usize),
    ] {
        if got < need {
            return Err(Error::invalid(name, format!("{got} elements"), format!("the shape needs {need}")));
        }
    }
    Ok(())
}

/// The f64 reference: (output, LSE) per (sequence, head).
pub fn decode_reference<T: Element>(s: &DecodeShape<'_>, q: &[T], k: &[T], v: &[T]) -> Result<(Vec<f64>, Vec<f64>)> {
    let bh = (s.batch * s.heads) as usize;
    check_tensors(s, q, k, v, &vec![T::from_f32(0.0); s.q_len()], &vec![0.0; bh])?;
    let d = s.head_dim as usize;
    let group = (s.heads / s.kv_heads) as usize;
    let mut out = vec![0f64; s.q_len()];
    let mut lse = vec![f64::NEG_INFINITY; bh];
    for b in 0..s.batch as usize {
        for h in 0..s.heads as usize {
            let qo = (b * s.heads as usize + h) * d;
            let len = s.seq_lens[b] as usize;
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    let ko = s.cache_offset(b, j, h / group);
                    (0..d).map(|x| f64::from(q[qo + x].to_f32()) * f64::from(k[ko + x].to_f32())).sum::<f64>()
                        * f64::from(s.softmax_scale)
                })
                .collect();
            if scores.is_empty() {
                continue;
            }
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|x| (x - m).exp()).sum();
            for (j, sc) in scores.iter().enumerate() {
                let vo = s.cache_offset(b, j, h / group);
                for x in 0..d {
                    out[qo + x] += (sc - m).exp() / sum * f64::from(v[vo + x].to_f32());
                }
            }
            lse[b * s.heads as usize + h] = m + sum.ln();
        }
    }
    Ok((out, lse))
}

/// Decode on all cores: one (sequence, head) per work item, online softmax in f32.
pub fn decode<T: Element>(
    s: &DecodeShape<'_>,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [T],
    lse: &mut [f32],
) -> Result<()> {
    check_tensors(s, q, k, v, out, lse)?;
    let d = s.head_dim as usize;
    let heads = s.heads as usize;
    let group = heads / s.kv_heads as usize;
    let out_s = out.sync_slice();
    let lse_s = lse.sync_slice();
    parallel_ranges(s.batch as usize * heads, |first, count| {
        let mut acc = vec![0f32; d];
        let mut qf = vec![0f32; d];
        for item in first..first + count {
            let (b, h) = (item / heads, item % heads);
            for x in 0..d {
                qf[x] = q[item * d + x].to_f32() * s.softmax_scale;
            }
            acc.fill(0.0);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            for j in 0..s.seq_lens[b] as usize {
                let o = s.cache_offset(b, j, h / group);
                let sc: f32 = qf.iter().zip(&k[o..o + d]).map(|(a, kk)| a * kk.to_f32()).sum();
                let m_new = m.max(sc);
                let scale = if m == f32::NEG_INFINITY { 0.0 } else { (m - m_new).exp() };
                let e = (sc - m_new).exp();
                l = l * scale + e;
                for (a, vv) in acc.iter_mut().zip(&v[o..o + d]) {
                    *a = *a * scale + e * vv.to_f32();
                }
                m = m_new;
            }
            // SAFETY: each (sequence, head) item is handled by one thread.
            let orow = unsafe { out_s.slice(item * d, d) };
            for (dst, a) in orow.iter_mut().zip(&acc) {
                *dst = T::from_f32(if l > 0.0 { a / l } else { 0.0 });
            }
            // SAFETY: as above.
            let lr = unsafe { lse_s.slice(item, 1) };
            lr[0] = if l > 0.0 { m + l.ln() } else { f32::NEG_INFINITY };
        }
    });
    Ok(())
}

/// Decode on the emulator through the same two plans a GPU runs.
#[cfg(feature = "emu")]
#[allow(clippy::too_many_arguments)]
pub fn decode_emu<T: Element>(
    emu: &crate::emu::Emulator,
    s: &DecodeShape<'_>,
    splits: u32,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [T],
    lse: &mut [f32],
) -> Result<()> {
    use crate::emu::HostBind as H;
    check_tensors(s, q, k, v, out, lse)?;
    let (split, merge) = decode_plans(s, splits)?;
    let bh = (s.batch * s.heads) as usize;
    let mut part_o = vec![0f32; splits as usize * bh * s.head_dim as usize];
    let mut part_lse = vec![0f32; splits as usize * bh];
    emu.launch(
        &split,
        &mut [
            H::read(q),
            H::read(k),
            H::read(v),
            H::read(s.block_tables),
            H::read(s.seq_lens),
            H::write(&mut part_o),
            H::write(&mut part_lse),
        ],
    )?;
    emu.launch(&merge, &mut [H::read(&part_o), H::read(&part_lse), H::write(out), H::write(lse)])
}

/// One plan per decode entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    let tables = [0i32, 1];
    let lens = [5i32];
    let mut out = Vec::new();
    for dt in [Dtype::F16, Dtype::BF16] {
        for hd in [64, 128] {
            let s = DecodeShape {
                batch: 1,
                heads: 2,
                kv_heads: 1,
                head_dim: hd,
                page_size: 3,
                num_pages: 2,
                max_pages: 2,
                softmax_scale: 0.1,
                dtype: dt,
                block_tables: &tables,
                seq_lens: &lens,
            };
            let (a, b) = decode_plans(&s, 2).expect("sample plans");
            out.push(a);
            if hd == 64 {
                out.push(b);
            }
        }
    }
    out
}
