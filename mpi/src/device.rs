//! Device buffers: detection with `cuPointerGetAttribute`, GPU pack and
//! unpack with memwall's kernels, and the buffers each [`Method`] hands to
//! MPI ([`Wire`]).
//!
//! Nothing here touches CUDA unless libcuda loads (`driver_present`) and
//! `cuInit` succeeds; without a driver every pointer is a host pointer.
//! Every entry point puts the caller's current context back on return
//! ([`KeepContext`]), and buffers MPI itself touches come from `cuMemAlloc`
//! ([`IpcMemory`]), not the stream-ordered pool.
//! Every failure is an `Err`, on which the caller leaves the call to the
//! library.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use memwall::datatype::Committed;
use memwall::gpu::cuda::{sys, CudaEvent, CudaSlice, CudaStream, DevicePtr, SyncOnDrop};
use memwall::gpu::{driver_present, DeviceRead, DeviceWrite, Gpu, PinnedBuffer, PinnedKind};

use crate::host::Region;
use crate::ipc_memory::IpcMemory;
use crate::keep_context::KeepContext;
use crate::model::Method;

/// A device address and the device it lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevPtr {
    /// The address.
    pub addr: u64,
    /// The device ordinal.
    pub ordinal: usize,
}

/// Whether CUDA can be asked about pointers at all (driver present and
/// `cuInit` succeeded). Decided once.
pub fn cuda_usable() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: libcuda is loadable (checked first), so cudarc resolves
        // cuInit; it takes no pointers.
        driver_present() && unsafe { sys::cuInit(0) } == sys::CUresult::CUDA_SUCCESS
    })
}

/// The device `ptr` points into, or `None` for host memory (and always
/// without a usable driver).
pub fn locate(ptr: *const c_void) -> Option<DevPtr> {
    if ptr.is_null() || !cuda_usable() {
        return None;
    }
    let addr = ptr as u64;
    let mut kind: u32 = 0;
    // SAFETY: the driver is initialised; `kind` is a 4-byte out value, the
    // size of CU_POINTER_ATTRIBUTE_MEMORY_TYPE's answer. Host pointers the
    // driver does not know return an error, not a crash.
    let rc = unsafe {
        sys::cuPointerGetAttribute(
            (&mut kind as *mut u32).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            addr,
        )
    };
    if rc != sys::CUresult::CUDA_SUCCESS || kind != sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32 {
        return None;
    }
    let mut ordinal: c_int = -1;
    // SAFETY: as above; the ordinal attribute is an int.
    let rc = unsafe {
        sys::cuPointerGetAttribute(
            (&mut ordinal as *mut c_int).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            addr,
        )
    };
    (rc == sys::CUresult::CUDA_SUCCESS).then_some(())?;
    Some(DevPtr { addr, ordinal: usize::try_from(ordinal).ok()? })
}

/// One device: memwall's kernels, a stream and pinned buffers to reuse.
pub struct Device {
    gpu: Gpu,
    stream: Arc<CudaStream>,
    /// Recorded on the default streams, waited on by `stream`; the lock
    /// keeps each record-and-wait pair together across threads (a wait
    /// sees the event's latest record).
    fence: Mutex<CudaEvent>,
    pinned: Kept<PinnedBuffer<u8>>,
    /// Device buffers handed to MPI, kept for reuse: each `cuMemFree`
    /// would synchronize the whole device.
    ipc: Kept<IpcMemory>,
}

/// Up to [`KEPT_BUFFERS`] released buffers of one kind, for reuse.
struct Kept<T>(Mutex<Vec<T>>);

impl<T> Kept<T> {
    fn new() -> Self {
        Kept(Mutex::new(Vec::new()))
    }

    /// A kept buffer that `fits`, if any.
    fn take(&self, fits: impl Fn(&T) -> bool) -> Option<T> {
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let i = pool.iter().position(fits)?;
        Some(pool.swap_remove(i))
    }

    /// Keeps `b` unless [`KEPT_BUFFERS`] are kept already.
    fn put(&self, b: T) {
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < KEPT_BUFFERS {
            pool.push(b);
        }
    }
}

/// A new buffer's size for `bytes`: whole 64 KiB, so it serves nearby sizes.
fn rounded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(1 << 16) << 16
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("gpu", &self.gpu).finish_non_exhaustive()
    }
}

type Res<T> = Result<T, String>;

