//! Page-locked host memory, in the three flavours memwall uses.

use cudarc::driver::{sys, CudaStream, DeviceRepr, HostSlice, PinnedHostSlice, SyncOnDrop, ValidAsZeroBits};

use crate::error::{Error, Result};
use crate::gpu::device::Gpu;

/// Which kind of page-locked memory to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedKind {
    /// Ordinary cached pinned memory: fast DMA both ways and fast for the
    /// host to read. Use it for anything the host reads back.
    Cached,
    /// Write-combined: faster host-to-device DMA, but host reads are
    /// uncached and very slow. Only for buffers the host fills and the
    /// device reads.
    WriteCombined,
    /// Mapped into the device address space (and portable across
    /// contexts), so kernels read and write it directly over PCIe/NVLink.
    Mapped,
}

impl PinnedKind {
    fn flags(self) -> u32 {
        match self {
            PinnedKind::Cached => 0,
            PinnedKind::WriteCombined => sys::CU_MEMHOSTALLOC_WRITECOMBINED,
            PinnedKind::Mapped => sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
        }
    }
}

/// A zero-initialised page-locked host buffer of `T`.
pub struct PinnedBuffer<T> {
    inner: PinnedHostSlice<T>,
    kind: PinnedKind,
}

impl<T> std::fmt::Debug for PinnedBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedBuffer").field("len", &self.inner.len()).field("kind", &self.kind).finish()
    }
}

impl Gpu {
    /// Allocates `len` zeroed elements of page-locked host memory.
    pub fn alloc_pinned<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
        kind: PinnedKind,
    ) -> Result<PinnedBuffer<T>> {
        if kind == PinnedKind::Mapped && !self.props().can_map_host_memory {
            return Err(Error::invalid("PinnedKind", "Mapped", "this device cannot map host memory"));
        }
        let bytes = len.checked_mul(std::mem::size_of::<T>()).filter(|&b| b < isize::MAX as usize);
        if bytes.is_none() {
            return Err(Error::invalid("pinned length", len, "the byte size overflows isize"));
        }
        // SAFETY: the memory is zero-filled below before any typed view of it
        // is handed out, and all-zero bits are a valid `T` (ValidAsZeroBits).
        let mut inner = unsafe { self.context().alloc_pinned_with_flags::<T>(len, kind.flags()) }
            .map_err(|e| Error::driver(format!("cuMemHostAlloc({len} x {} bytes)", std::mem::size_of::<T>()), e))?;
        let ptr = inner.as_mut_ptr().map_err(|e| Error::driver("pinned buffer pointer", e))?;
        // SAFETY: `ptr` points to `len` elements just allocated and owned by
        // `inner`; writing zero bytes over them is in bounds.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(PinnedBuffer { inner, kind })
    }
}

impl<T: ValidAsZeroBits> PinnedBuffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// The kind it was allocated as.
    pub fn kind(&self) -> PinnedKind {
        self.kind
    }

    /// The elements, after any pending device copy into them has finished.
    pub fn as_slice(&self) -> Result<&[T]> {
        self.inner.as_slice().map_err(|e| Error::driver("waiting for pinned buffer", e))
    }

    /// The elements, mutable, after any pending device copy has finished.
    pub fn as_mut_slice(&mut self) -> Result<&mut [T]> {
        self.inner.as_mut_slice().map_err(|e| Error::driver("waiting for pinned buffer", e))
    }

    /// The cudarc slice, for `memcpy_htod` / `memcpy_dtoh` on a stream.
    pub fn host_slice(&self) -> &PinnedHostSlice<T> {
        &self.inner
    }

    /// The cudarc slice, mutable.
    pub fn host_slice_mut(&mut self) -> &mut PinnedHostSlice<T> {
        &mut self.inner
    }

    /// The device address of a [`PinnedKind::Mapped`] buffer.
    pub fn device_address(&self) -> Result<sys::CUdeviceptr> {
        if self.kind != PinnedKind::Mapped {
            return Err(Error::invalid(
                "PinnedKind",
                format!("{:?}", self.kind),
                "only Mapped buffers have a device address",
            ));
        }
        let host = self.inner.as_ptr().map_err(|e| Error::driver("pinned buffer pointer", e))?;
        self.inner.context().bind_to_thread().map_err(|e| Error::driver("binding the context", e))?;
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is the start of a live allocation made with
        // CU_MEMHOSTALLOC_DEVICEMAP in this buffer's context, bound to this
        // thread just above; `dev` is a valid out pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host as *mut _, 0) }
            .result()
            .map_err(|e| Error::driver("cuMemHostGetDevicePointer", e))?;
        Ok(dev)
    }
}

/// A mapped pinned buffer seen from the device: kernels read and write host
/// memory through it. Made by [`PinnedBuffer::mapped_view`]. When cudarc
/// tracks events (its multi-stream mode, on once a context has made a
/// second stream, as [`crate::gpu::Gpu::new_stream`] does), a kernel bound
/// to the view is recorded on the buffer's event, so the buffer's host
/// accessors (`as_slice`, `as_ptr`) and its drop wait for that kernel; a
/// stream of another context (the buffer is portable) is synchronized when
/// the binding ends instead. Otherwise synchronize the stream before
/// reading the buffer on the host.
#[derive(Debug)]
pub struct MappedView<'a, T> {
    addr: sys::CUdeviceptr,
    bytes: usize,
    host: &'a mut PinnedHostSlice<T>,
}

impl<T: ValidAsZeroBits> PinnedBuffer<T> {
    /// The device's view of a [`PinnedKind::Mapped`] buffer, borrowing it
    /// mutably so the host cannot touch it meanwhile.
    pub fn mapped_view(&mut self) -> Result<MappedView<'_, T>> {
        let addr = self.device_address()?;
        let bytes = self.len() * std::mem::size_of::<T>();
        Ok(MappedView { addr, bytes, host: &mut self.inner })
    }
}

impl<T> MappedView<'_, T> {
    /// Whether `stream` belongs to the buffer's context (its event can be
    /// recorded there).
    fn same_context(&self, stream: &CudaStream) -> bool {
        self.host.context().cu_ctx() == stream.context().cu_ctx()
    }
}

impl<T> crate::gpu::DeviceRead for MappedView<'_, T> {
    fn read_range<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
        if !self.same_context(stream) {
            return (self.addr, self.bytes, SyncOnDrop::Sync(Some(stream)));
        }
        // SAFETY: only the ordering guard is kept (the stream waits for the
        // buffer's earlier work; the guard records the kernel launched
        // meanwhile on the buffer's event); the host slice that comes with
        // it is dropped unused.
        let (_, guard) = unsafe { self.host.stream_synced_slice(stream) };
        (self.addr, self.bytes, guard)
    }
}

impl<T> crate::gpu::DeviceWrite for MappedView<'_, T> {
    fn write_range<'a>(&'a mut self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
        let (addr, bytes) = (self.addr, self.bytes);
        if !self.same_context(stream) {
            return (addr, bytes, SyncOnDrop::Sync(Some(stream)));
        }
        // SAFETY: as in `read_range`: only the ordering guard is kept.
        let (_, guard) = unsafe { self.host.stream_synced_mut_slice(stream) };
        (addr, bytes, guard)
    }
}
