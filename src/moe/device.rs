//! MoE++ routing on a CUDA device: the five plans over device buffers,
//! stream-ordered, with no host synchronization between them.

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::gpu::{Bind, Gpu};

use super::config::MoeConfig;
use super::gpu::{plans, MoePlans, Slots};
use super::{Dispatch, GateInputs, LoadStats, Routing};

/// Device buffers of one layer's routing, reusable across calls with the
/// same shape. `L` is the logits element type, `A` the activations'.
pub struct DeviceMoe<L, A> {
    cfg: MoeConfig,
    tokens: u32,
    hidden: u32,
    has_prev: bool,
    plans: MoePlans,
    b: Buffers,
    _types: PhantomData<(L, A)>,
}

struct Buffers {
    logits: CudaSlice<u8>,
    prev: CudaSlice<u8>,
    wg: CudaSlice<u8>,
    x: CudaSlice<u8>,
    wc: CudaSlice<u8>,
    v: CudaSlice<u8>,
    next_logits: CudaSlice<u8>,
    probs: CudaSlice<u8>,
    ids: CudaSlice<u8>,
    weights: CudaSlice<u8>,
    alpha: CudaSlice<u8>,
    ffn_counts: CudaSlice<u8>,
    selected: CudaSlice<u8>,
    prob_sums: CudaSlice<u8>,
    chunk_offsets: CudaSlice<u8>,
    expert_offsets: CudaSlice<u8>,
    expert_counts: CudaSlice<u8>,
    stats: CudaSlice<u8>,
    sorted: CudaSlice<u8>,
    slot_rows: CudaSlice<u8>,
    expert_out: CudaSlice<u8>,
    out: CudaSlice<u8>,
}

fn alloc(stream: &Arc<CudaStream>, bytes: u64) -> Result<CudaSlice<u8>> {
    // At least 16 bytes: a zero-length allocation is refused by the driver,
    // and unused slots (no residual, no constant experts) still need a buffer.
    stream.alloc_zeros::<u8>(bytes.max(16) as usize).map_err(|e| Error::driver(format!("allocating {bytes} bytes"), e))
}

fn upload(stream: &Arc<CudaStream>, dst: &mut CudaSlice<u8>, src: &[u8]) -> Result<()> {
    if src.is_empty() {
        return Ok(());
    }
    if src.len() > dst.len() {
        // The shape checks in `DeviceMoe::upload` keep this from happening.
        return Err(Error::invalid("MoE input bytes", src.len(), format!("the device buffer holds {}", dst.len())));
    }
    stream.memcpy_htod(src, &mut dst.slice_mut(..src.len())).map_err(|e| Error::driver("uploading MoE inputs", e))
}

fn download<T: bytemuck::Pod>(stream: &Arc<CudaStream>, src: &CudaSlice<u8>, n: usize) -> Result<Vec<T>> {
    if n == 0 {
        // No copy for nothing (e.g. no FFN rows when every slot went to a
        // zero-computation expert).
        return Ok(Vec::new());
    }
    let bytes =
        stream.clone_dtoh(&src.slice(..n * std::mem::size_of::<T>())).map_err(|e| Error::driver("downloading", e))?;
    let mut out = vec![T::zeroed(); n];
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&bytes);
    Ok(out)
}