fn err(what: &str) -> impl Fn(memwall::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn drv(what: &str) -> impl Fn(memwall::gpu::cuda::DriverError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

/// Most released buffers kept per device and kind (pinned, device).
const KEPT_BUFFERS: usize = 8;

/// Opened devices by ordinal (a failure to open is remembered too).
type Devices = Mutex<HashMap<usize, Res<Arc<Device>>>>;

/// The device `ordinal`, opened once (a failure is remembered).
pub fn device(ordinal: usize) -> Res<Arc<Device>> {
    static DEVICES: OnceLock<Devices> = OnceLock::new();
    let mut map = DEVICES.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(ordinal)
        .or_insert_with(|| {
            let gpu = Gpu::new(ordinal).map_err(err("opening the device"))?;
            let stream = gpu.new_stream().map_err(err("creating a stream"))?;
            let fence = stream.context().new_event(None).map_err(drv("creating an event"))?;
            let (fence, pinned, ipc) = (Mutex::new(fence), Kept::new(), Kept::new());
            Ok(Arc::new(Device { gpu, stream, fence, pinned, ipc }))
        })
        .clone()
}

impl Device {
    /// A pinned buffer of at least `bytes` of `kind` (reused when possible).
    fn pinned(&self, bytes: usize, kind: PinnedKind) -> Res<PinnedBuffer<u8>> {
        match self.pinned.take(|b| b.kind() == kind && b.len() >= bytes) {
            Some(b) => Ok(b),
            None => self.gpu.alloc_pinned::<u8>(rounded(bytes), kind).map_err(err("allocating pinned memory")),
        }
    }

    /// At least `bytes` of device memory for MPI (reused when possible).
    fn ipc_memory(&self, bytes: usize) -> Res<IpcMemory> {
        match self.ipc.take(|b| b.len() >= bytes) {
            Some(b) => Ok(b),
            None => IpcMemory::new(&self.stream, rounded(bytes)),
        }
    }

    /// `bytes` of device memory.
    fn alloc(&self, bytes: usize) -> Res<CudaSlice<u8>> {
        // SAFETY: the memory is written (packed or copied into) before it is read.
        unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(drv("cuMemAlloc"))
    }

    /// Stream-ordered copy between any two UVA addresses, then a sync.
    fn copy(&self, dst: u64, src: u64, bytes: usize) -> Res<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.stream.context().bind_to_thread().map_err(drv("binding the context"))?;
        // SAFETY: both ranges are live allocations of at least `bytes`
        // bytes known to the driver (device memory or pinned host memory).
        let rc = unsafe { sys::cuMemcpyAsync(dst, src, bytes, self.stream.cu_stream()) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuMemcpyAsync: {rc:?}"));
        }
        self.sync()
    }

    fn sync(&self) -> Res<()> {
        self.stream.synchronize().map_err(drv("cuStreamSynchronize"))
    }

    /// Orders the interposer's stream after the work the application queued
    /// on the default streams (legacy and per-thread), before it touches a
    /// user buffer: a kernel that wrote a send buffer on the default stream
    /// with no synchronization before `MPI_Send` has finished when the pack
    /// reads it, as it would have for the library's own copies (issued on
    /// the legacy stream). The interposer's stream is non-blocking, so
    /// nothing orders it otherwise.
    fn after_default_streams(&self) -> Res<()> {
        // cuda.h's CU_STREAM_LEGACY and CU_STREAM_PER_THREAD handles.
        const LEGACY: sys::CUstream = 0x1 as sys::CUstream;
        const PER_THREAD: sys::CUstream = 0x2 as sys::CUstream;
        self.stream.context().bind_to_thread().map_err(drv("binding the context"))?;
        let fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
        for default in [LEGACY, PER_THREAD] {
            // SAFETY: the event and the stream belong to this device's
            // context, bound just above; the two handles are the driver's
            // special default-stream values, valid in any context.
            let rc = unsafe { sys::cuEventRecord(fence.cu_event(), default) };
            if rc != sys::CUresult::CUDA_SUCCESS {
                return Err(format!("cuEventRecord on the default stream: {rc:?}"));
            }
            // SAFETY: as above.
            let rc = unsafe { sys::cuStreamWaitEvent(self.stream.cu_stream(), fence.cu_event(), 0) };
            if rc != sys::CUresult::CUDA_SUCCESS {
                return Err(format!("cuStreamWaitEvent: {rc:?}"));
            }
        }
        Ok(())
    }
}

/// A user's device buffer region, as memwall's kernels bind it.
struct Raw {
    addr: u64,
    len: usize,
}

impl DeviceRead for Raw {
    fn read_range<'a>(&'a self, _: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
        (self.addr, self.len, SyncOnDrop::Sync(None))
    }
}

