//! Device memory that the MPI library itself reads or writes.
//!
//! cudarc allocates from the stream-ordered pool (`cuMemAllocAsync`) when
//! the device supports it, as an H100 does. CUDA-aware MPI libraries share
//! device buffers between processes on a node with `cuIpcGetMemHandle`,
//! which refuses pool memory (UCX's cuda_ipc then fails or falls back to
//! slow copies), and they touch the buffer from their own streams, which a
//! stream-ordered allocation is not ordered with. So buffers handed to MPI
//! come from `cuMemAlloc`: synchronous, IPC-capable.

use std::sync::Arc;

use memwall::gpu::cuda::{sys, CudaSlice, CudaStream};

use crate::keep_context::KeepContext;

/// A `cuMemAlloc` allocation, bound to a stream for memwall's kernels.
pub struct IpcMemory {
    /// Always `Some` until dropped.
    slice: Option<CudaSlice<u8>>,
    /// Its device address (reading it needs no driver call).
    address: sys::CUdeviceptr,
}

impl IpcMemory {
    /// `bytes` (at least 1) of device memory on `stream`'s device.
    pub(crate) fn new(stream: &Arc<CudaStream>, bytes: usize) -> Result<Self, String> {
        stream.context().bind_to_thread().map_err(|e| format!("binding the context: {e:?}"))?;
        let len = bytes.max(1);
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: the context is current on this thread; `ptr` is a valid
        // out pointer for one device address.
        let rc = unsafe { sys::cuMemAlloc_v2(&mut ptr, len) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuMemAlloc of {len} bytes: {rc:?}"));
        }
        // SAFETY: `ptr` is a live allocation of `len` bytes that nothing
        // else owns; the slice is handed back with `leak` in `drop` (never
        // dropped itself, which would free it into the pool) and freed
        // with cuMemFree. The bytes are written before they are read.
        let slice = unsafe { stream.upgrade_device_ptr::<u8>(ptr, len) };
        Ok(IpcMemory { slice: Some(slice), address: ptr })
    }

    /// The memory as memwall's kernels bind it.
    pub fn slice(&self) -> &CudaSlice<u8> {
        self.slice.as_ref().expect("present until dropped")
    }

    /// The memory, writable.
    pub fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice.as_mut().expect("present until dropped")
    }

    /// The device address.
    pub fn address(&self) -> sys::CUdeviceptr {
        self.address
    }

    /// Bytes allocated.
    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// Whether it holds no bytes (never: at least 1 is allocated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for IpcMemory {
    fn drop(&mut self) {
        let Some(slice) = self.slice.take() else { return };
        let _keep = KeepContext::save();
        let stream = slice.stream().clone();
        // `leak` queues waits for the slice's recorded reads and writes on
        // the stream; the raw synchronize then covers them and everything
        // before (not cudarc's, which returns a pending sticky error
        // without waiting).
        let ptr = slice.leak();
        if stream.context().bind_to_thread().is_err() {
            return; // the context is gone: so is the memory
        }
        // SAFETY: the stream is live (we hold it) and its context current.
        let synced = unsafe { sys::cuStreamSynchronize(stream.cu_stream()) };
        if synced != sys::CUresult::CUDA_SUCCESS {
            eprintln!("memwall-mpi: freeing device memory: cuStreamSynchronize: {synced:?}");
        }
        // SAFETY: `ptr` came from cuMemAlloc in `new`, its slice is gone
        // and the stream has drained, so nothing refers to it any more;
        // cuMemFree itself also waits for the device.
        unsafe { sys::cuMemFree_v2(ptr) };
    }
}