impl<L: Element, A: Element> DeviceMoe<L, A> {
    /// Allocates the buffers for `tokens` tokens of hidden size `hidden`.
    pub fn new(stream: &Arc<CudaStream>, cfg: &MoeConfig, tokens: u32, hidden: u32, has_prev: bool) -> Result<Self> {
        let plans = plans(cfg, tokens, hidden, L::DTYPE, A::DTYPE, has_prev)?;
        let s = Slots::new(cfg, tokens, hidden, L::DTYPE, A::DTYPE, has_prev);
        let b = Buffers {
            logits: alloc(stream, s.logits)?,
            prev: alloc(stream, s.prev)?,
            wg: alloc(stream, s.wg)?,
            x: alloc(stream, s.x)?,
            wc: alloc(stream, s.wc)?,
            v: alloc(stream, s.v)?,
            next_logits: alloc(stream, s.t_by_n)?,
            probs: alloc(stream, s.t_by_n)?,
            ids: alloc(stream, s.t_by_k)?,
            weights: alloc(stream, s.t_by_k)?,
            alpha: alloc(stream, s.alpha)?,
            ffn_counts: alloc(stream, s.chunk_ffn)?,
            selected: alloc(stream, s.chunk_all)?,
            prob_sums: alloc(stream, s.chunk_all)?,
            chunk_offsets: alloc(stream, s.chunk_ffn)?,
            expert_offsets: alloc(stream, s.expert_offsets)?,
            expert_counts: alloc(stream, s.expert_counts)?,
            stats: alloc(stream, s.stats)?,
            sorted: alloc(stream, s.sorted)?,
            slot_rows: alloc(stream, s.t_by_k)?,
            expert_out: alloc(stream, s.expert_out)?,
            out: alloc(stream, s.out)?,
        };
        Ok(DeviceMoe { cfg: *cfg, tokens, hidden, has_prev, plans, b, _types: PhantomData })
    }

    /// Copies the layer's inputs and the constant experts' `v` to the device.
    pub fn upload(&mut self, stream: &Arc<CudaStream>, inputs: &GateInputs<'_, L, A>, v: &[f32]) -> Result<()> {
        inputs.validate(&self.cfg)?;
        if inputs.tokens != self.tokens {
            return Err(Error::invalid(
                "tokens",
                inputs.tokens,
                format!("this DeviceMoe was built for {}", self.tokens),
            ));
        }
        if inputs.hidden != self.hidden {
            return Err(Error::invalid(
                "hidden",
                inputs.hidden,
                format!("this DeviceMoe was built for {}", self.hidden),
            ));
        }
        if inputs.residual.is_some() != self.has_prev {
            let (given, built) = if self.has_prev { ("none", "with") } else { ("given", "without") };
            return Err(Error::invalid(
                "residual",
                given,
                format!("this DeviceMoe was built {built} a gating residual (has_prev = {})", self.has_prev),
            ));
        }
        super::check_len("v", v.len(), (self.cfg.layout.n_const * inputs.hidden) as usize)?;
        upload(stream, &mut self.b.logits, bytemuck::cast_slice(inputs.logits))?;
        if let Some(r) = &inputs.residual {
            upload(stream, &mut self.b.prev, bytemuck::cast_slice(r.prev_logits))?;
            upload(stream, &mut self.b.wg, bytemuck::cast_slice(r.wg))?;
        }
        upload(stream, &mut self.b.x, bytemuck::cast_slice(inputs.x))?;
        upload(stream, &mut self.b.wc, bytemuck::cast_slice(inputs.wc))?;
        upload(stream, &mut self.b.v, bytemuck::cast_slice(v))
    }

    /// Routing and dispatch: route, count, scan, scatter, enqueued on `stream`.
    pub fn route_and_dispatch(&mut self, gpu: &Gpu, stream: &Arc<CudaStream>) -> Result<()> {
        let b = &mut self.b;
        let p = &self.plans;
        gpu.launch(
            &p.route,
            stream,
            &mut [
                Bind::Read(&b.logits),
                Bind::Read(&b.prev),
                Bind::Read(&b.wg),
                Bind::Read(&b.x),
                Bind::Read(&b.wc),
                Bind::Write(&mut b.next_logits),
                Bind::Write(&mut b.probs),
                Bind::Write(&mut b.ids),
                Bind::Write(&mut b.weights),
                Bind::Write(&mut b.alpha),
            ],
        )?;
        gpu.launch(
            &p.count,
            stream,
            &mut [
                Bind::Read(&b.ids),
                Bind::Read(&b.probs),
                Bind::Write(&mut b.ffn_counts),
                Bind::Write(&mut b.selected),
                Bind::Write(&mut b.prob_sums),
            ],
        )?;
        gpu.launch(
            &p.scan,
            stream,
            &mut [
                Bind::Read(&b.ffn_counts),
                Bind::Read(&b.selected),
                Bind::Read(&b.prob_sums),
                Bind::Write(&mut b.chunk_offsets),
                Bind::Write(&mut b.expert_offsets),
                Bind::Write(&mut b.expert_counts),
                Bind::Write(&mut b.stats),
                Bind::Write(&mut b.sorted),
            ],
        )?;
        gpu.launch(
            &p.scatter,
            stream,
            &mut [
                Bind::Read(&b.ids),
                Bind::Read(&b.chunk_offsets),
                Bind::Read(&b.expert_offsets),
                Bind::Write(&mut b.sorted),
                Bind::Write(&mut b.slot_rows),
            ],
        )
    }