impl DeviceWrite for Raw {
    fn write_range<'a>(&'a mut self, _: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
        (self.addr, self.len, SyncOnDrop::Sync(None))
    }
}

fn typed(c: &Committed, addr: u64, count: i64) -> Res<(Raw, u64)> {
    let r = Region::of(addr, c.datatype(), count).ok_or("device buffer region out of range")?;
    Ok((Raw { addr: r.start, len: r.len }, r.origin as u64))
}

/// The packed bytes of a message as MPI sees them.
pub enum Wire {
    /// Device memory (CUDA-aware MPI).
    Device {
        /// The device.
        dev: Arc<Device>,
        /// The bytes (IPC-capable, so the library may map them in a peer;
        /// back to the device's pool on drop).
        buf: Option<IpcMemory>,
        /// Message bytes.
        len: usize,
    },
    /// Pinned host memory (mapped or cached).
    Host {
        /// The device.
        dev: Arc<Device>,
        /// The bytes (taken back to the pool on drop).
        buf: Option<PinnedBuffer<u8>>,
        /// Message bytes.
        len: usize,
    },
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wire({:?}, {} bytes)", self.ptr(), self.len())
    }
}

impl Wire {
    /// The address MPI sends from or receives into.
    pub fn ptr(&self) -> *mut c_void {
        // Reading either buffer's address binds its context.
        let _keep = KeepContext::save();
        match self {
            Wire::Device { buf: Some(buf), .. } => buf.address() as *mut c_void,
            Wire::Device { buf: None, .. } => std::ptr::null_mut(),
            Wire::Host { buf, .. } => buf
                .as_ref()
                .and_then(|b| b.host_slice().as_ptr().ok())
                .map_or(std::ptr::null_mut(), |p| p.cast_mut().cast()),
        }
    }

    /// Message bytes.
    pub fn len(&self) -> usize {
        match self {
            Wire::Device { len, .. } | Wire::Host { len, .. } => *len,
        }
    }

    /// The device the message belongs to.
    fn device(&self) -> &Arc<Device> {
        match self {
            Wire::Device { dev, .. } | Wire::Host { dev, .. } => dev,
        }
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        // The buffers go back to their pools here, inside the guard (a
        // field dropped after this body would run outside it).
        let _keep = KeepContext::save();
        match self {
            Wire::Host { dev, buf, .. } => {
                if let Some(b) = buf.take() {
                    dev.pinned.put(b);
                }
            }
            Wire::Device { dev, buf, .. } => {
                if let Some(b) = buf.take() {
                    dev.ipc.put(b);
                }
            }
        }
    }
}

fn host_kind(m: Method) -> PinnedKind {
    if m == Method::Mapped {
        PinnedKind::Mapped
    } else {
        PinnedKind::Cached
    }
}

/// Packs `count` elements at device address `src` into the buffer `method`
/// sends from; the result is ready to hand to MPI.
pub fn stage_out(c: &Committed, src: DevPtr, count: i64, method: Method) -> Res<Wire> {
    let _keep = KeepContext::save();
    let dev = device(src.ordinal)?;
    let bytes = c.pack_size(count).map_err(err("pack size"))?;
    let (raw, origin) = typed(c, src.addr, count)?;
    dev.after_default_streams()?;
    let mut pos = 0u64;
    match method {
        Method::Device => {
            let mut out = dev.ipc_memory(bytes)?;
            let packed = c.pack_gpu(&dev.gpu, &dev.stream, &raw, origin, count, out.slice_mut(), &mut pos);
            let synced = packed.map_err(err("GPU pack")).and_then(|()| dev.sync());
            let wire = Wire::Device { dev, buf: Some(out), len: bytes };
            synced.map(|()| wire)
        }
        Method::Staged => {
            let mut out = dev.alloc(bytes)?;
            c.pack_gpu(&dev.gpu, &dev.stream, &raw, origin, count, &mut out, &mut pos).map_err(err("GPU pack"))?;
            let host = dev.pinned(bytes, PinnedKind::Cached)?;
            let wire = Wire::Host { dev: dev.clone(), buf: Some(host), len: bytes };
            let (p, guard) = out.device_ptr(&dev.stream);
            drop(guard);
            dev.copy(wire.ptr() as u64, p, bytes)?;
            Ok(wire)
        }
        Method::Mapped => {
            let mut host = dev.pinned(bytes, PinnedKind::Mapped)?;
            {
                let mut view = host.mapped_view().map_err(err("mapping pinned memory"))?;
                c.pack_gpu(&dev.gpu, &dev.stream, &raw, origin, count, &mut view, &mut pos).map_err(err("GPU pack"))?;
            }
            dev.sync()?;
            Ok(Wire::Host { dev, buf: Some(host), len: bytes })
        }
    }
}

