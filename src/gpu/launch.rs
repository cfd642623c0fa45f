//! The CUDA executor: runs a [`LaunchPlan`] on a stream with device buffers
//! bound to its slots, after checking every buffer against the plan.

use std::mem::size_of;

use cudarc::driver::{
    sys, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg, SyncOnDrop,
};

use crate::error::{Error, Result};
use crate::gpu::device::Gpu;
use crate::gpu::plan::{ArgValue, LaunchPlan};

/// Dynamic shared memory a kernel may use without opting in.
const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;

/// Device memory a kernel may read: its address and length in bytes, and the
/// guard that orders the access on `stream` (drop it after the launch).
pub trait DeviceRead {
    /// Address and byte length, ordered after earlier writes on `stream`.
    fn read_range<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>);
}

/// Device memory a kernel may write.
pub trait DeviceWrite {
    /// Address and byte length, ordered after earlier reads and writes on `stream`.
    fn write_range<'a>(&'a mut self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>);
}

macro_rules! impl_device_read {
    ($($ty:ty),*) => {$(
        impl<T: DeviceRepr> DeviceRead for $ty {
            fn read_range<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
                let (ptr, guard) = self.device_ptr(stream);
                (ptr, self.len() * size_of::<T>(), guard)
            }
        }
    )*};
}
impl_device_read!(CudaSlice<T>, CudaView<'_, T>, CudaViewMut<'_, T>);

macro_rules! impl_device_write {
    ($($ty:ty),*) => {$(
        impl<T: DeviceRepr> DeviceWrite for $ty {
            fn write_range<'a>(&'a mut self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
                let len = self.len() * size_of::<T>();
                let (ptr, guard) = self.device_ptr_mut(stream);
                (ptr, len, guard)
            }
        }
    )*};
}
impl_device_write!(CudaSlice<T>, CudaViewMut<'_, T>);

/// A buffer bound to one slot of a plan.
pub enum Bind<'b> {
    /// For a slot the kernel only reads.
    Read(&'b dyn DeviceRead),
    /// For a slot the kernel writes.
    Write(&'b mut dyn DeviceWrite),
}

impl Gpu {
    /// Runs `plan` on `stream` with `buffers[i]` bound to slot `i`.
    ///
    /// Checks, before anything is enqueued: the plan's own consistency, its
    /// arguments against the kernel's PTX signature, the dynamic shared
    /// memory against this device, and that every bound buffer has the
    /// declared access, length and alignment. With those checks the kernel
    /// touches only memory inside the bound buffers, provided the plan's
    /// builder computed `min_bytes` from the kernel's access pattern, which
    /// is what every plan builder in memwall does and tests.
    pub fn launch(&self, plan: &LaunchPlan, stream: &CudaStream, buffers: &mut [Bind<'_>]) -> Result<()> {
        plan.check_before_launch(buffers.len())?;
        if plan.dynamic_smem_bytes > self.props().max_smem_per_block_optin {
            return Err(Error::InvalidLaunch {
                kernel: plan.kernel.to_string(),
                detail: format!(
                    "{} bytes of dynamic shared memory; device {} allows {}",
                    plan.dynamic_smem_bytes,
                    self.props().ordinal,
                    self.props().max_smem_per_block_optin
                ),
            });
        }
        let func = self.function(plan.module, plan.kernel)?;
        if plan.dynamic_smem_bytes > DEFAULT_SMEM_LIMIT {
            // Above 48 KiB a kernel must opt in to its dynamic shared memory.
            func.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                plan.dynamic_smem_bytes as i32,
            )
            .map_err(|e| {
                Error::driver(
                    format!("opting {} into {} bytes of shared memory", plan.kernel, plan.dynamic_smem_bytes),
                    e,
                )
            })?;
        }

        let mut addrs = Vec::with_capacity(buffers.len());
        let mut guards = Vec::with_capacity(buffers.len());
        for (slot, bind) in buffers.iter_mut().enumerate() {
            let (ptr, len, guard, writable) = match bind {
                Bind::Read(b) => {
                    let (p, l, g) = b.read_range(stream);
                    (p, l, g, false)
                }
                Bind::Write(b) => {
                    let (p, l, g) = b.write_range(stream);
                    (p, l, g, true)
                }
            };
            plan.check_binding(slot, writable, ptr, len as u64)?;
            addrs.push(ptr);
            guards.push(guard);
        }
        let values = plan.arg_values(&addrs);
        let mut builder = stream.launch_builder(&func);
        for v in &values {
            match v {
                ArgValue::U32(v) => builder.arg(v),
                ArgValue::I32(v) => builder.arg(v),
                ArgValue::U64(v) => builder.arg(v),
                ArgValue::I64(v) => builder.arg(v),
                ArgValue::F32(v) => builder.arg(v),
                ArgValue::F64(v) => builder.arg(v),
                // The kernel reads the blob's first `len` bytes (its
                // signature's size, checked above) from this storage.
                ArgValue::Blob(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: plan.grid.tuple(),
            block_dim: plan.block.tuple(),
            shared_mem_bytes: plan.dynamic_smem_bytes,
        };
        // SAFETY: the argument list matches the PTX signature in count, size
        // and kind (checked above); every pointer argument is the address of
        // a bound buffer that is live for this call, has the declared access,
        // length and alignment (checked above), and its guard orders the
        // kernel after earlier work on it and is dropped only after the
        // launch is enqueued. `values` outlives the launch call.
        unsafe { builder.launch(cfg) }.map_err(|e| Error::driver(format!("launching {}", plan.kernel), e))?;
        drop(guards);
        Ok(())
    }
}
