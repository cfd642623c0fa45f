//! Attention on a CUDA device: the prefill and decode plans over device
//! buffers, stream-ordered.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use crate::error::{Error, Result};
use crate::gpu::{Bind, DeviceRead, DeviceWrite, Gpu};

use super::decode::{decode_plans, DecodeShape};
use super::prefill::prefill_plan;
use super::shape::PrefillShape;

/// Prefill attention on `stream`: `q`, `k`, `v`, `o` as the shape's strides
/// describe (f16 or bf16 elements), `lse` f32. Variable-length offsets are
/// uploaded from the shape's host slices.
#[allow(clippy::too_many_arguments)]
pub fn prefill_gpu(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    s: &PrefillShape<'_>,
    q: &dyn DeviceRead,
    k: &dyn DeviceRead,
    v: &dyn DeviceRead,
    o: &mut dyn DeviceWrite,
    lse: &mut dyn DeviceWrite,
) -> Result<()> {
    let plan = prefill_plan(s)?;
    let upload = |x: &[i32]| stream.clone_htod(x).map_err(|e| Error::driver("uploading cu_seqlens", e));
    let (cq, ck) = match &s.varlen {
        Some(v) => (upload(v.cu_seqlens_q)?, upload(v.cu_seqlens_k)?),
        None => (upload(&[0])?, upload(&[0])?),
    };
    gpu.launch(
        &plan,
        stream,
        &mut [
            Bind::Read(q),
            Bind::Read(k),
            Bind::Read(v),
            Bind::Write(o),
            Bind::Write(lse),
            Bind::Read(&cq),
            Bind::Read(&ck),
        ],
    )
}

/// Decode attention on `stream` with `splits` KV splits per sequence
/// ([`DecodeShape::default_splits`] fills the GPU). Block tables and
/// sequence lengths are validated and uploaded from the shape's host slices.
#[allow(clippy::too_many_arguments)]
pub fn decode_gpu(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    s: &DecodeShape<'_>,
    splits: u32,
    q: &dyn DeviceRead,
    k_cache: &dyn DeviceRead,
    v_cache: &dyn DeviceRead,
    out: &mut dyn DeviceWrite,
    lse: &mut dyn DeviceWrite,
) -> Result<()> {
    let (split, merge) = decode_plans(s, splits)?;
    let err = |e| Error::driver("decode buffers", e);
    let tables = stream.clone_htod(s.block_tables).map_err(err)?;
    let lens = stream.clone_htod(s.seq_lens).map_err(err)?;
    let bh = (s.batch * s.heads) as usize;
    let mut part_o = stream.alloc_zeros::<f32>(splits as usize * bh * s.head_dim as usize).map_err(err)?;
    let mut part_lse = stream.alloc_zeros::<f32>(splits as usize * bh).map_err(err)?;
    gpu.launch(
        &split,
        stream,
        &mut [
            Bind::Read(q),
            Bind::Read(k_cache),
            Bind::Read(v_cache),
            Bind::Read(&tables),
            Bind::Read(&lens),
            Bind::Write(&mut part_o),
            Bind::Write(&mut part_lse),
        ],
    )?;
    gpu.launch(&merge, stream, &mut [Bind::Read(&part_o), Bind::Read(&part_lse), Bind::Write(out), Bind::Write(lse)])
}