/// The buffer `method` receives `bytes` packed bytes into, for device `ordinal`.
pub fn stage_in(ordinal: usize, bytes: usize, method: Method) -> Res<Wire> {
    let _keep = KeepContext::save();
    let dev = device(ordinal)?;
    Ok(match method {
        Method::Device => Wire::Device { buf: Some(dev.ipc_memory(bytes)?), dev, len: bytes },
        m => Wire::Host { buf: Some(dev.pinned(bytes, host_kind(m))?), dev, len: bytes },
    })
}

/// Unpacks `received` bytes of `wire` into `count` elements at device
/// address `dst` (whole elements on the GPU, a trailing partial element's
/// runs with copies).
pub fn finish_in(c: &Committed, mut wire: Wire, received: usize, dst: DevPtr, count: i64) -> Res<()> {
    let _keep = KeepContext::save();
    let size = c.datatype().size() as usize;
    if size == 0 || received > wire.len() || received > size.saturating_mul(count.max(0) as usize) {
        return Err(format!("received {received} bytes for {count} elements of {size}"));
    }
    wire.device().after_default_streams()?;
    let whole = (received / size) as i64;
    let src_addr = wire.ptr() as u64;
    if whole > 0 {
        let (mut raw, origin) = typed(c, dst.addr, whole)?;
        let mut pos = 0u64;
        match &mut wire {
            Wire::Device { dev, buf, .. } => {
                let buf = buf.as_ref().ok_or("no receive buffer")?;
                c.unpack_gpu(&dev.gpu, &dev.stream, buf.slice(), &mut pos, &mut raw, origin, whole)
                    .map_err(err("GPU unpack"))?;
                dev.sync()?;
            }
            Wire::Host { dev, buf, .. } => {
                let host = buf.as_mut().ok_or("no receive buffer")?;
                if host.kind() == PinnedKind::Mapped {
                    let view = host.mapped_view().map_err(err("mapping pinned memory"))?;
                    c.unpack_gpu(&dev.gpu, &dev.stream, &view, &mut pos, &mut raw, origin, whole)
                        .map_err(err("GPU unpack"))?;
                    dev.sync()?;
                } else {
                    let bytes = whole as usize * size;
                    let staged = dev.alloc(bytes)?;
                    let (p, guard) = staged.device_ptr(&dev.stream);
                    drop(guard);
                    dev.copy(p, src_addr, bytes)?;
                    c.unpack_gpu(&dev.gpu, &dev.stream, &staged, &mut pos, &mut raw, origin, whole)
                        .map_err(err("GPU unpack"))?;
                    dev.sync()?;
                }
            }
        }
    }
    let rest = received - whole as usize * size;
    if rest > 0 {
        let dev = wire.device().clone();
        let base = dst.addr.wrapping_add((c.datatype().extent() * whole) as u64);
        let mut runs = Vec::new();
        let mut left = rest;
        c.layout().for_each_run(|off, len| {
            let n = (len as usize).min(left);
            if n > 0 {
                runs.push((base.wrapping_add(off as u64), n));
                left -= n;
            }
        });
        let mut from = src_addr + (whole as usize * size) as u64;
        for (to, n) in runs {
            dev.copy(to, from, n)?;
            from += n as u64;
        }
    }
    Ok(())
}

