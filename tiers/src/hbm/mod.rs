//! The HBM tier: device memory through cudarc, filled and drained on two
//! dedicated streams (one each way, so uploads and downloads overlap), each
//! copy fenced by an event the caller waits on.
//!
//! Compiled everywhere; used only where [`memwall::gpu::Gpu::new`] opens a
//! device.

#[cfg(test)]
mod test;

use std::sync::Arc;

use memwall::gpu::cuda::{CudaSlice, CudaStream, DevicePtr};
use memwall::gpu::Gpu;

use crate::ddr::HostBlock;
use crate::error::{Result, TierError};
use crate::object::ObjectId;

/// One object's copy in device memory.
pub struct DeviceBlock {
    slice: CudaSlice<u8>,
}

impl std::fmt::Debug for DeviceBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBlock").field("len", &self.slice.len()).finish()
    }
}

impl DeviceBlock {
    /// The cudarc slice: pass it to kernels and cudarc copies.
    pub fn slice(&self) -> &CudaSlice<u8> {
        &self.slice
    }

    /// The cudarc slice, mutable.
    pub fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.slice
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// Whether it is empty (never, for blocks the pager makes).
    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }

    /// The raw device address for work enqueued on `stream`, valid while
    /// the pin that gave this block lives, and the guard that orders that
    /// work after this block's copies (keep it until the work is enqueued:
    /// dropping it records the access on `stream`).
    pub fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (u64, memwall::gpu::cuda::SyncOnDrop<'a>) {
        self.slice.device_ptr(stream)
    }
}

/// The device and its copy streams.
pub(crate) struct HbmStore {
    up: Arc<CudaStream>,
    down: Arc<CudaStream>,
}

impl HbmStore {
    /// Streams for copies on `gpu`.
    pub(crate) fn new(gpu: Arc<Gpu>) -> Result<Self> {
        let up = gpu.new_stream().map_err(|e| TierError::cuda("creating the upload stream", e))?;
        let down = gpu.new_stream().map_err(|e| TierError::cuda("creating the download stream", e))?;
        Ok(HbmStore { up, down })
    }

    /// `len` zeroed bytes of device memory.
    pub(crate) fn alloc(&self, len: usize) -> Result<DeviceBlock> {
        let slice = self
            .up
            .alloc_zeros::<u8>(len)
            .map_err(|e| driver(format!("allocating {len} bytes of device memory"), e))?;
        fence(&self.up, "zeroing device memory")?;
        Ok(DeviceBlock { slice })
    }

    /// Copies `src`'s bytes into `dst` on the upload stream and waits for
    /// the copy's event.
    pub(crate) fn upload(&self, id: ObjectId, src: &HostBlock, dst: &mut DeviceBlock) -> Result<()> {
        if src.len() != dst.len() {
            return Err(TierError::SizeMismatch { id, expected: dst.len(), got: src.len() });
        }
        self.up
            .memcpy_htod(src.bytes(), &mut dst.slice)
            .map_err(|e| driver(format!("copying {} bytes host to device", src.len()), e))?;
        fence(&self.up, "waiting for a host-to-device copy")
    }

    /// Copies `src` into `dst`'s bytes on the download stream and waits for
    /// the copy's event.
    pub(crate) fn download(&self, id: ObjectId, src: &DeviceBlock, dst: &mut HostBlock) -> Result<()> {
        if src.len() != dst.len() {
            return Err(TierError::SizeMismatch { id, expected: src.len(), got: dst.len() });
        }
        self.down
            .memcpy_dtoh(&src.slice, dst.bytes_mut())
            .map_err(|e| driver(format!("copying {} bytes device to host", src.len()), e))?;
        fence(&self.down, "waiting for a device-to-host copy")
    }
}

/// Records an event on `stream` and waits for it.
fn fence(stream: &Arc<CudaStream>, what: &str) -> Result<()> {
    let event = stream.record_event(None).map_err(|e| driver(format!("{what}: recording an event"), e))?;
    event.synchronize().map_err(|e| driver(what.to_string(), e))
}

fn driver(during: String, e: memwall::gpu::cuda::DriverError) -> TierError {
    TierError::cuda(during.clone(), memwall::Error::driver(during, e))
}
