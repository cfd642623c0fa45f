//! Launch plans for the prefill kernels (`kernels/attention.cu`) and running
//! them on the emulator.
//!
//! Tile shapes (mirroring `PrefillTraits` in the kernel source):
//! - hd 64: 64 query rows x 64 keys per step, 4 warps. 40 KiB of shared
//!   memory (Q + double-buffered K and V), under the 48 KiB limit that needs
//!   no opt-in, so 5 blocks fit an A100 SM by shared memory; ptxas: 138
//!   registers, no spills.
//! - hd 128: 64 x 32. 48 KiB exactly; 64 keys would need 80 KiB and twice
//!   the S registers next to 64 O accumulators per thread (166 registers
//!   now, no spills).
//! - hd 256: 64 x 32, 96 KiB (opted in at launch). Q fragments are re-read
//!   from shared memory at each use: in registers they would take 64 more
//!   next to 128 O accumulators (232 registers now, no spills).

use crate::dtype::Dtype;
#[cfg(feature = "emu")]
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::gpu::{Access, Blob, BufferUse, Dim3, KernelArg, LaunchPlan};

use super::shape::PrefillShape;

/// Query rows per block.
pub const BLOCK_M: u32 = 64;

/// Keys per step for a head dimension.
pub fn block_n(head_dim: u32) -> u32 {
    if head_dim <= 64 {
        64
    } else {
        32
    }
}

fn params(s: &PrefillShape<'_>) -> Blob {
    let i = |v: i64| v as u64;
    let u = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    let words = [
        i(s.q.batch),
        i(s.q.row),
        i(s.q.head),
        i(s.k.batch),
        i(s.k.row),
        i(s.k.head),
        i(s.v.batch),
        i(s.v.row),
        i(s.v.head),
        i(s.o.batch),
        i(s.o.row),
        i(s.o.head),
        u(s.batch, s.heads),
        u(s.kv_heads, s.seqlen_q),
        u(s.seqlen_k, u32::from(s.causal)),
        u(u32::from(s.varlen.is_some()), (s.softmax_scale * std::f32::consts::LOG2_E).to_bits()),
    ];
    Blob::from_words(&words).expect("16 words")
}

/// The prefill plan. Slots: q, k, v (read), o, lse (write), cu_seqlens_q,
/// cu_seqlens_k (read; any 4-byte buffer without `varlen`).
pub fn prefill_plan(s: &PrefillShape<'_>) -> Result<LaunchPlan> {
    s.validate()?;
    let kernel = match (s.dtype, s.head_dim) {
        (Dtype::F16, 64) => "memwall_attn_prefill_f16_hd64",
        (Dtype::BF16, 64) => "memwall_attn_prefill_bf16_hd64",
        (Dtype::F16, 128) => "memwall_attn_prefill_f16_hd128",
        (Dtype::BF16, 128) => "memwall_attn_prefill_bf16_hd128",
        (Dtype::F16, 256) => "memwall_attn_prefill_f16_hd256",
        (Dtype::BF16, 256) => "memwall_attn_prefill_bf16_hd256",
        (d, hd) => return Err(Error::invalid("dtype/head_dim", format!("{d:?}/{hd}"), "no prefill kernel")),
    };
    let (eq, ek, ev, eo) = s.extents();
    let bytes = |e: usize| e as u64 * 2;
    let cu = if s.varlen.is_some() { u64::from(s.batch + 1) * 4 } else { 4 };
    let smem = (BLOCK_M + 4 * block_n(s.head_dim)) * s.head_dim * 2;
    Ok(LaunchPlan {
        module: "attention",
        kernel,
        grid: Dim3 { x: s.seqlen_q.div_ceil(BLOCK_M).max(1), y: s.batch * s.heads, z: 1 },
        block: Dim3::x(128),
        dynamic_smem_bytes: smem,
        args: std::iter::once(KernelArg::Blob(params(s)))
            .chain((0..7).map(|slot| KernelArg::Buffer { slot, offset: 0 }))
            .collect(),
        buffers: vec![
            BufferUse { name: "q", access: Access::Read, min_bytes: bytes(eq), align: 16 },
            BufferUse { name: "k", access: Access::Read, min_bytes: bytes(ek), align: 16 },
            BufferUse { name: "v", access: Access::Read, min_bytes: bytes(ev), align: 16 },
            BufferUse { name: "o", access: Access::Write, min_bytes: bytes(eo), align: 4 },
            BufferUse { name: "lse", access: Access::Write, min_bytes: s.lse_len() as u64 * 4, align: 4 },
            BufferUse { name: "cu_seqlens_q", access: Access::Read, min_bytes: cu, align: 4 },
            BufferUse { name: "cu_seqlens_k", access: Access::Read, min_bytes: cu, align: 4 },
        ],
    })
}

/// Prefill on the emulator through the same plan a GPU runs. `q`, `k`, `v`
/// must be 16-byte aligned (e.g. from a `Vec<u128>` viewed as elements).
#[cfg(feature = "emu")]
pub fn prefill_emu<T: Element>(
    emu: &crate::emu::Emulator,
    s: &PrefillShape<'_>,
    q: &[T],
    k: &[T],
    v: &[T],
    o: &mut [T],
    lse: &mut [f32],
) -> Result<()> {
    use crate::emu::HostBind as H;
    super::shape::check_element::<T>(s.dtype)?;
    let plan = prefill_plan(s)?;
    let zero = [0i32];
    let (cq, ck) = s.varlen.map_or((&zero[..], &zero[..]), |v| (v.cu_seqlens_q, v.cu_seqlens_k));
    emu.launch(&plan, &mut [H::read(q), H::read(k), H::read(v), H::write(o), H::write(lse), H::read(cq), H::read(ck)])
}

/// One plan per prefill entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    let mut out = Vec::new();
    for dt in [Dtype::F16, Dtype::BF16] {
        for hd in [64, 128, 256] {
            out.push(prefill_plan(&PrefillShape::dense(1, 2, 1, hd, 70, 70, dt)).expect("sample plan"));
        }
    }
    out
}