/// `MPI_Pack`/`MPI_Unpack` where either buffer is device memory: the GPU
/// packs into (or unpacks from) device memory, and a copy moves the packed
/// bytes from or to `packed_addr`, which may be host or device memory.
pub fn pack_or_unpack(c: &Committed, typed_ptr: DevPtr, count: i64, packed_addr: u64, unpack: bool) -> Res<()> {
    let _keep = KeepContext::save();
    let dev = device(typed_ptr.ordinal)?;
    let bytes = c.pack_size(count).map_err(err("pack size"))?;
    let (mut raw, origin) = typed(c, typed_ptr.addr, count)?;
    dev.after_default_streams()?;
    let mut tmp = dev.alloc(bytes)?;
    let (p, guard) = tmp.device_ptr(&dev.stream);
    drop(guard);
    let mut pos = 0u64;
    if unpack {
        dev.copy(p, packed_addr, bytes)?;
        c.unpack_gpu(&dev.gpu, &dev.stream, &tmp, &mut pos, &mut raw, origin, count).map_err(err("GPU unpack"))?;
        dev.sync()
    } else {
        c.pack_gpu(&dev.gpu, &dev.stream, &raw, origin, count, &mut tmp, &mut pos).map_err(err("GPU pack"))?;
        dev.copy(packed_addr, p, bytes)
    }
}

/// Measures, on device 0, seconds per operation for `bytes` packed bytes:
/// `[pack_device, pack_mapped, d2h, h2d]` (for the measure program).
pub fn measure(bytes: usize, reps: usize) -> Res<[f64; 4]> {
    use memwall::datatype::{Datatype, Primitive};
    if !cuda_usable() {
        return Err("no usable CUDA driver".into());
    }
    let _keep = KeepContext::save();
    let dev = device(0)?;
    let n = (bytes / 8).max(1) as i64;
    // Every other f64: a strided pack of `bytes` packed bytes.
    let t = Datatype::named(Primitive::F64).vector(n, 1, 2).map_err(err("type"))?;
    let c = Committed::new(&t).map_err(err("commit"))?;
    let src = dev.alloc(2 * n as usize * 8)?;
    let reps = reps.max(1);
    let time = |f: &mut dyn FnMut() -> Res<()>| -> Res<f64> {
        f()?;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            f()?;
        }
        Ok(t0.elapsed().as_secs_f64() / reps as f64)
    };
    let packed = c.pack_size(1).map_err(err("pack size"))?;
    let mut out = dev.alloc(packed)?;
    let pack_device = time(&mut || {
        let mut pos = 0;
        c.pack_gpu(&dev.gpu, &dev.stream, &src, 0, 1, &mut out, &mut pos).map_err(err("GPU pack"))?;
        dev.sync()
    })?;
    let mut mapped = dev.pinned(packed, PinnedKind::Mapped)?;
    let pack_mapped = time(&mut || {
        let mut pos = 0;
        let mut view = mapped.mapped_view().map_err(err("mapping"))?;
        c.pack_gpu(&dev.gpu, &dev.stream, &src, 0, 1, &mut view, &mut pos).map_err(err("GPU pack"))?;
        dev.sync()
    })?;
    dev.pinned.put(mapped);
    let host = dev.pinned(packed, PinnedKind::Cached)?;
    let h = host.host_slice().as_ptr().map_err(drv("pinned pointer"))? as u64;
    let (d, guard) = out.device_ptr(&dev.stream);
    drop(guard);
    let d2h = time(&mut || dev.copy(h, d, packed))?;
    let h2d = time(&mut || dev.copy(d, h, packed))?;
    dev.pinned.put(host);
    Ok([pack_device, pack_mapped, d2h, h2d])
}

/// Device allocations handed to the measure program, by address.
fn allocations() -> &'static Mutex<HashMap<u64, IpcMemory>> {
    static A: OnceLock<Mutex<HashMap<u64, IpcMemory>>> = OnceLock::new();
    A.get_or_init(Default::default)
}

/// `bytes` of device memory on device 0 for the measure program.
pub fn alloc_for_measure(bytes: usize) -> Res<u64> {
    if !cuda_usable() {
        return Err("no usable CUDA driver".into());
    }
    let _keep = KeepContext::save();
    let dev = device(0)?;
    let buf = IpcMemory::new(&dev.stream, bytes)?;
    let p = buf.address();
    allocations().lock().unwrap_or_else(PoisonError::into_inner).insert(p, buf);
    Ok(p)
}

/// Frees what [`alloc_for_measure`] returned.
pub fn free_for_measure(addr: u64) {
    let _keep = KeepContext::save();
    allocations().lock().unwrap_or_else(PoisonError::into_inner).remove(&addr);
}

/// A synchronous copy of `bytes` between two addresses (host or device,
/// through unified addressing) on device `ordinal`'s stream.
pub fn copy(ordinal: usize, dst: u64, src: u64, bytes: usize) -> Res<()> {
    let _keep = KeepContext::save();
    device(ordinal)?.copy(dst, src, bytes)
}
