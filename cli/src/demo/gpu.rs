//! The demo on a GPU: decode attention over the KV pool in HBM
//! (`attention::decode_gpu`), MoE++ routing, dispatch and combine with
//! `moe::DeviceMoe`, every FFN expert with `moe::expert_ffn_gpu` over its
//! HBM copy. The small dense projections stay on the CPU (d_model x d_model
//! matrix-vector products per token), so each layer moves its few KiB of
//! activations over the bus.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use half::bf16;
use memwall::attention::{decode_gpu, DecodeShape};
use memwall::gpu::cuda::{CudaSlice, CudaStream};
use memwall::gpu::Gpu;
use memwall::moe::{expert_ffn_gpu, DeviceMoe, Routing};
use memwall::{Error, Result};
use memwall_tiers::clients::kv::KvCache;

use super::backend::{ffn_calls, Backend, MoeLayer, OnRouted};
use super::model::{kv_err, ExpertSource, InMemoryExperts, NextLayer};

/// One batch shape's routing buffers and FFN scratch (`max_rows x ffn`).
type LayerBuffers = (DeviceMoe<f32, f32>, CudaSlice<f32>);

/// The GPU's compute of a decode step (one stream, in order).
pub struct GpuBackend {
    gpu: Gpu,
    stream: Arc<CudaStream>,
    /// Routing buffers and the FFN scratch per (tokens, has a residual),
    /// reused across steps.
    moe: RefCell<HashMap<(u32, bool), LayerBuffers>>,
}

impl GpuBackend {
    /// A backend on `gpu`'s own new stream.
    pub fn new(gpu: Gpu) -> Result<Self> {
        let stream = gpu.new_stream()?;
        Ok(GpuBackend { gpu, stream, moe: RefCell::new(HashMap::new()) })
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!("GPU ({})", self.gpu.props().name)
    }

    fn attention(
        &self,
        kv: &KvCache,
        layer: usize,
        shape: &DecodeShape<'_>,
        q: &[bf16],
        out: &mut [bf16],
        lse: &mut [f32],
    ) -> Result<()> {
        let s = &self.stream;
        let pool = kv.pool_device().map_err(kv_err)?.slice();
        let kvs = kv.shape();
        let bytes = kvs.layer_elems() * kvs.elem_bytes();
        let (k_at, v_at) = (kvs.cache_offset(layer, 0), kvs.cache_offset(layer, 1));
        let (k, v) = (pool.slice(k_at..k_at + bytes), pool.slice(v_at..v_at + bytes));
        let dq = s.clone_htod(bytemuck::cast_slice::<bf16, u8>(q)).map_err(|e| Error::driver("uploading q", e))?;
        let mut dout =
            s.alloc_zeros::<u8>(std::mem::size_of_val(out)).map_err(|e| Error::driver("allocating out", e))?;
        let mut dlse = s.alloc_zeros::<f32>(lse.len()).map_err(|e| Error::driver("allocating lse", e))?;
        let splits = shape.default_splits();
        decode_gpu(&self.gpu, s, shape, splits, &dq, &k, &v, &mut dout, &mut dlse)?;
        s.memcpy_dtoh(&dout, bytemuck::cast_slice_mut::<bf16, u8>(out))
            .map_err(|e| Error::driver("downloading out", e))?;
        s.memcpy_dtoh(&dlse, lse).map_err(|e| Error::driver("downloading lse", e))?;
        s.synchronize().map_err(|e| Error::driver("attention", e))
    }

    fn moe(
        &self,
        layer: &MoeLayer<'_>,
        experts: &dyn ExpertSource,
        on_routed: &mut OnRouted<'_>,
        out: &mut [f32],
    ) -> Result<(Routing, u64)> {
        let MoeLayer { cfg, inputs, v, ffn, .. } = *layer;
        let (t, d, s) = (inputs.tokens, inputs.hidden, &self.stream);
        let has_prev = inputs.residual.is_some();
        let mut cache = self.moe.borrow_mut();
        let (dev, hid) = match cache.entry((t, has_prev)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let hid = s
                    .alloc_zeros::<f32>((cfg.max_rows(t) as usize * ffn).max(1))
                    .map_err(|e| Error::driver("allocating the FFN scratch", e))?;
                slot.insert((DeviceMoe::new(s, cfg, t, d, has_prev)?, hid))
            }
        };
        dev.upload(s, inputs, v)?;
        dev.route_and_dispatch(&self.gpu, s)?;
        // The host needs the routing (prefetch, the next layer's residual)
        // and the experts' row ranges.
        let (routing, disp) = dev.download(s)?;
        on_routed(&routing)?;
        let half = ffn * d as usize * 4;
        let mut calls = 0;
        for (e, shape) in ffn_calls(&disp, t, d, ffn) {
            calls += 1;
            experts.with_expert_device(layer.layer, e, &mut |w: &CudaSlice<u8>| {
                let (w1, w2) = (w.slice(..half), w.slice(half..2 * half));
                // x is the routing's own upload of the hidden states.
                let (x, sorted, expert_out) = dev.ffn_io();
                expert_ffn_gpu(&self.gpu, s, &shape, &w1, &w2, x, sorted, hid, expert_out)?;
                // The expert's copy may move once the pin is released.
                s.synchronize().map_err(|e| Error::driver("expert FFN", e))
            })?;
        }
        dev.combine(&self.gpu, s)?;
        let got = dev.download_out(s, d)?;
        out.copy_from_slice(&got);
        Ok((routing, calls))
    }
}

/// Every expert in device memory: the GPU's non-paged reference run.
pub struct DeviceExperts {
    experts: Vec<Vec<CudaSlice<u8>>>,
}

impl DeviceExperts {
    /// Uploads every expert of `host` on `gpu`.
    pub fn new(gpu: &Gpu, host: &InMemoryExperts) -> Result<Self> {
        let s = gpu.new_stream()?;
        let mut experts = Vec::new();
        for layer in &host.0 {
            let mut l = Vec::new();
            for w in layer {
                l.push(
                    s.clone_htod(bytemuck::cast_slice::<f32, u8>(w))
                        .map_err(|e| Error::driver("uploading an expert", e))?,
                );
            }
            experts.push(l);
        }
        s.synchronize().map_err(|e| Error::driver("uploading experts", e))?;
        Ok(DeviceExperts { experts })
    }
}

impl ExpertSource for DeviceExperts {
    fn with_expert(&self, layer: usize, e: usize, _f: &mut dyn FnMut(&[f32])) -> Result<()> {
        Err(Error::invalid("expert source", format!("layer {layer} expert {e}"), "device copies only"))
    }

    fn prefetch_next(&self, _layer: usize, _next: &NextLayer<'_>) -> Result<()> {
        Ok(())
    }

    fn with_expert_device(
        &self,
        layer: usize,
        e: usize,
        f: &mut dyn FnMut(&CudaSlice<u8>) -> Result<()>,
    ) -> Result<()> {
        f(&self.experts[layer][e])
    }
}