    /// The buffer the FFN experts write their rows into (max_rows x D).
    pub fn expert_out_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.b.expert_out
    }

    /// The sorted tokens (max_rows i32, padding -1) the FFN experts read.
    pub fn sorted_tokens(&self) -> &CudaSlice<u8> {
        &self.b.sorted
    }

    /// The uploaded hidden states `x`, the sorted tokens and the
    /// expert-output rows together, for [`super::expert_ffn_gpu`] (which
    /// reads the first two and writes the third; it takes f32 activations,
    /// so `A = f32`, and refuses a smaller `x`).
    pub fn ffn_io(&mut self) -> (&CudaSlice<u8>, &CudaSlice<u8>, &mut CudaSlice<u8>) {
        (&self.b.x, &self.b.sorted, &mut self.b.expert_out)
    }

    /// Combine, enqueued on `stream`, into the layer output.
    pub fn combine(&mut self, gpu: &Gpu, stream: &Arc<CudaStream>) -> Result<()> {
        let b = &mut self.b;
        gpu.launch(
            &self.plans.combine,
            stream,
            &mut [
                Bind::Read(&b.x),
                Bind::Read(&b.expert_out),
                Bind::Read(&b.v),
                Bind::Read(&b.ids),
                Bind::Read(&b.weights),
                Bind::Read(&b.alpha),
                Bind::Read(&b.slot_rows),
                Bind::Write(&mut b.out),
            ],
        )
    }

    /// Copies routing and dispatch back to the host (synchronizes `stream`).
    pub fn download(&self, stream: &Arc<CudaStream>) -> Result<(Routing, Dispatch)> {
        let (t, n, k) = (self.tokens as usize, self.cfg.layout.experts() as usize, self.cfg.top_k as usize);
        let nf = self.cfg.layout.n_ffn as usize;
        let stats: Vec<f32> = download(stream, &self.b.stats, 2 * n + 1)?;
        let offsets: Vec<u32> = download(stream, &self.b.expert_offsets, nf + 1)?;
        let routing = Routing {
            next_logits: download(stream, &self.b.next_logits, t * n)?,
            probs: download(stream, &self.b.probs, t * n)?,
            ids: download(stream, &self.b.ids, t * k)?,
            weights: download(stream, &self.b.weights, t * k)?,
            alpha: download(stream, &self.b.alpha, t * k * 2)?,
            stats: LoadStats { f: stats[..n].to_vec(), p: stats[n..2 * n].to_vec(), lb: stats[2 * n] },
        };
        let dispatch = Dispatch {
            sorted_tokens: download(stream, &self.b.sorted, offsets[nf] as usize)?,
            expert_counts: download(stream, &self.b.expert_counts, nf)?,
            slot_rows: download(stream, &self.b.slot_rows, t * k)?,
            expert_offsets: offsets,
        };
        Ok((routing, dispatch))
    }

    /// Copies the layer output back (T x D; synchronizes `stream`).
    pub fn download_out(&self, stream: &Arc<CudaStream>, hidden: u32) -> Result<Vec<A>> {
        download(stream, &self.b.out, self.tokens as usize * hidden as usize)
    }
}
